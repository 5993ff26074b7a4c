"""The one Markdown-table writer: report tables, the claims check, the bench's tables, the params reference."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def table(header: Sequence[object], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """The lines of a Markdown table; `align` has one letter per column, l (default) or r; '|' in cells escaped."""

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    rule = "|" + "".join("---:|" if side == "r" else "---|" for side in align.ljust(len(header), "l"))
    return [line(header), rule, *(line(row) for row in rows)]
