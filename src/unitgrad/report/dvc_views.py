"""Headline numbers for `dvc metrics show`: one small JSON file per study, configuration and optimizer.

`dvc metrics show` prints one row per file and one column per flattened key. A file
`<study>/<dataset>_<model>_noise<pct>/<optimizer>.json` holding `{"acc": %, "mca": %, "n": seeds}` makes it a
table of three columns, a row per optimizer, grouped by study and configuration, however large the grid
(a file per study with the optimizers as keys made a column per optimizer × metric: ~200 characters wide).
The per-run files stay data.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from unitgrad.io import atomic_dir, write_json

HEADLINE_METRICS = {"acc": "clean_acc", "mca": "mca"}  # key in the file -> summary.csv metric


def headline_name(study: str, dataset: str, model: str, noise: float, optimizer: str) -> str:
    """`<study>/<dataset>_<model>_noise<pct>/<optimizer>.json`: one file under results/metrics."""
    return f"{study}/{dataset}_{model}_noise{round(100 * noise)}/{optimizer}.json"


def headline_metrics(summary: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    """File name (headline_name) -> {"acc": mean clean accuracy (%), "mca": mean corruption accuracy (%) where
    evaluated, "n": seeds behind the accuracy}, from summary.csv's rows."""
    rows = summary[summary["metric"].isin(HEADLINE_METRICS.values())]
    files = {}
    for key, group in rows.groupby(["study", "dataset", "model", "noise", "optimizer"], sort=True):
        by_metric = group.set_index("metric")
        content: dict[str, float | int] = {
            name: round(100 * float(by_metric.at[metric, "mean"]), 2)
            for name, metric in HEADLINE_METRICS.items()
            if metric in by_metric.index
        }
        if "clean_acc" in by_metric.index:
            content["n"] = int(by_metric.at["clean_acc", "n"])
        files[headline_name(*key)] = content
    return files


def write_headline_metrics(summary: pd.DataFrame, metrics_dir: Path) -> None:
    """Replace `metrics_dir` with headline_metrics(summary)'s files, as a whole: no file of an earlier grid stays."""
    with atomic_dir(metrics_dir) as tmp:
        for name, content in headline_metrics(summary).items():
            write_json(tmp / name, content)
