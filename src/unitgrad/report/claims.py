"""The claims check: every published claim, what this artifact reproduced, and an honest verdict.

Verdicts are "supported", "not supported" or "not comparable at this scale". Every claim is judged
only at paper scale (full training set, ≥ 200 epochs, enough seeds; see `comparability_text`): a
published number also needs the same architecture, a directional claim (PUGD vs SAM) any architecture
but paired seeds. Below that scale the row still shows what was measured, with its CI, and passes or
fails nothing: a few epochs on a subset measure the pipeline, not the optimizers at convergence.
"""

from __future__ import annotations

import math

import pandas as pd

from unitgrad import markdown
from unitgrad.report import style
from unitgrad.report.references import (
    DIRECTIONAL,
    FULL_TRAIN_SIZE,
    PAPER_EPOCHS,
    DirectionalClaim,
    PublishedNumber,
)
from unitgrad.report.tables import RAGGED, frame_latex

SUPPORTED, NOT_SUPPORTED, NOT_COMPARABLE = "supported", "not supported", "not comparable at this scale"
DIRECTIONAL_PUBLISHED = "PUGD better than SAM"
COLUMNS = ["claim", "source", "published", "reproduced", "scale", "verdict", "reason"]


def comparability_text(min_seeds: int, tolerance_pp: float) -> str:
    return (
        "A reproduced accuracy is *paper-scale comparable* to a published one only if it was run on the same "
        "dataset, with the artifact's equivalent of the same architecture, at the same label-noise rate, for at "
        f"least the published number of epochs ({PAPER_EPOCHS}), on the full training set (50 000 CIFAR "
        f"images), with at least {min_seeds} seeds. It is *supported* when the published value lies within the "
        f"reproduced mean ± max(95 % CI, {tolerance_pp:g} percentage points), otherwise *not supported*. "
        "Anything less is *not comparable at this scale* and passes or fails nothing. "
        "Directional claims (PUGD vs SAM) compare two optimizers on the same seeds and configuration of any "
        f"architecture, under the same scale conditions (≥ {PAPER_EPOCHS} epochs, full training set, at least "
        f"{min_seeds} paired seeds): *supported* when the 95 % CI of the paired difference PUGD − SAM lies "
        "above 0 (the paper says 'better'), *not supported* otherwise. Their CI is shown at every scale."
    )


def _pp(fraction: float) -> float:
    return 100 * fraction


def _mean_ci(mean: float, ci: float, n: int) -> str:
    ci_text = f" ± {_pp(ci):.2f}" if math.isfinite(ci) else " ± n/a"
    return f"{_pp(mean):.2f}{ci_text} % (n={n})"


def _scale_text(scale: str, model: str, epochs: float, train_size: float, n: int) -> str:
    epochs_text = f"{epochs:g} ep" if math.isfinite(epochs) else "? ep"
    size_text = f"{train_size:g} train imgs" if math.isfinite(train_size) else "? train imgs"
    return f"{scale}: {model}, {epochs_text}, {size_text}, {n} seed{'s' if n != 1 else ''}"


def _shortfalls(dataset: str, epochs: float, train_size: float, n: int, min_epochs: int, min_seeds: int,
                what: str = "seeds") -> list[str]:
    """Why a run is below paper scale (empty when it is not): epochs, training-set size, seeds."""
    shortfalls = []
    if not epochs >= min_epochs:  # NaN (unknown) fails too
        shortfalls.append(f"{epochs:g} < {min_epochs} epochs")
    if not train_size >= FULL_TRAIN_SIZE.get(dataset, math.inf):
        shortfalls.append(f"training subset of {train_size:g} images")
    if n < min_seeds:
        shortfalls.append(f"too few {what} ({n} < {min_seeds})")
    return shortfalls


def _published_row(ref: PublishedNumber, summary: pd.DataFrame, scale: str, min_seeds: int,
                   tolerance_pp: float) -> dict[str, str]:
    published = f"{ref.value:.2f}" + (f" ± {ref.ci}" if ref.ci is not None else "") + " %"
    row = {"claim": ref.claim, "source": ref.source, "published": published, "reproduced": "—", "scale": "—"}
    if ref.model is None:
        return {**row, "verdict": NOT_COMPARABLE, "reason": ref.note}
    match = summary[(summary["metric"] == "clean_acc") & (summary["dataset"] == ref.dataset)
                    & (summary["model"] == ref.model) & (summary["optimizer"] == ref.optimizer)
                    & ((summary["noise"] - ref.noise).abs() < 1e-9)]
    if match.empty:
        return {**row, "verdict": NOT_COMPARABLE,
                "reason": f"not run here ({ref.model}, {style.dataset_label(ref.dataset)}, {ref.optimizer}"
                          f"{f', noise {ref.noise:g}' if ref.noise else ''} is not in the grid)"}
    got = match.iloc[0]
    n = int(got["n"])
    row["reproduced"] = _mean_ci(got["mean"], got["ci95"], n)
    row["scale"] = _scale_text(scale, ref.model, got["epochs"], got["train_size"], n)
    shortfalls = _shortfalls(ref.dataset, got["epochs"], got["train_size"], n, ref.epochs, min_seeds)
    if shortfalls:
        return {**row, "verdict": NOT_COMPARABLE, "reason": "; ".join(shortfalls)}
    tolerance = max(_pp(got["ci95"]), tolerance_pp)
    gap = _pp(got["mean"]) - ref.value
    verdict = SUPPORTED if abs(gap) <= tolerance else NOT_SUPPORTED
    return {**row, "verdict": verdict,
            "reason": f"reproduced − published = {gap:+.2f} pp (tolerance ± {tolerance:.2f} pp)"
                      + (f"; {ref.note}" if ref.note else "")}


def _directional_rows(claim: DirectionalClaim, paired: pd.DataFrame, summary: pd.DataFrame,
                      scale: str, min_seeds: int) -> list[dict[str, str]]:
    base = {"claim": claim.claim, "source": claim.source, "published": DIRECTIONAL_PUBLISHED}
    rows = paired[(paired["metric"] == claim.metric) & (paired["optimizer"] == claim.optimizer)
                  & (paired["reference"] == claim.reference)]
    rows = rows[rows["noise"] > 0] if claim.noisy else rows[rows["noise"] == 0]
    if rows.empty:
        what = "label-noise" if claim.noisy else ("corruption-evaluated" if claim.metric == "mca" else "clean")
        return [{**base, "reproduced": "—", "scale": "—", "verdict": NOT_COMPARABLE,
                 "reason": f"not run here: no paired {claim.optimizer.upper()} and {claim.reference.upper()} "
                           f"{what} runs"}]
    out = []
    for _, pair in rows.sort_values(["dataset", "model", "noise"]).iterrows():
        n = int(pair["n"])
        config = summary[(summary["dataset"] == pair["dataset"]) & (summary["model"] == pair["model"])
                         & (summary["optimizer"] == claim.optimizer) & (summary["metric"] == claim.metric)
                         & ((summary["noise"] - pair["noise"]).abs() < 1e-9)].iloc[0]
        where = style.dataset_label(pair["dataset"])
        if claim.noisy:
            where += f", {round(100 * pair['noise'])} % noise"
        ci = (f"[{_pp(pair['ci95_low']):+.2f}, {_pp(pair['ci95_high']):+.2f}] pp"
              if math.isfinite(pair["ci95_low"]) else "[n/a] (one seed)")
        difference = f"{style.label(claim.optimizer)} − {style.label(claim.reference)}"
        reproduced = f"{where}: {difference} = {_pp(pair['mean_diff']):+.2f} pp, 95 % CI {ci}"
        scale_text = _scale_text(scale, pair["model"], config["epochs"], config["train_size"], n)
        shortfalls = _shortfalls(pair["dataset"], config["epochs"], config["train_size"], n, PAPER_EPOCHS,
                                 min_seeds, what="paired seeds")
        if shortfalls:
            verdict, reason = NOT_COMPARABLE, "; ".join(shortfalls) + "; CI shown for information"
        elif pair["ci95_low"] > 0:
            verdict, reason = SUPPORTED, f"the CI of {difference} lies above 0" + _p_text(pair["p_value"])
        elif pair["ci95_high"] < 0:
            verdict, reason = NOT_SUPPORTED, (f"{style.label(claim.optimizer)} is significantly worse: the CI lies "
                                              "below 0" + _p_text(pair["p_value"]))
        else:
            verdict, reason = NOT_SUPPORTED, "no significant difference: the CI includes 0" + _p_text(pair["p_value"])
        out.append({**base, "reproduced": reproduced, "scale": scale_text, "verdict": verdict, "reason": reason})
    return out


def _p_text(p_value: float) -> str:
    return f" (paired t-test p = {p_value:.3g})" if math.isfinite(p_value) else ""


def check_claims(summary: pd.DataFrame, paired: pd.DataFrame, published: list[PublishedNumber],
                 scale: str, min_seeds: int, tolerance_pp: float) -> pd.DataFrame:
    """One row per claim (directional claims: one per dataset/model/noise rate run), with a verdict."""
    rows = []
    for claim in DIRECTIONAL:
        rows += _directional_rows(claim, paired, summary, scale, min_seeds)
    rows += [_published_row(ref, summary, scale, min_seeds, tolerance_pp) for ref in published]
    return pd.DataFrame(rows, columns=COLUMNS)


def claims_markdown(claims: pd.DataFrame, scale: str, min_seeds: int, tolerance_pp: float) -> str:
    counts = claims["verdict"].value_counts()
    lines = [
        "# Claims check",
        "",
        (f"Scale run: **{scale}** (params.yaml `scale`). Reproduced values are clean test accuracy, "
         "mean ± 95 % t-based CI across seeds; directional claims show the paired difference."),
        "",
        comparability_text(min_seeds, tolerance_pp),
        "",
        "Verdicts: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in (SUPPORTED, NOT_SUPPORTED, NOT_COMPARABLE)) + ".",
        "",
        *markdown.table(["#", *COLUMNS], ([i, *row] for i, row in enumerate(claims.itertuples(index=False), 1))),
    ]
    return "\n".join(lines) + "\n"


def condensed(claims: pd.DataFrame) -> pd.DataFrame:
    """The claims for the paper: directional and reproduced rows in full, the rest one row per source.

    The full list is results/claims.md; a page of identical "not run here" rows would hide the rows
    that carry information.
    """
    unreproduced = (claims["reproduced"] == "—") & (claims["published"] != DIRECTIONAL_PUBLISHED)
    rows = [claims[~unreproduced]]
    for source, group in claims[unreproduced].groupby("source", sort=False):
        reasons = group["reason"].str.split(" (", regex=False).str[0].value_counts()
        single = len(group) == 1
        rows.append(pd.DataFrame([{
            "claim": group["claim"].iloc[0] if single else f"{len(group)} published accuracies",
            "source": source,
            "published": group["published"].iloc[0] if single else "see results/claims.md",
            "reproduced": "—", "scale": "—", "verdict": NOT_COMPARABLE,
            "reason": "; ".join(f"{reason} ({count}×)" for reason, count in reasons.items()),
        }]))
    return pd.concat(rows, ignore_index=True)[COLUMNS]


def claims_latex(claims: pd.DataFrame) -> str:
    """The condensed claims as a LaTeX longtable for the paper (the scale is in its setup section)."""
    table = condensed(claims)
    frame = pd.DataFrame({
        "claim": table["claim"],
        "source": table["source"],
        "published": table["published"],
        "reproduced": table["reproduced"],
        "verdict": table["verdict"] + ": " + table["reason"],
    })
    return "{\\footnotesize\n" + frame_latex(
        frame, "Claims check: published claims against this reproduction (full list: results/claims.md)",
        "tab:claims", long=True,
        column_format="".join(RAGGED.format(w) for w in ("3.0cm", "2.7cm", "2.0cm", "3.0cm", "3.7cm"))) + "}\n"
