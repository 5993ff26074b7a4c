"""The laptop-scale verdict: two gates, then PUGD vs SAM on paired seeds, Holm-corrected.

The directional claims of the PUGD paper ("even better and more robust than SAM") are decided only where the
scale can show the effects under test:
- memorisation gate: SGD must fit at least `report.memorisation_gate` of the flipped training labels under
  noise (else there is no memorised noise for SAM or PUGD to resist);
- positive control: the 95 % CI of SAM − SGD under noise must lie above 0 (SAM's published robustness must
  show, else the scale cannot detect a robustness effect at all).
If either fails, every PUGD-vs-SAM claim is "uninformative". Otherwise each claim is a one-sided paired t-test
on the seeds: superiority (PUGD − SAM > 0) for robustness to label noise and to corruptions, non-inferiority
(PUGD − SAM > −margin) for clean accuracy; the three p-values are Holm-corrected and a claim is supported when
its adjusted p < 0.05. A Wilcoxon signed-rank and a sign test (exact, one-sided) are shown beside the t-test:
with 4 or 5 seeds they cannot reach 0.05 (their smallest p is 1/2^n), so they check the direction, not the level.
Accuracy is the final epoch's on the held-out pool (the test set and the training images no run saw).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
from scipy import stats

from unitgrad import markdown
from unitgrad.report.stats import CONFIDENCE, paired_difference
from unitgrad.report.tables import table_json

SUPPORTED, NOT_SUPPORTED, UNINFORMATIVE = "supported", "not supported", "uninformative"
PASSED, FAILED = "passed", "failed"
ALPHA = 1 - CONFIDENCE
COLUMNS = [
    "check",
    "study",
    "metric",
    "comparison",
    "n",
    "value",
    "ci95",
    "test",
    "p",
    "p_holm",
    "wilcoxon_p",
    "sign",
    "verdict",
]
CANNOT_DECIDE = (
    "What this scale cannot decide: any published number (model, data and epochs are far smaller), CIFAR-100, "
    "differences under about 0.3 pp (the sampling error of the pool and the seed-to-seed spread), and robustness "
    "on the official CIFAR-10-C (the corruptions here are generated with its constants)."
)


@dataclasses.dataclass(frozen=True)
class Claim:
    name: str
    study: str  # "noise" or "clean": report.noise_study or report.main_study
    metric: str
    noninferiority: bool  # H1: PUGD − SAM > −margin (else > 0)


CLAIMS = (
    Claim("PUGD more robust than SAM to label noise", "noise", "pool_acc", noninferiority=False),
    Claim("PUGD at least as accurate as SAM on clean data", "clean", "pool_acc", noninferiority=True),
    Claim("PUGD more robust than SAM to corruptions (mCA)", "clean", "mca", noninferiority=False),
)


def _by_seed(runs: pd.DataFrame, study: str, metric: str) -> pd.DataFrame:
    """seed × optimizer values of `metric` in `study` (one dataset, model and noise rate per study here)."""
    picked = runs[(runs["study"] == study) & (runs["metric"] == metric)]
    return picked.pivot_table(index="seed", columns="optimizer", values="value", aggfunc="first")


def _pair(table: pd.DataFrame, optimizer: str, reference: str) -> tuple[np.ndarray, np.ndarray]:
    if optimizer not in table or reference not in table:
        return np.zeros(0), np.zeros(0)
    both = table[[optimizer, reference]].dropna()
    return both[optimizer].to_numpy(float), both[reference].to_numpy(float)


def _pp(x: float) -> str:
    return f"{100 * x:+.2f} pp" if math.isfinite(x) else "n/a"


def _ci(low: float, high: float) -> str:
    return f"[{100 * low:+.2f}, {100 * high:+.2f}] pp" if math.isfinite(low) else "n/a"


def _row(**cells: object) -> dict:
    """One row of the verdict table, in its column order; the gates leave the p-value columns empty."""
    unknown = set(cells) - set(COLUMNS)
    assert not unknown, f"not verdict columns: {unknown}"
    return {column: cells.get(column, "") for column in COLUMNS}


def one_sided(diff: np.ndarray, shift: float) -> dict[str, float]:
    """p-values of H1: mean(diff) > −shift: paired t, Wilcoxon signed-rank and sign test (exact, one-sided)."""
    moved = diff + shift
    if len(moved) < 2 or np.allclose(moved, moved[0]):
        t_p = math.nan if len(moved) < 2 else (0.0 if moved[0] > 0 else 1.0)
    else:
        t_p = float(stats.ttest_1samp(moved, 0.0, alternative="greater").pvalue)
    nonzero = moved[moved != 0]
    wins = int((nonzero > 0).sum())
    wilcoxon_p = float(stats.wilcoxon(nonzero, alternative="greater").pvalue) if len(nonzero) else math.nan
    sign_p = float(stats.binomtest(wins, len(nonzero), alternative="greater").pvalue) if len(nonzero) else math.nan
    return {"t": t_p, "wilcoxon": wilcoxon_p, "sign": sign_p, "wins": wins, "n": len(nonzero)}


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and counts as not rejected)."""
    order = sorted(range(len(p_values)), key=lambda i: (math.isnan(p_values[i]), p_values[i]))
    adjusted, running = [math.nan] * len(p_values), 0.0
    for rank, i in enumerate(order):
        if math.isnan(p_values[i]):
            break
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def laptop_verdict(runs: pd.DataFrame, studies: dict[str, str], gate: float, margin_pp: float) -> pd.DataFrame:
    """The gates and the three PUGD-vs-SAM claims as rows of `COLUMNS`; `studies` maps "noise" and "clean" to
    study names, `runs` is aggregate's tidy runs frame."""
    noise = studies["noise"]
    rows = []
    fitted = _by_seed(runs, noise, "fit_flipped").get("sgd", pd.Series(dtype=float)).dropna()
    memorised = len(fitted) > 0 and fitted.mean() >= gate
    rows.append(
        _row(
            check=f"gate: SGD memorises the flipped labels (mean ≥ {100 * gate:.0f} %)",
            study=noise,
            metric="fit_flipped",
            comparison="sgd",
            n=len(fitted),
            value=f"{100 * fitted.mean():.1f} %" if len(fitted) else "n/a",
            ci95=f"range {100 * fitted.min():.1f}–{100 * fitted.max():.1f} %" if len(fitted) else "n/a",
            test="mean",
            verdict=PASSED if memorised else FAILED,
        )
    )
    sam, sgd = _pair(_by_seed(runs, noise, "pool_acc"), "sam", "sgd")
    control = paired_difference(sam, sgd, min_seeds=2) if len(sam) else None
    controlled = control is not None and control["ci95_low"] > 0
    rows.append(
        _row(
            check="positive control: SAM beats SGD under label noise (95 % CI above 0)",
            study=noise,
            metric="pool_acc",
            comparison="sam − sgd",
            n=len(sam),
            value=_pp(control["mean_diff"]) if control else "n/a",
            ci95=_ci(control["ci95_low"], control["ci95_high"]) if control else "n/a",
            test="two-sided t CI",
            verdict=PASSED if controlled else FAILED,
        )
    )
    tests, pairs = [], []
    for claim in CLAIMS:
        pugd, ref = _pair(_by_seed(runs, studies[claim.study], claim.metric), "pugd", "sam")
        shift = margin_pp / 100 if claim.noninferiority else 0.0
        pairs.append((pugd, ref))
        tests.append(one_sided(pugd - ref, shift) if len(pugd) else None)
    adjusted = holm([t["t"] if t else math.nan for t in tests])
    for claim, (pugd, ref), test, p_holm in zip(CLAIMS, pairs, tests, adjusted):
        diff = paired_difference(pugd, ref, min_seeds=2) if len(pugd) else None
        h1 = f"PUGD − SAM > −{margin_pp:g} pp" if claim.noninferiority else "PUGD − SAM > 0"
        if not (memorised and controlled):
            verdict = UNINFORMATIVE
        else:
            verdict = SUPPORTED if math.isfinite(p_holm) and p_holm < ALPHA else NOT_SUPPORTED
        rows.append(
            _row(
                check=claim.name,
                study=studies[claim.study],
                metric=claim.metric,
                comparison="pugd − sam",
                n=len(pugd),
                value=_pp(diff["mean_diff"]) if diff else "n/a",
                ci95=_ci(diff["ci95_low"], diff["ci95_high"]) if diff else "n/a",
                test=f"one-sided t, H1: {h1}",
                verdict=verdict,
                p=f"{test['t']:.3g}" if test else "n/a",
                p_holm=f"{p_holm:.3g}" if math.isfinite(p_holm) else "n/a",
                wilcoxon_p=f"{test['wilcoxon']:.3g}" if test else "n/a",
                sign=f"{test['wins']}/{test['n']} (p {test['sign']:.3g})" if test else "n/a",
            )
        )
    return pd.DataFrame(rows, columns=COLUMNS)


# each verdict column the paper shows, with its header there
PAPER_COLUMNS = {
    "check": "claim or gate",
    "n": "n",
    "value": "difference",
    "ci95": "95 % CI",
    "p_holm": "Holm p",
    "verdict": "verdict",
}


def verdict_json(verdict: pd.DataFrame) -> str:
    """The verdict as the JSON table the Typst paper reads (no rows below the laptop scale)."""
    caption = "Laptop-scale verdict: gates, then PUGD − SAM on paired seeds (one-sided t-tests, Holm-corrected)"
    frame = verdict[list(PAPER_COLUMNS)].rename(columns=PAPER_COLUMNS)
    rows = [[str(v) for v in row] for row in frame.to_numpy()]
    return table_json(caption, list(PAPER_COLUMNS.values()), rows, note="no laptop-scale runs in these results")


def verdict_markdown(verdict: pd.DataFrame, margin_pp: float) -> list[str]:
    """The laptop-scale section of results/claims.md."""
    gates_failed = (verdict["verdict"] == FAILED).any()
    headline = (
        "The gates failed: at this scale the claims are **uninformative**."
        if gates_failed
        else "Both gates passed, so this scale can show the effects under test."
    )
    return [
        "## Laptop-scale verdict (PUGD vs SAM on paired seeds)",
        "",
        f"{headline} Verdicts hold **at laptop scale** only. Each claim is a one-sided paired t-test on the seeds "
        f"(non-inferiority margin {margin_pp:g} pp for clean accuracy), Holm-corrected over the three claims; "
        "Wilcoxon and sign tests (exact, one-sided) check the direction. `pool_acc` is the final epoch's accuracy "
        "on the held-out pool (test set + the training images no run saw). " + CANNOT_DECIDE,
        "",
        *markdown.table(["#", *COLUMNS], ([i, *row] for i, row in enumerate(verdict.itertuples(index=False), 1))),
        "",
    ]


def headline(verdict: pd.DataFrame) -> list[str]:
    """README's verdict table: each gate and claim with its n, difference, CI, Holm p and verdict."""
    header = ["check", "n", "value", "95 % CI", "Holm p", "verdict at laptop scale"]
    rows = [[r.check, r.n, r.value, r.ci95, r.p_holm or "—", r.verdict] for r in verdict.fillna("").itertuples()]
    return markdown.table(header, rows)
