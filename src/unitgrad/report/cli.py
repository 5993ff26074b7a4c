"""`unitgrad report <step>`: one DVC stage per step, each with fixed inputs and fixed output names.

aggregate  the selected runs          → results/{runs,summary,paired,curves}.csv, results/metrics/ (headline
                                        numbers for `dvc metrics show`; stale runs: a warning)
figures    the CSVs                   → results/figures/<name>.{png,pdf}
tables     the CSVs + params          → results/tables/<name>.md, paper/tables/<name>.{tex,json}
claims     runs + summary + paired + params → results/claims.{md,csv}, paper/tables/claims.{tex,json}
all        the four, in order
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the stages write files; no display is needed or assumed (notebooks keep theirs)

import pandas as pd

from unitgrad.config import load_params, view
from unitgrad.errors import UnitgradError
from unitgrad.io import atomic_path, write_text
from unitgrad.report import aggregate, claims, dvc_views, figures, selection, style, tables, verdict
from unitgrad.report.references import PUBLISHED
from unitgrad.schema import Params

CSV_NAMES = ("runs", "summary", "paired", "curves")
STEPS = ("aggregate", "figures", "tables", "claims")
# The params keys each step reads (dvc.yaml's report_<step> stage declares the same).
READS = {
    "aggregate": (
        "scale",
        "studies",
        "train",
        "model",
        "data.loader",
        "optim",
        "report.reference_optimizer",
        "report.baseline_optimizer",
        "report.min_seeds_for_verdict",
    ),
    "figures": ("report.main_study", "report.noise_study"),
    "tables": (
        "scale",
        "train.batch_size",
        "train.lr",
        "train.momentum",
        "train.weight_decay",
        "train.warmup_epochs",
        "train.label_smoothing",
        "train.bn_update",
        "optim",
        "studies",
        "data.corruptions",
        "report.main_study",
        "report.noise_study",
    ),
    "claims": (
        "scale",
        "report.min_seeds_for_verdict",
        "report.match_tolerance_pp",
        "report.main_study",
        "report.noise_study",
        "report.memorisation_gate",
        "report.noninferiority_margin_pp",
    ),
}


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, na_rep="NaN")  # NaN spelled out: n = 1 has no std, not a zero


def read_csv(results: Path, name: str) -> pd.DataFrame:
    path = results / f"{name}.csv"
    if not path.is_file():
        raise UnitgradError(f"{path} not found: run `unitgrad report aggregate` (or `dvc repro`) first")
    frame = pd.read_csv(path)
    if "note" in frame.columns:
        frame["note"] = frame["note"].fillna("")
    return frame


def run_aggregate(runs_root: Path, results: Path, params: Params, source: str) -> None:
    selected = selection.check_recorded(runs_root, params, source)
    left_out = selection.stale(runs_root, selected)
    if left_out:
        print(
            f"warning: {len(left_out)} run directories under {runs_root} are not selected by {source} and are "
            f"not reported (e.g. {left_out[0]}): `unitgrad clean` removes them",
            file=sys.stderr,
        )
    missing = [run for run in selected if not (run.to_path(runs_root) / "eval.json").is_file()]
    runs, curves = aggregate.collect(runs_root, selected)  # none finished: one line saying so, before any warning
    if missing:
        named = ", ".join(str(run.relative()) for run in missing[:3]) + (
            f" and {len(missing) - 3} more" * (len(missing) > 3)
        )
        line = (
            f"{len(missing)} of the {len(selected)} runs {source} selects have no eval.json under {runs_root} ({named})"
        )
        if params.scale != "smoke":  # a verdict (at laptop or paper scale) would rest on the runs that did finish
            raise UnitgradError(f"{line}: run them first (`dvc repro` or `unitgrad grid run`)")
        print(f"warning: {line}: they are left out of the report; `dvc repro` runs them", file=sys.stderr)
    references = [params.report.reference_optimizer, params.report.baseline_optimizer]
    frames = {
        "runs": runs,
        "summary": aggregate.summarize(runs),
        "paired": aggregate.paired(runs, references, params.report.min_seeds_for_verdict),
        "curves": curves,
    }
    for name in CSV_NAMES:
        write_csv(frames[name], results / f"{name}.csv")
    dvc_views.write_headline_metrics(frames["summary"], results / "metrics")


def _join(values) -> str:
    return ", ".join(str(v) for v in values) if len(values) else "none"


def _per_dataset(value: float | dict[str, float]) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{v:g} ({style.dataset_label(k)})" for k, v in value.items())
    return f"{value:g}"


def setup_values(runs: pd.DataFrame, noise_runs: pd.DataFrame, params: Params) -> dict[str, str]:
    """What was actually run (from runs.csv: report.main_study's `runs`, report.noise_study's `noise_runs`) and
    the recipe it was run with (from params.yaml)."""
    clean = runs[runs["noise"] == 0]
    per_optimizer = clean.groupby("optimizer")["epochs"].max().dropna()
    if per_optimizer.empty:
        epochs = "unknown"
    else:  # the common epoch count, and the optimizers that ran another one (sgd_2x)
        common = per_optimizer.mode().iloc[0]
        others = [f"{style.label(o)}: {e:g}" for o, e in per_optimizer.items() if e != common]
        epochs = f"{common:g}" + (f" ({'; '.join(others)})" if others else "")
    sizes = sorted(runs["train_size"].dropna().unique())
    source, n_images = params.data.corruptions.source, params.data.corruptions.n_images
    train, optim = params.train, params.optim
    return {
        "scale": params.scale,
        "datasets": _join([style.dataset_label(d) for d in sorted(runs["dataset"].unique())]),
        "models": _join(sorted(runs["model"].unique())),
        "optimizers": _join([style.label(o) for o in style.ordered(runs["optimizer"].unique())]),
        "seeds": _join(sorted(clean["seed"].unique())),
        "epochs": epochs,
        "train_size": _join([f"{s:g}" for s in sizes]) if sizes else "unknown",
        "noise_rates": _join(
            [f"{round(100 * r)} %" for r in sorted(noise_runs.loc[noise_runs["noise"] > 0, "noise"].unique())]
        ),
        "noise_kind": params.studies[params.report.noise_study].noise_kind,
        "batch_size": str(train.batch_size),
        "lr": f"{train.lr:g}",
        "momentum": f"{train.momentum:g}",
        "weight_decay": f"{train.weight_decay:g}",
        "warmup_epochs": str(train.warmup_epochs),
        "label_smoothing": f"{train.label_smoothing:g}",
        "bn_update": train.bn_update.replace("_", " "),
        "base_optimizer": optim.base.upper(),
        "rho_sam": _per_dataset(optim["sam"].rho),
        "rho_asam": _per_dataset(optim["asam"].rho),
        "eta_asam": _per_dataset(optim["asam"].eta),
        "rho_pugd": _per_dataset(optim["pugd"].rho),
        "corruptions": f"generated, {n_images} test images" if source == "generate" else f"{source} CIFAR-C files",
    }


def _study(frame: pd.DataFrame, study: str) -> pd.DataFrame:
    return frame[frame["study"] == study]


def run_figures(results: Path, figures_dir: Path, params: Params) -> None:
    """The figures of report.main_study's runs, the label-noise one of report.noise_study's: never a mix."""
    main, noisy = params.report.main_study, params.report.noise_study
    summary = read_csv(results, "summary")
    figures.write_figures(
        _study(read_csv(results, "runs"), main),
        _study(summary, main),
        _study(read_csv(results, "curves"), main),
        _study(summary, noisy),
        figures_dir,
    )


def run_tables(results: Path, tex_dir: Path, params: Params) -> None:
    """The tables of report.main_study's runs and of report.noise_study's label noise; the paired one of all."""
    runs, summary = read_csv(results, "runs"), read_csv(results, "summary")
    main, noisy = params.report.main_study, params.report.noise_study
    tables.write_tables(
        _study(runs, main),
        _study(summary, main),
        _study(summary, noisy),
        read_csv(results, "paired"),
        setup_values(_study(runs, main), _study(runs, noisy), params),
        results / "tables",
        tex_dir,
    )


def run_claims(results: Path, tex_dir: Path, params: Params) -> None:
    scale, min_seeds, tolerance_pp = params.scale, params.report.min_seeds_for_verdict, params.report.match_tolerance_pp
    checked = claims.check_claims(
        read_csv(results, "runs"),
        read_csv(results, "summary"),
        read_csv(results, "paired"),
        PUBLISHED,
        scale,
        min_seeds,
        tolerance_pp,
    )
    decided = pd.DataFrame(columns=verdict.COLUMNS)
    if scale == "laptop":
        studies = {"noise": params.report.noise_study, "clean": params.report.main_study}
        gate, margin = params.report.memorisation_gate, params.report.noninferiority_margin_pp
        decided = verdict.laptop_verdict(read_csv(results, "runs"), studies, gate, margin)
        section = verdict.verdict_markdown(decided, margin)
    text = claims.claims_markdown(checked, scale, min_seeds, tolerance_pp)
    if scale == "laptop":  # the verdict first: it is what this scale can say
        head, rest = text.split("\n", 1)
        text = "\n".join([head, "", *section, rest])
    write_text(results / "claims.md", text)
    write_csv(checked, results / "claims.csv")  # the full list, tidy, for notebooks
    write_csv(decided, results / "verdict.csv")  # the laptop-scale gates and claims (header only elsewhere)
    write_text(tex_dir / "verdict.json", verdict.verdict_json(decided))
    write_text(tex_dir / "claims.tex", claims.claims_latex(checked))
    write_text(tex_dir / "claims.json", claims.claims_json(checked))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="unitgrad report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("step", choices=STEPS + ("all",), help="the report step to run (all: the four in order)")
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    parser.add_argument("--runs", type=Path, default=Path("results/runs"), help="run directories to aggregate")
    parser.add_argument("--results", type=Path, default=Path("results"), help="CSVs, tables/, claims.md")
    parser.add_argument("--figures", type=Path, default=Path("results/figures"), help="figure folder (PNG and PDF)")
    parser.add_argument(
        "--paper-tables",
        type=Path,
        default=Path("paper/tables"),
        help="the paper's table inputs: LaTeX booktabs (.tex) and Typst's (.json)",
    )
    args = parser.parse_args(argv)
    steps = STEPS if args.step == "all" else (args.step,)
    full = load_params(args.params)
    params = view(full, [key for step in steps for key in READS[step]])
    for step in steps:
        if step == "aggregate":  # resolving each run's study overrides validates whole params: pass them whole
            run_aggregate(args.runs, args.results, full, args.params)
        elif step == "figures":
            run_figures(args.results, args.figures, params)
        elif step == "tables":
            run_tables(args.results, args.paper_tables, params)
        else:
            run_claims(args.results, args.paper_tables, params)
    return 0
