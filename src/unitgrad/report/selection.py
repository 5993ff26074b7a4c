"""Which run directories the report reads: exactly the runs params.yaml's studies select, as trained.

A selected run whose recorded config (run.json) differs from what params say for it is an error naming
the run and the keys: its numbers belong to another experiment. Run directories that no study selects
(an earlier grid, a removed seed) are stale: the report ignores them, warns, and `unitgrad clean` removes them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from unitgrad.errors import UnitgradError
from unitgrad.runs import RunId
from unitgrad.schema import Params
from unitgrad.studies import selected_runs
from unitgrad.train.config import RunConfig

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
                f"{run.to_path(root)} was trained with {differs} than {source} says: rerun `dvc repro` "
                "(or `unitgrad grid run`) to train it as configured"
            )
    return runs


def _differences(recorded: dict[str, Any], expected: dict[str, Any]) -> str:
    keys = sorted(key for key in expected.keys() - _NOT_IDENTITY if recorded.get(key) != expected[key])
    return ", ".join(f"{key} {recorded.get(key)!r} rather" for key in keys[:3]) + (" (and more)" if keys[3:] else "")


def stale(root: Path, selected: list[RunId]) -> list[Path]:
    """Run directories under `root` that no study selects, sorted."""
    chosen = {run.to_path(root) for run in selected}
    return sorted(path for path in Path(root).glob(RunId.glob()) if RunId.is_run_dir(path) and path not in chosen)


def clean(root: Path, params: Params, dry_run: bool) -> list[Path]:
    """Remove (or with `dry_run` only list) the stale run directories under `root`; DVC's cache is elsewhere."""
    removed = stale(root, selected_runs(params))
    if not dry_run:
        for path in removed:
            shutil.rmtree(path)
    return removed
