"""Which run directories the report reads: exactly the runs params.yaml's studies select, as trained.

A selected run whose recorded config (run.json) differs from what params say for it is an error naming
the run and the keys: its numbers belong to another experiment. Run directories that no study selects
(an earlier grid, a removed seed) are stale: the report ignores them, warns, and `unitgrad clean` removes them.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from unitgrad.config import load_params
from unitgrad.errors import UnitgradError
from unitgrad.run_config import RunConfig
from unitgrad.runs import RUNS_ROOT, RunId
from unitgrad.schema import Params
from unitgrad.studies import selected_runs

# Where and how a run computed, not what it computed: a run may move between machines.
_NOT_IDENTITY = {"data_root", "device", "compile"}


def check_recorded(root: Path, params: Params, source: str | Path) -> list[RunId]:
    """The selected runs, after checking each trained one's recorded config against `params` (UnitgradError)."""
    runs = selected_runs(params)
    for run in runs:
        run_json = run.to_path(root) / "train" / "run.json"
        if not run_json.is_file():
            continue
        try:
            recorded = json.loads(run_json.read_text())["config"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UnitgradError(f"{run_json} is unreadable ({exc.__class__.__name__}): rerun `dvc repro`") from exc
        expected = RunConfig.for_run(params, run, source).to_dict()
        differs = _differences(recorded, expected)
        if differs:
            raise UnitgradError(
                f"{run.to_path(root)} was trained with {differs} where {source} says otherwise: rerun `dvc repro` "
                "(or `unitgrad grid run`) to train it as configured"
            )
    return runs


def _differences(recorded: dict[str, Any], expected: dict[str, Any]) -> str:
    """The first config keys whose recorded value differs, as "key recorded (params: expected)"."""
    keys = sorted(key for key in expected.keys() - _NOT_IDENTITY if recorded.get(key) != expected[key])
    shown = [f"{key} {recorded.get(key)!r} (params: {expected[key]!r})" for key in keys[:3]]
    return ", ".join(shown) + (f" and {len(keys) - 3} more" if keys[3:] else "")


def stale(root: Path, selected: list[RunId]) -> list[Path]:
    """Run directories under `root` that no study selects, sorted."""
    chosen = {run.to_path(root) for run in selected}
    return sorted(path for path in Path(root).glob(RunId.glob()) if RunId.is_run_dir(path) and path not in chosen)


def clean(root: Path, params: Params, dry_run: bool) -> list[Path]:
    """Remove (or with `dry_run` only list) the stale run directories under `root`; DVC's cache is elsewhere."""
    removed = stale(root, selected_runs(params))
    if not dry_run:
        for path in removed:
            if path.is_symlink():  # the link is the stale run folder; what it points to is not ours to delete
                path.unlink()
            else:
                shutil.rmtree(path)
    return removed


def main(argv: list[str]) -> int:
    """`unitgrad clean [--dry-run]`: remove the run directories no study in params.yaml selects."""
    parser = argparse.ArgumentParser(prog="unitgrad clean", description=main.__doc__)
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: %(default)s)")
    parser.add_argument(
        "--runs", type=Path, default=RUNS_ROOT, help="root of the run directories (default: %(default)s)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    args = parser.parse_args(argv)
    removed = clean(args.runs, load_params(args.params, ("studies",)), args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print("\n".join(f"{verb} {path}" for path in removed) or f"no stale run directories under {args.runs}")
    return 0
