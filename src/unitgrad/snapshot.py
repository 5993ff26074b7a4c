"""`unitgrad snapshot DEST`: the small results of a finished scale, copied where git can keep them.

DVC keeps the models and data; a reviewer without them reads this snapshot: the tidy CSVs, the claims and the
verdict, the figures, and each selected run's run.json and eval.json, with a README that says which commit,
machine, date and wall time produced them. The analysis notebook falls back to it when no local results exist.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd

from unitgrad.config import load_params
from unitgrad.errors import UnitgradError
from unitgrad.io import write_text
from unitgrad.report import verdict
from unitgrad.runs import RUNS_ROOT
from unitgrad.studies import selected_runs

RESULT_FILES = ("runs.csv", "summary.csv", "paired.csv", "curves.csv", "claims.md", "claims.csv", "verdict.csv")
FIGURES = ("accuracy", "learning_curves", "label_noise", "corruption_severity", "corruption_heatmap")


def snapshot(results: Path, dest: Path, params_path: str, wall_time: str) -> list[Path]:
    """Copy the selected runs' records and the report's files from `results` into `dest`; the files written."""
    params = load_params(params_path, ("scale", "studies"))
    missing = [name for name in RESULT_FILES if not (results / name).is_file()]
    runs = [run for run in selected_runs(params) if not (run.to_path(results / "runs") / "eval.json").is_file()]
    if missing or runs:
        what = ", ".join([*missing, *(run.relative().as_posix() for run in runs)][:5])
        raise UnitgradError(f"{results} lacks {what}: finish the scale (`unitgrad grid run`) before a snapshot")
    shutil.rmtree(dest / "runs", ignore_errors=True)  # runs a former snapshot had and this one does not
    (dest / "figures").mkdir(parents=True, exist_ok=True)
    written = []
    for name in RESULT_FILES:
        written.append(Path(shutil.copy2(results / name, dest / name)))
    for name in FIGURES:
        written.append(Path(shutil.copy2(results / "figures" / f"{name}.png", dest / "figures" / f"{name}.png")))
    records = []
    for run in selected_runs(params):
        source, target = run.to_path(results / "runs"), run.to_path(dest / "runs")
        (target / "train").mkdir(parents=True, exist_ok=True)
        written.append(Path(shutil.copy2(source / "eval.json", target / "eval.json")))
        written.append(Path(shutil.copy2(source / "train" / "run.json", target / "train" / "run.json")))
        records.append(json.loads((source / "train" / "run.json").read_text()))
    written.append(dest / "README.md")
    write_text(dest / "README.md", _readme(params.scale, params_path, records, wall_time))
    return written


README_BEGIN, README_END = "<!-- laptop verdict: from results/laptop/verdict.csv -->", "<!-- end of laptop verdict -->"


def readme_block(snapshot_dir: Path) -> str:
    """The project README's verdict block, written from the snapshot's verdict.csv and README.md."""
    decided = pd.read_csv(snapshot_dir / "verdict.csv", dtype=str, keep_default_na=False)
    provenance = (snapshot_dir / "README.md").read_text().split("\n- ", 1)[1].split("\n\n", 1)[0]
    lines = [
        README_BEGIN,
        "SGD, SAM and PUGD on CIFAR-10 at the laptop scale (`params.laptop.yaml`, below), the first independent "
        "measurement of PUGD we know of. Differences are PUGD − SAM (gates: SGD, SAM − SGD) on paired seeds, on the "
        "final epoch's accuracy over the held-out pool (57 000 images); one-sided tests, Holm-corrected over the "
        "three claims. Full record: [results/laptop/](results/laptop/README.md) (claims, summary, figures, every "
        "run's run.json); protocol and its pilot: [results/laptop/pilot.md](results/laptop/pilot.md).",
        "",
        *verdict.headline(decided),
        "",
        verdict.CANNOT_DECIDE,
        "",
        "- " + provenance,
        README_END,
    ]
    return "\n".join(lines)


def _readme(scale: str, params_path: str, records: list[dict], wall_time: str) -> str:
    commits = sorted({str(r.get("git_commit")) for r in records})
    dirty = any(r.get("git_dirty") for r in records)
    started = min(r["started"] for r in records)
    finished = max(r["finished"] for r in records)
    training = sum(float(r["wall_time_s"]) for r in records)
    return "\n".join(
        [
            f"# Results snapshot: {scale} scale",
            "",
            f"Written by `unitgrad snapshot` from the results of `{params_path}` (copied to params.yaml).",
            "",
            f"- commit: {', '.join(commits)}"
            + (" (params.yaml, dvc.yaml and dvc.lock changed for the scale)" if dirty else ""),
            f"- machine: {records[0].get('device')}; torch {records[0].get('packages', {}).get('torch')}; "
            f"{records[0].get('torch_threads', '?')} torch thread(s) per run",
            f"- date: {started[:10]}; first run started {started}, last finished {finished}",
            f"- wall time of the whole scale: {wall_time}; {len(records)} training runs, {training / 3600:.2f} h of "
            "training in all",
            "",
            "Files: the report's CSVs (`runs.csv`, `summary.csv`, `paired.csv`, `curves.csv`), `claims.md` / "
            "`claims.csv` and the laptop-scale `verdict.csv`, `figures/`, and each run's `train/run.json` (config, "
            "provenance) and `eval.json` (clean, pool, memorisation, best epoch, corruptions) under `runs/`.",
            "",
        ]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="unitgrad snapshot", description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="where the snapshot goes, e.g. results/laptop")
    parser.add_argument("--results", type=Path, default=RUNS_ROOT.parent, help="the results (default: %(default)s)")
    parser.add_argument("--params", default="params.yaml", help="the settings file (default: %(default)s)")
    parser.add_argument("--wall-time", required=True, help="the scale's measured wall time, as text")
    args = parser.parse_args(argv)
    written = snapshot(args.results, args.dest, args.params, args.wall_time)
    size = sum(p.stat().st_size for p in written)
    print(f"{args.dest}: {len(written)} files, {size / 1e6:.1f} MB")
    return 0
