"""The protocol each group of runs recorded, and how it differs from a source's protocol.

results/runs.csv carries, on every row of a run, the run's protocol fields (`PROTOCOL_FIELDS`
less `model`, which with study, dataset, optimizer and noise names the group). The seeds of one
group should agree on every field; where they do not, the field reads "mixed: a, b" and can
never match a source.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from unitgrad.report.references import PROTOCOL_FIELDS

GROUP_COLUMNS = ["study", "dataset", "model", "optimizer", "noise"]
RECORDED_FIELDS = [f for f in PROTOCOL_FIELDS if f != "model"]


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def text(value: Any) -> str:
    """A field value as the mismatch lists write it: numbers with %g, missing ones "not recorded"."""
    if _missing(value):
        return "not recorded"
    return f"{value:g}" if isinstance(value, float | int) else str(value)


def run_protocols(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (study, dataset, model, optimizer, noise): each protocol field as its runs recorded it, and `n_seeds`.

    A field the seeds disagree on reads "mixed: a, b"; one no run recorded (or a column runs.csv
    lacks, as from an older aggregate) reads NaN, i.e. not recorded.
    """
    frame = runs.reindex(columns=list(dict.fromkeys(GROUP_COLUMNS + ["seed"] + RECORDED_FIELDS)))
    per_run = frame.drop_duplicates(GROUP_COLUMNS + ["seed"])  # the fields are per run, repeated per metric
    rows = []
    for key, group in per_run.groupby(GROUP_COLUMNS, dropna=False, sort=True):
        row = dict(zip(GROUP_COLUMNS, key))
        for name in RECORDED_FIELDS:
            values = sorted({text(v) for v in group[name]})
            row[name] = group[name].iloc[0] if len(values) == 1 else "mixed: " + ", ".join(values)
        rows.append({**row, "n_seeds": int(group["seed"].nunique())})
    return pd.DataFrame(rows, columns=GROUP_COLUMNS + RECORDED_FIELDS + ["n_seeds"])


def _equal(recorded: Any, expected: Any) -> bool:
    if isinstance(expected, str):
        return str(recorded) == expected
    try:
        return math.isclose(float(recorded), float(expected), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def protocol_mismatches(recorded: pd.Series, expected: dict[str, Any], note: str = "") -> list[str]:
    """ "field recorded ≠ expected" for every expected field the runs did not record as expected."""
    out = []
    for name, value in expected.items():
        got = recorded.get(name)
        if value is None:  # no artifact model is known to be the source's architecture
            out.append(f"{name} {text(got)}: {note}")
        elif str(got).startswith("mixed: ") or not _equal(got, value):
            out.append(f"{name} {text(got)} ≠ {text(value)}")
    return out


def merged_mismatches(per_optimizer: dict[str, list[str]]) -> list[str]:
    """The optimizers' mismatches, those they all share once, the rest prefixed with their optimizer."""
    if not per_optimizer:
        return []
    shared = set.intersection(*(set(m) for m in per_optimizer.values()))
    return [m for m in next(iter(per_optimizer.values())) if m in shared] + [
        f"{o}: {m}" for o, ms in per_optimizer.items() for m in ms if m not in shared
    ]
