"""`unitgrad paper`: build paper/main.pdf from paper/main.typ with the Typst compiler (a PyPI package).

Typst is self-contained (fonts included), so no TeX or system package is needed. The PDF is written
to a temporary sibling and renamed, so a failed build leaves the previous PDF (or none).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import typst

from unitgrad.errors import UnitgradError
from unitgrad.io import atomic_path


def _first_error(exc: typst.TypstError) -> str:
    """The error message and where it is ("unknown variable: x at paper/main.typ:3:7") on one line."""
    message = " ".join(str(getattr(exc, "message", exc)).split())
    where = re.search(r"┌─ (\S+)", getattr(exc, "diagnostic", "") or "")
    return message + (f" at {where.group(1)}" if where else "")


TABLES = ("setup", "main", "label_noise", "corruption", "paired", "claims", "verdict")


def build(paper_dir: Path) -> Path:
    """Compile `paper_dir/main.typ` into `paper_dir/main.pdf`; return the PDF path.

    The project root (the parent of `paper_dir`) is Typst's root, so the paper can read ../results/figures.
    """
    source = paper_dir / "main.typ"
    if not source.is_file():
        raise UnitgradError(f"{source} not found: restore it from git (`git checkout -- {source}`)")
    missing = [t for t in TABLES if not (paper_dir / "tables" / f"{t}.json").is_file()]
    if missing:
        raise UnitgradError(f"{paper_dir}/tables/{missing[0]}.json not found: run `dvc repro` (report stages) first")
    pdf = paper_dir / "main.pdf"
    with atomic_path(pdf) as tmp:
        try:
            # Typst's embedded fonts only: the same pages on every machine, whatever fonts it has installed.
            typst.compile(
                str(source),
                output=str(tmp),
                format="pdf",
                root=str(paper_dir.resolve().parent),
                ignore_system_fonts=True,
            )
        except typst.TypstError as exc:
            raise UnitgradError(
                f"Typst failed on {source}: {_first_error(exc)}; fix that file, "
                "or rerun the report stages if it is a generated table"
            ) from exc
    return pdf


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="unitgrad paper", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--paper-dir",
        type=Path,
        default=Path("paper"),
        help="folder with main.typ and tables/ (default: paper); main.pdf is written there",
    )
    args = parser.parse_args(argv)
    print(build(args.paper_dir))
    return 0
