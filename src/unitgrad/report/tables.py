"""Result tables as Markdown (results/tables/), LaTeX booktabs and JSON (paper/tables/), under fixed names.

Cells read "mean ± std" in percent across seeds ("± n/a" with one seed); the best mean of each
column is bold. LaTeX goes through pandas' Styler so the booktabs rules and escaping are pandas';
it is for authors who paste the tables into a LaTeX paper. The JSON (caption, header, cells, bold
flags) is what the Typst paper reads, so no escaping is involved there.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from unitgrad import markdown
from unitgrad.io import write_text
from unitgrad.report import style
from unitgrad.report.stats import describe

_TEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _header(column) -> str:
    return " · ".join(map(str, column)) if isinstance(column, tuple) else str(column)


def table_json(
    caption: str, columns: list[str], rows: list[list[str]], bold: list[list[bool]] | None = None, note: str = "no rows"
) -> str:
    """The JSON a Typst `json()` reads: caption, header, string cells, bold flags, and a note for no rows."""
    bold = bold if bold is not None else [[False] * len(row) for row in rows]
    return (
        json.dumps(
            {"caption": caption, "columns": columns, "rows": rows, "bold": bold, "note": note},
            ensure_ascii=False,
            indent=1,
        )
        + "\n"
    )


def frame_json(frame: pd.DataFrame, caption: str) -> str:
    return table_json(caption, [str(c) for c in frame.columns], [[str(v) for v in row] for row in frame.to_numpy()])


def tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIALS.get(ch, ch) for ch in str(text))


@dataclass
class Table:
    """Means and stds (percent) with the same shape; rows and columns are display labels."""

    name: str
    caption: str
    mean: pd.DataFrame
    std: pd.DataFrame = field(default_factory=pd.DataFrame)
    bold_best: bool = True
    empty_note: str = "no runs of this kind in the results"

    def cells(self) -> pd.DataFrame:
        def cell(m: float, s: float) -> str:
            if not math.isfinite(m):
                return "—"
            return f"{m:.1f} ± {s:.1f}" if math.isfinite(s) else f"{m:.1f} ± n/a"

        return pd.DataFrame(
            [
                [cell(m, s) for m, s in zip(mrow, srow)]
                for mrow, srow in zip(self.mean.to_numpy(float), self.std.to_numpy(float))
            ],
            index=self.mean.index,
            columns=self.mean.columns,
        )

    def best(self) -> pd.DataFrame:
        """True where a cell holds its column's highest mean (ties: all of them)."""
        if not self.bold_best:
            return pd.DataFrame(False, index=self.mean.index, columns=self.mean.columns)
        return self.mean.eq(self.mean.max(axis=0), axis=1) & self.mean.notna()

    def markdown(self) -> str:
        if self.mean.empty:
            return f"**{self.caption}**\n\n_{self.empty_note}._\n"
        cells, best = self.cells(), self.best()
        columns = [_header(c) for c in cells.columns]
        rows = (
            [label, *(f"**{c}**" if b else c for c, b in zip(row, flags))]
            for label, row, flags in zip(cells.index, cells.to_numpy(), best.to_numpy())
        )
        lines = [f"**{self.caption}**", "", *markdown.table([cells.index.name or "", *columns], rows)]
        return "\n".join(lines) + "\n"

    def as_json(self) -> str:
        if self.mean.empty:
            return table_json(self.caption, [], [], note=self.empty_note)
        cells, best = self.cells(), self.best()
        columns = [cells.index.name or ""] + [_header(c) for c in cells.columns]
        rows = [[str(label), *row] for label, row in zip(cells.index, cells.to_numpy().tolist())]
        bold = [[False, *flags] for flags in best.to_numpy().tolist()]
        return table_json(self.caption, columns, rows, bold)

    def latex(self) -> str:
        if self.mean.empty:
            return (
                f"\\begin{{table}}[ht]\n\\centering\n\\caption{{{tex_escape(self.caption)}}}"
                f"\\label{{tab:{self.name}}}\n\\emph{{{tex_escape(self.empty_note)}.}}\n\\end{{table}}\n"
            )
        # The row labels become an ordinary first column: Styler would give the index name its own header row.
        cells = self.cells().reset_index()
        best = pd.concat([pd.Series(False, index=self.best().index), self.best()], axis=1).reset_index(drop=True)
        best.columns = cells.columns
        styler = cells.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
        styler = styler.apply(lambda _: best.map(lambda b: "textbf: --rwrap;" if b else ""), axis=None)
        return styler.to_latex(
            hrules=True,
            caption=tex_escape(self.caption),
            label=f"tab:{self.name}",
            position="ht",
            position_float="centering",
            multicol_align="c",
            column_format="l" + "c" * (cells.shape[1] - 1),
        )


def _pivot(frame: pd.DataFrame, columns, value: str) -> pd.DataFrame:
    table = frame.pivot_table(index="optimizer", columns=columns, values=value, aggfunc="first", dropna=False)
    table = table.loc[style.ordered(table.index)]
    table.index = [style.label(o) for o in table.index]
    table.index.name = "optimizer"
    table.columns.names = [None] * table.columns.nlevels  # the header row itself says what the columns are
    return 100 * table


def _panel(row) -> str:
    return style.panel_title(row["dataset"], row["model"])


def main_table(summary: pd.DataFrame) -> Table:
    clean = summary[(summary["metric"] == "clean_acc") & (summary["noise"] == 0)].copy()
    clean["config"] = clean.apply(_panel, axis=1)
    if clean.empty:
        return Table("main", "Clean test accuracy (%)", pd.DataFrame())
    return Table(
        "main",
        "Clean test accuracy (%), mean ± std across seeds; best per column in bold",
        _pivot(clean, "config", "mean"),
        _pivot(clean, "config", "std"),
    )


def label_noise_table(summary: pd.DataFrame) -> Table:
    clean = summary[summary["metric"] == "clean_acc"].copy()
    noisy = clean[clean["noise"] > 0]
    caption = "Clean test accuracy (%) under symmetric label noise, mean ± std across seeds"
    if noisy.empty:
        return Table(
            "label_noise", caption, pd.DataFrame(), empty_note="no label-noise runs (params: report.noise_study)"
        )
    studied = noisy[["dataset", "model", "optimizer"]].drop_duplicates()
    clean = clean.merge(studied, on=["dataset", "model", "optimizer"])
    clean["config"] = clean.apply(_panel, axis=1)
    clean["rate"] = clean["noise"].map(lambda r: f"{round(100 * r)} % noise")
    columns = ["config", "rate"] if clean["config"].nunique() > 1 else "rate"
    caption += f" ({clean['config'].iloc[0]})" if columns == "rate" else ""
    return Table("label_noise", caption, _pivot(clean, columns, "mean"), _pivot(clean, columns, "std"))


def corruption_table(runs: pd.DataFrame) -> Table:
    """Per optimizer: clean accuracy, mCA, and accuracy at severity 5 (mean over corruptions)."""
    clean_runs = runs[runs["noise"] == 0]
    corr = clean_runs[clean_runs["metric"].str.startswith("corruption/")]
    caption = "Corruption robustness (%): clean accuracy, mean corruption accuracy (mCA) and severity 5"
    if corr.empty:
        return Table(
            "corruption", caption, pd.DataFrame(), empty_note="no corruption evaluation (params: evaluate.corruptions)"
        )
    keys = ["dataset", "model", "optimizer", "seed"]
    evaluated = corr[keys].drop_duplicates()
    severity5 = corr[corr["metric"].str.endswith("/5")].groupby(keys, as_index=False)["value"].mean()
    severity5 = severity5.assign(metric="severity 5")
    picked = clean_runs[clean_runs["metric"].isin(["clean_acc", "mca"])].merge(evaluated, on=keys)
    per_run = pd.concat([picked[keys + ["metric", "value"]], severity5], ignore_index=True)
    per_run["metric"] = per_run["metric"].replace({"clean_acc": "clean", "mca": "mCA"})
    rows = []
    for (dataset, model, optimizer, metric), group in per_run.groupby(["dataset", "model", "optimizer", "metric"]):
        rows.append(
            {"dataset": dataset, "model": model, "optimizer": optimizer, "metric": metric, **describe(group["value"])}
        )
    frame = pd.DataFrame(rows)
    frame["config"] = frame.apply(_panel, axis=1)
    columns = ["config", "metric"] if frame["config"].nunique() > 1 else "metric"
    caption += f" ({frame['config'].iloc[0]})" if columns == "metric" else ""
    order = [c for c in ("clean", "mCA", "severity 5") if c in set(frame["metric"])]
    mean, std = _pivot(frame, columns, "mean"), _pivot(frame, columns, "std")
    if columns == "metric":
        mean, std = mean[order], std[order]
    return Table("corruption", caption, mean, std)


def paired_table(paired: pd.DataFrame) -> pd.DataFrame:
    """Display frame of the paired comparisons (differences in percentage points)."""
    rows = []
    for _, p in paired.sort_values(
        ["study", "dataset", "model", "noise", "metric", "reference", "optimizer"]
    ).iterrows():
        ci = f"[{100 * p['ci95_low']:+.2f}, {100 * p['ci95_high']:+.2f}]" if math.isfinite(p["ci95_low"]) else "n/a"
        rows.append(
            {
                "study": p["study"],
                "dataset · model": style.panel_title(p["dataset"], p["model"]),
                "noise": f"{round(100 * p['noise'])} %",
                "metric": {"clean_acc": "clean acc.", "mca": "mCA"}.get(p["metric"], p["metric"]),
                "comparison": f"{style.label(p['optimizer'])} − {style.label(p['reference'])}",
                "n": int(p["n"]),
                "diff. (pp)": f"{100 * p['mean_diff']:+.2f}",
                "95 % CI (pp)": ci,
                "p (paired t)": f"{p['p_value']:.3g}" if math.isfinite(p["p_value"]) else (p["note"] or "n/a"),
            }
        )
    return pd.DataFrame(rows)


def frame_markdown(frame: pd.DataFrame, caption: str) -> str:
    if frame.empty:
        return f"**{caption}**\n\n_no rows._\n"
    lines = [f"**{caption}**", "", *markdown.table(list(frame.columns), frame.to_numpy())]
    return "\n".join(lines) + "\n"


def frame_latex(
    frame: pd.DataFrame, caption: str, label: str, long: bool = False, column_format: str | None = None
) -> str:
    """A plain booktabs table of strings (no bold), escaped for LaTeX; `long` uses longtable."""
    if frame.empty:
        return (
            f"\\begin{{table}}[ht]\n\\centering\n\\caption{{{tex_escape(caption)}}}\\label{{{label}}}\n"
            "\\emph{no rows.}\n\\end{table}\n"
        )
    styler = frame.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    options = {
        "hrules": True,
        "caption": tex_escape(caption),
        "label": label,
        "column_format": column_format or "l" * frame.shape[1],
    }
    if long:
        return styler.to_latex(environment="longtable", **options)
    return styler.to_latex(position="ht", position_float="centering", **options)


RAGGED = r">{{\raggedright\arraybackslash}}p{{{}}}"  # a wrapping column without justified gaps
PAIRED_CAPTION = "Paired differences across seeds (same seed: same initial weights and data order)"


def build_tables(runs: pd.DataFrame, summary: pd.DataFrame, noise_summary: pd.DataFrame) -> list[Table]:
    return [main_table(summary), label_noise_table(noise_summary), corruption_table(runs)]


def setup_macros(setup: dict[str, str]) -> str:
    """`\\newcommand`s for the paper's setup section (names: \\ug + CamelCase key)."""
    lines = ["% Generated by `unitgrad report tables` from params.yaml and results/runs.csv; do not edit."]
    for key, value in setup.items():
        name = "ug" + "".join(part.capitalize() for part in key.split("_"))
        lines.append(f"\\newcommand{{\\{name}}}{{{tex_escape(value)}}}")
    return "\n".join(lines) + "\n"


def setup_markdown(setup: dict[str, str]) -> str:
    frame = pd.DataFrame({"setting": list(setup), "value": list(setup.values())})
    return frame_markdown(frame, "Setup actually run")


def write_tables(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    noise_summary: pd.DataFrame,
    paired: pd.DataFrame,
    setup: dict[str, str],
    md_dir: Path,
    tex_dir: Path,
) -> list[Path]:
    """Write every table under its fixed name (label noise from `noise_summary`); return the paths written."""
    written = []
    for table in build_tables(runs, summary, noise_summary):
        write_text(md_dir / f"{table.name}.md", table.markdown())
        write_text(tex_dir / f"{table.name}.tex", table.latex())
        write_text(tex_dir / f"{table.name}.json", table.as_json())
        written += [md_dir / f"{table.name}.md", tex_dir / f"{table.name}.tex", tex_dir / f"{table.name}.json"]
    frame, caption = paired_table(paired), PAIRED_CAPTION
    if not frame.empty and frame["dataset · model"].nunique() == 1:
        caption += f", {frame['dataset · model'].iloc[0]}"
        frame = frame.drop(columns="dataset · model")
    write_text(md_dir / "paired.md", frame_markdown(frame, caption))
    write_text(
        tex_dir / "paired.tex",
        frame_latex(
            frame, caption, "tab:paired", long=True, column_format="l" * (frame.shape[1] - 1) + RAGGED.format("3cm")
        ),
    )
    write_text(tex_dir / "paired.json", frame_json(frame, caption))
    write_text(md_dir / "setup.md", setup_markdown(setup))
    write_text(tex_dir / "setup.tex", setup_macros(setup))
    write_text(tex_dir / "setup.json", json.dumps(setup, ensure_ascii=False, indent=1) + "\n")
    return written + [
        md_dir / "paired.md",
        tex_dir / "paired.tex",
        tex_dir / "paired.json",
        md_dir / "setup.md",
        tex_dir / "setup.tex",
        tex_dir / "setup.json",
    ]
