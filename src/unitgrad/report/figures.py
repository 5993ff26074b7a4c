"""Result figures from the aggregated CSVs, each written as PNG and PDF under fixed names.

Every figure is written even when its data is thin: one seed draws no band or error bar, a missing
study (no label noise, no corruption evaluation) draws a panel that says so, so the DVC outputs
always exist and never pretend. Error bars are 95 % t-based CIs across seeds; bands are ± 1 std.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from unitgrad.io import atomic_path
from unitgrad.report import style
from unitgrad.report.stats import describe

FORMATS = ("png", "pdf")
PANEL_WIDTH, PANEL_HEIGHT = 3.6, 2.9


def _panels(keys: list[tuple[str, str]], height: float = PANEL_HEIGHT, width: float = PANEL_WIDTH):
    keys = keys or [("", "")]
    fig, axes = plt.subplots(1, len(keys), figsize=(width * len(keys), height), squeeze=False, layout="constrained")
    return fig, list(zip(keys, axes[0]))


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _legend_below(fig: Figure, axes_list) -> None:
    """One legend for the whole figure, under the panels, so it never covers data."""
    handles, labels = {}, []
    for ax in axes_list:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            if text not in handles:
                handles[text] = handle
                labels.append(text)
    if labels:
        fig.legend(
            [handles[t] for t in labels], labels, loc="outside lower center", ncol=min(len(labels), 3), frameon=False
        )


def _dodge(index: int, count: int, spread: float) -> float:
    """Horizontal offset that keeps overlapping error bars of `count` series apart."""
    return (index - (count - 1) / 2) * spread / max(count, 1)


def _groups(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted({(d, m) for d, m in zip(frame["dataset"], frame["model"])})


def accuracy_figure(runs: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Clean test accuracy per optimizer: mean with 95 % CI, and each seed as a small dot."""
    clean = summary[(summary["metric"] == "clean_acc") & (summary["noise"] == 0)]
    seeds = runs[(runs["metric"] == "clean_acc") & (runs["noise"] == 0)]
    fig, panels = _panels(_groups(clean))
    for (dataset, model), ax in panels:
        rows = clean[(clean["dataset"] == dataset) & (clean["model"] == model)]
        if rows.empty:
            _empty(ax, "no clean runs yet")
            continue
        optimizers = style.ordered(rows["optimizer"])
        for x, optimizer in enumerate(optimizers):
            row = rows[rows["optimizer"] == optimizer].iloc[0]
            ci = 100 * row["ci95"] if np.isfinite(row["ci95"]) else None
            ax.errorbar(
                x,
                100 * row["mean"],
                yerr=ci,
                fmt=style.marker(optimizer),
                color=style.colour(optimizer),
                capsize=4,
                markersize=7,
                label=style.label(optimizer),
            )
            points = seeds[
                (seeds["dataset"] == dataset) & (seeds["model"] == model) & (seeds["optimizer"] == optimizer)
            ]["value"]
            ax.scatter(
                x + 0.18 + np.zeros(len(points)),
                100 * points,
                s=10,
                color=style.colour(optimizer),
                alpha=0.5,
                linewidths=0,
            )
        ax.set_xticks(range(len(optimizers)), [style.label(o) for o in optimizers], rotation=30, ha="right")
        ax.set_xlim(-0.5, len(optimizers) - 0.3)
        ax.set_ylabel("clean test accuracy (%)")
        ax.set_title(style.panel_title(dataset, model))
    fig.suptitle("Test accuracy: mean ± 95 % CI across seeds (dots: single seeds)", fontsize=9)
    return fig


def learning_curves_figure(curves: pd.DataFrame) -> Figure:
    """Monitored accuracy (test, or the holdout of left-out training images) vs epoch per optimizer: mean across
    seeds with a ± 1 std band."""
    monitored = "test_acc" if (curves["metric"] == "test_acc").any() else "holdout_acc"
    test = curves[(curves["metric"] == monitored) & (curves["noise"] == 0)]
    fig, panels = _panels(_groups(test))
    for (dataset, model), ax in panels:
        rows = test[(test["dataset"] == dataset) & (test["model"] == model)]
        if rows.empty:
            _empty(ax, "no learning curves yet")
            continue
        for optimizer in style.ordered(rows["optimizer"]):
            per_epoch = rows[rows["optimizer"] == optimizer].groupby("epoch")["value"]
            mean, std, n = 100 * per_epoch.mean(), 100 * per_epoch.std(ddof=1), per_epoch.count()
            epochs = mean.index + 1  # DVCLive steps count from 0; an epoch is reported after it ends
            ax.plot(
                epochs,
                mean,
                marker=style.marker(optimizer),
                markersize=3,
                color=style.colour(optimizer),
                label=style.label(optimizer),
            )
            if (n > 1).all():
                ax.fill_between(epochs, mean - std, mean + std, color=style.colour(optimizer), alpha=0.15, linewidth=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{monitored.split('_')[0]} accuracy (%)")
        ax.set_title(style.panel_title(dataset, model))
    _legend_below(fig, [ax for _, ax in panels])
    fig.suptitle("Learning curves: mean across seeds, band ± 1 std", fontsize=9)
    return fig


def label_noise_figure(summary: pd.DataFrame) -> Figure:
    """Clean test accuracy vs training-label noise rate per optimizer (mean ± 95 % CI)."""
    clean = summary[summary["metric"] == "clean_acc"]
    noisy_configs = clean[clean["noise"] > 0]
    keys = _groups(noisy_configs)
    fig, panels = _panels(keys)
    for (dataset, model), ax in panels:
        if noisy_configs.empty:
            _empty(ax, "no label-noise runs\n(params: report.noise_study)")
            continue
        rows = clean[(clean["dataset"] == dataset) & (clean["model"] == model)]
        studied = set(
            noisy_configs[(noisy_configs["dataset"] == dataset) & (noisy_configs["model"] == model)]["optimizer"]
        )
        optimizers = style.ordered(studied)
        for index, optimizer in enumerate(optimizers):
            line = rows[rows["optimizer"] == optimizer].sort_values("noise")
            ci = 100 * line["ci95"].fillna(0)
            rates = 100 * line["noise"] + _dodge(index, len(optimizers), 4.0)
            ax.errorbar(
                rates,
                100 * line["mean"],
                yerr=ci,
                marker=style.marker(optimizer),
                color=style.colour(optimizer),
                capsize=3,
                label=style.label(optimizer),
            )
        rates = sorted(rows[rows["optimizer"].isin(studied)]["noise"].unique())
        ax.set_xticks([100 * r for r in rates])
        ax.set_xlim(100 * min(rates) - 5, 100 * max(rates) + 5)
        ax.set_xlabel("symmetric label noise in training labels (%)")
        ax.set_ylabel("clean test accuracy (%)")
        ax.set_title(style.panel_title(dataset, model))
    _legend_below(fig, [ax for _, ax in panels])
    fig.suptitle("Label noise: mean ± 95 % CI across seeds", fontsize=9)
    return fig


def _severity_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run and severity (0 = clean): accuracy averaged over corruptions."""
    corr = runs[runs["metric"].str.startswith("corruption/") & (runs["noise"] == 0)].copy()
    corr["severity"] = corr["metric"].str.rsplit("/", n=1).str[-1].astype(int)
    keys = ["dataset", "model", "optimizer", "seed"]
    per_run = corr.groupby(keys + ["severity"], as_index=False)["value"].mean()
    clean = runs[(runs["metric"] == "clean_acc") & (runs["noise"] == 0)][keys + ["value"]]
    clean = clean.merge(per_run[keys].drop_duplicates(), on=keys).assign(severity=0)
    return pd.concat([clean, per_run], ignore_index=True)


def corruption_severity_figure(runs: pd.DataFrame) -> Figure:
    """Accuracy vs corruption severity (mean over corruption types; 0 = clean), mean ± 95 % CI."""
    table = _severity_table(runs)
    fig, panels = _panels(_groups(table))
    for (dataset, model), ax in panels:
        rows = table[(table["dataset"] == dataset) & (table["model"] == model)]
        if rows.empty:
            _empty(ax, "no corruption evaluation\n(params: evaluate.corruptions)")
            continue
        optimizers = style.ordered(rows["optimizer"])
        for index, optimizer in enumerate(optimizers):
            stats = [
                (severity, describe(group["value"]))
                for severity, group in rows[rows["optimizer"] == optimizer].groupby("severity")
            ]
            severities = [s + _dodge(index, len(optimizers), 0.4) for s, _ in stats]
            mean = [100 * d["mean"] for _, d in stats]
            ci = [100 * d["ci95"] if np.isfinite(d["ci95"]) else 0.0 for _, d in stats]
            ax.errorbar(
                severities,
                mean,
                yerr=ci,
                marker=style.marker(optimizer),
                color=style.colour(optimizer),
                capsize=3,
                label=style.label(optimizer),
            )
        ax.set_xticks(range(6), ["clean", "1", "2", "3", "4", "5"])
        ax.set_xlabel("corruption severity")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(style.panel_title(dataset, model))
    _legend_below(fig, [ax for _, ax in panels])
    fig.suptitle("Corruptions: accuracy averaged over corruption types, mean ± 95 % CI", fontsize=9)
    return fig


def corruption_heatmap_figure(summary: pd.DataFrame) -> Figure:
    """Corruption × optimizer accuracy (mean over severities and seeds), annotated in %."""
    corr = summary[summary["metric"].str.startswith("corruption/") & (summary["noise"] == 0)].copy()
    corr["corruption"] = corr["metric"].str.split("/").str[1]
    keys = _groups(corr)
    n_rows = max(corr["corruption"].nunique(), 3)
    fig, panels = _panels(keys, height=1.2 + 0.26 * n_rows, width=1.6 + 0.75 * max(corr["optimizer"].nunique(), 2))
    for (dataset, model), ax in panels:
        rows = corr[(corr["dataset"] == dataset) & (corr["model"] == model)]
        if rows.empty:
            _empty(ax, "no corruption evaluation\n(params: evaluate.corruptions)")
            continue
        grid = 100 * rows.pivot_table(index="corruption", columns="optimizer", values="mean", aggfunc="mean")
        grid = grid[style.ordered(grid.columns)]
        grid = grid.loc[grid.mean(axis=1).sort_values(ascending=False).index]
        image = ax.imshow(grid.to_numpy(), cmap=style.HEATMAP_CMAP, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [style.label(o) for o in grid.columns], rotation=30, ha="right")
        ax.set_yticks(range(grid.shape[0]), [c.replace("_", " ") for c in grid.index])
        ax.grid(False)
        threshold = np.nanmean(grid.to_numpy())
        for (i, j), value in np.ndenumerate(grid.to_numpy()):
            ax.text(
                j,
                i,
                f"{value:.1f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if value > threshold else "white",
            )
        fig.colorbar(image, ax=ax, label="accuracy (%)", shrink=0.8)
        ax.set_title(style.panel_title(dataset, model))
    fig.suptitle("Accuracy per corruption (mean over severities 1–5 and seeds)", fontsize=9)
    return fig


def figure_builders(
    runs: pd.DataFrame, summary: pd.DataFrame, curves: pd.DataFrame, noise_summary: pd.DataFrame
) -> dict[str, Callable[[], Figure]]:
    """Figure file stem → builder; the stems are the fixed output names declared in dvc.yaml. The label-noise
    figure draws `noise_summary` (one study's), the others the rest (another's)."""
    return {
        "accuracy": lambda: accuracy_figure(runs, summary),
        "learning_curves": lambda: learning_curves_figure(curves),
        "label_noise": lambda: label_noise_figure(noise_summary),
        "corruption_severity": lambda: corruption_severity_figure(runs),
        "corruption_heatmap": lambda: corruption_heatmap_figure(summary),
    }


def save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write `stem.png` and `stem.pdf` atomically; return their paths."""
    paths = []
    for fmt in FORMATS:
        path = Path(out_dir) / f"{stem}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt)
        paths.append(path)
    plt.close(fig)
    return paths


def write_figures(
    runs: pd.DataFrame, summary: pd.DataFrame, curves: pd.DataFrame, noise_summary: pd.DataFrame, out_dir: Path
) -> list[Path]:
    style.use()
    paths = []
    for stem, build in figure_builders(runs, summary, curves, noise_summary).items():
        paths += save(build(), out_dir, stem)
    return paths
