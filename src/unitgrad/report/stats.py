"""Seed statistics: mean, std, t-based 95 % confidence intervals and paired comparisons.

Every run of one configuration differs only in its seed, and runs with the same seed share the
initial weights and the data order across optimizers, so optimizer comparisons are paired by seed.
With one seed there is no spread: std and CI are NaN rather than a made-up zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def t_half_width(values: Sequence[float], confidence: float = CONFIDENCE) -> float:
    """Half-width of the t-based confidence interval of the mean; NaN for fewer than 2 values."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if n < 2:
        return math.nan
    std = x.std(ddof=1)
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))


def describe(values: Sequence[float]) -> dict[str, float]:
    """{"mean", "std", "n", "ci95"}: std with ddof=1 and the CI half-width, NaN when n < 2."""
    x = np.asarray(values, dtype=float)
    return {
        "mean": float(x.mean()) if x.size else math.nan,
        "std": float(x.std(ddof=1)) if x.size > 1 else math.nan,
        "n": int(x.size),
        "ci95": t_half_width(x),
    }


def paired_difference(
    values: Sequence[float], reference: Sequence[float], min_seeds: int
) -> dict[str, float | int | str]:
    """Mean of `values - reference` (paired by seed), its 95 % CI and the paired t-test p-value.

    With fewer than `min_seeds` pairs the CI is still reported (where n ≥ 2) but the p-value is NaN
    and `note` says "too few seeds": a test on one or two pairs says nothing worth printing.
    """
    a = np.asarray(values, dtype=float)
    b = np.asarray(reference, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} vs {b.size}")
    diff = a - b
    n = int(diff.size)
    mean = float(diff.mean()) if n else math.nan
    half = t_half_width(diff)
    if n < min_seeds:
        p_value, note = math.nan, f"too few seeds ({n} < {min_seeds})"
    elif np.allclose(diff, diff[0]):
        # Identical differences: the t statistic is undefined; the CI (zero width) says it all.
        p_value, note = math.nan, "constant difference"
    else:
        p_value, note = float(stats.ttest_rel(a, b).pvalue), ""
    return {
        "n": n,
        "mean_diff": mean,
        "ci95_low": mean - half,
        "ci95_high": mean + half,
        "p_value": p_value,
        "note": note,
    }
