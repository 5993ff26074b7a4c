"""Collect the selected runs into tidy tables: runs, summary, paired comparisons, curves.

A run directory is `<root>/<study>/<dataset>/<model>/<optimizer>/noise<pct>/seed<seed>/` (`unitgrad.runs.RunId`);
its identity comes from that path, its numbers from `train/dvclive/metrics.json`,
`train/dvclive/plots/metrics/**.tsv`, `train/run.json` and `eval.json`, and its protocol (the fields a
published number's source fixed: batch, LR, rho, m, ...) from the config recorded in run.json.
Accuracies stay fractions in [0, 1] here; figures and tables show percentages.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from unitgrad.errors import UnitgradError
from unitgrad.report.references import PROTOCOL_FIELDS
from unitgrad.report.stats import describe, paired_difference
from unitgrad.runs import RunId

ID_COLUMNS = ["study", "dataset", "model", "optimizer", "noise", "seed"]
CONFIG_COLUMNS = ["study", "dataset", "model", "optimizer", "noise"]
SCALE_COLUMNS = ["epochs", "train_size"]
PROTOCOL_COLUMNS = [f for f in PROTOCOL_FIELDS if f not in ("model", *SCALE_COLUMNS)]
TEST_SIZE = 10_000  # CIFAR-10/100: the monitored test set when train.monitor_per_class is null
# Metrics worth a paired test: the paper's claims are about clean accuracy and corruption robustness.
PAIRED_METRICS = ("clean_acc", "pool_acc", "mca")
PAIRED_COLUMNS = [
    "study",
    "dataset",
    "model",
    "noise",
    "metric",
    "optimizer",
    "reference",
    "n",
    "mean_diff",
    "ci95_low",
    "ci95_high",
    "p_value",
    "note",
]

_NO_RUNS_FIX = "run `dvc repro` (or `unitgrad grid run`) first"


def finished(root: str | Path, selected: list[RunId]) -> list[Path]:
    """The directories of the `selected` runs under `root` that hold training metrics or an evaluation."""
    root = Path(root)
    if not root.is_dir():
        raise UnitgradError(f"{root} does not exist: {_NO_RUNS_FIX}")
    runs = [
        run.to_path(root)
        for run in selected
        if (run.to_path(root) / "train/dvclive/metrics.json").is_file() or (run.to_path(root) / "eval.json").is_file()
    ]
    if not runs:
        raise UnitgradError(f"none of the {len(selected)} selected runs has finished under {root}: {_NO_RUNS_FIX}")
    return runs


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UnitgradError(f"{path} is unreadable ({exc.__class__.__name__}): rerun the stage that writes it") from exc


def _identity(run: Path) -> dict[str, Any]:
    """The ID columns of the run in `run`; noise as the fraction of labels flipped."""
    run_id = RunId.from_path(run)
    return {
        "study": run_id.study,
        "dataset": run_id.dataset,
        "model": run_id.model,
        "optimizer": run_id.optimizer,
        "noise": run_id.noise_rate,
        "seed": run_id.seed,
    }


def _read_tsv_curves(plots_dir: Path) -> list[tuple[str, int, float]]:
    """(metric, epoch, value) from DVCLive's `step<TAB><name>` files; metric = path joined by '_'."""
    rows = []
    for tsv in sorted(plots_dir.rglob("*.tsv")):
        metric = "_".join(tsv.relative_to(plots_dir).with_suffix("").parts)
        frame = pd.read_csv(tsv, sep="\t")
        value_columns = [c for c in frame.columns if c not in {"step", "timestamp"}]
        if "step" not in frame.columns or len(value_columns) != 1:
            raise UnitgradError(f"{tsv} is not a DVCLive metric file (step + one value column): rerun training")
        rows += [(metric, int(s), float(v)) for s, v in zip(frame["step"], frame[value_columns[0]])]
    return rows


def read_run(run: Path) -> tuple[dict[str, Any], dict[str, float], list[tuple[str, int, float]]]:
    """(identity and scale, final metrics, learning-curve points) of one run directory."""
    ident = _identity(run)
    metrics: dict[str, float] = {}
    curves: list[tuple[str, int, float]] = []
    train = run / "train"
    config: dict[str, Any] = {}
    if (train / "run.json").is_file():
        provenance = _read_json(train / "run.json")
        config = provenance.get("config", {}) or {}
        if provenance.get("wall_time_s") is not None:
            metrics["wall_time_s"] = float(provenance["wall_time_s"])
    if (train / "dvclive/metrics.json").is_file():
        final = _read_json(train / "dvclive/metrics.json")
        for split in ("train", "test"):
            for name in ("acc", "loss"):
                value = final.get(split, {}).get(name) if isinstance(final.get(split), dict) else None
                if value is not None:
                    metrics[f"{split}_{name}"] = float(value)
    if (train / "dvclive/plots/metrics").is_dir():
        curves = _read_tsv_curves(train / "dvclive/plots/metrics")
    if (run / "eval.json").is_file():
        evaluation = _read_json(run / "eval.json")
        clean = evaluation.get("clean", {})
        for name in ("acc", "loss", "ece"):
            if clean.get(name) is not None:
                metrics["ece" if name == "ece" else f"clean_{name}"] = float(clean[name])
        if evaluation.get("mca") is not None:
            metrics["mca"] = float(evaluation["mca"])
        # Memorisation, the held-out pool and the best epoch (picked on the monitor set, scored on the test set).
        fields = {
            "fit_flipped": ("fit", "flipped"),
            "fit_unflipped": ("fit", "unflipped"),
            "pool_acc": ("pool", "acc"),
            "heldout_train_acc": ("pool", "train_acc"),
            "best_epoch_test_acc": ("best_epoch", "test_acc"),
        }
        for metric, (section, name) in fields.items():
            value = (evaluation.get(section) or {}).get(name)
            if value is not None:
                metrics[metric] = float(value)
        for corruption, by_severity in (evaluation.get("corruption") or {}).items():
            for severity, acc in by_severity.items():
                metrics[f"corruption/{corruption}/{int(severity)}"] = float(acc)
    test_accs = [value for metric, _, value in curves if metric == "test_acc"]
    if test_accs:  # the best epoch's test accuracy (on the monitored test images: see monitor_size)
        metrics["best_acc"] = max(test_accs)
    # The logged curves say how many epochs actually ran (sgd_2x doubles them); the config is the fallback.
    epochs = 1 + max(epoch for _, epoch, _ in curves) if curves else config.get("epochs")
    scale = {"epochs": float(epochs) if epochs is not None else math.nan, "train_size": math.nan}
    if (train / "labels.npz").is_file():
        with np.load(train / "labels.npz") as labels:
            scale["train_size"] = float(len(labels["train_indices"]))
    return {**ident, **scale, **protocol(config)}, metrics, curves


def protocol(config: dict[str, Any]) -> dict[str, Any]:
    """The protocol fields of a run from its recorded config (NaN or "" where it has none, e.g. rho of SGD)."""
    if not config:
        return dict.fromkeys(PROTOCOL_COLUMNS, math.nan)
    kwargs = config.get("optimizer_kwargs", {})
    two_pass = config.get("method") in ("sam", "asam", "pugd")
    augmentation = [f"crop{config['crop_padding']}"] if config.get("crop_padding") else []
    augmentation += ["flip"] if config.get("flip") else []
    augmentation += [f"cutout{config['cutout']}"] if config.get("cutout") else []
    per_class = config.get("monitor_per_class")
    classes = 100 if config.get("dataset") == "cifar100" else 10
    return {
        "batch_size": config.get("batch_size", math.nan),
        "lr": kwargs.get("lr", math.nan),
        "weight_decay": kwargs.get("weight_decay", math.nan),
        "rho": kwargs.get("rho", math.nan),
        "m": (config.get("m") or config.get("batch_size", math.nan)) if two_pass else math.nan,
        "label_smoothing": config.get("label_smoothing", math.nan),
        "augmentation": "+".join(augmentation) or "none",
        "bn_update": config.get("bn_update", "") if two_pass else "",
        "asam_rule": kwargs.get("rule", ""),
        "noise_kind": config.get("noise_kind") or "",
        "monitor_size": TEST_SIZE if per_class is None else per_class * classes,
    }


def collect(root: str | Path, selected: list[RunId]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, curves) of the finished `selected` runs: one tidy row per run × final metric, one per run × metric
    × epoch."""
    run_rows, curve_rows = [], []
    for run in finished(root, selected):
        ident, metrics, curves = read_run(run)
        run_rows += [{**ident, "metric": m, "value": v} for m, v in metrics.items()]
        curve_rows += [{**{k: ident[k] for k in ID_COLUMNS}, "epoch": e, "metric": m, "value": v} for m, e, v in curves]
    runs = pd.DataFrame(run_rows, columns=ID_COLUMNS + SCALE_COLUMNS + PROTOCOL_COLUMNS + ["metric", "value"])
    curves = pd.DataFrame(curve_rows, columns=ID_COLUMNS + ["epoch", "metric", "value"])
    return runs.sort_values(ID_COLUMNS + ["metric"], ignore_index=True), curves.sort_values(
        ID_COLUMNS + ["metric", "epoch"], ignore_index=True
    )


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration × metric: mean, std, n, ci95 (t-based half-width) and the seeds used."""
    rows = []
    for key, group in runs.groupby(CONFIG_COLUMNS + ["metric"], sort=True):
        scale = {c: group[c].max() for c in SCALE_COLUMNS}
        rows.append(
            {
                **dict(zip(CONFIG_COLUMNS + ["metric"], key)),
                **scale,
                **describe(group["value"]),
                "seeds": " ".join(str(s) for s in sorted(group["seed"])),
            }
        )
    return pd.DataFrame(
        rows, columns=CONFIG_COLUMNS + ["metric"] + SCALE_COLUMNS + ["mean", "std", "n", "ci95", "seeds"]
    )


def paired(runs: pd.DataFrame, references: list[str], min_seeds: int) -> pd.DataFrame:
    """Every optimizer minus each reference optimizer, paired by seed within study/dataset/model/noise."""
    rows = []
    selected = runs[runs["metric"].isin(PAIRED_METRICS)]
    for (study, dataset, model, noise, metric), group in selected.groupby(
        ["study", "dataset", "model", "noise", "metric"]
    ):
        by_seed = group.pivot_table(index="seed", columns="optimizer", values="value")
        for reference in references:
            if reference not in by_seed.columns:
                continue
            for optimizer in by_seed.columns:
                if optimizer == reference:
                    continue
                pairs = by_seed[[optimizer, reference]].dropna()
                if pairs.empty:
                    continue
                rows.append(
                    {
                        "study": study,
                        "dataset": dataset,
                        "model": model,
                        "noise": noise,
                        "metric": metric,
                        "optimizer": optimizer,
                        "reference": reference,
                        **paired_difference(pairs[optimizer], pairs[reference], min_seeds),
                    }
                )
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)
