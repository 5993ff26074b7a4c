"""The claims check: every published claim, what this artifact reproduced under which protocol, and a verdict.

A published number is judged only by runs of its study whose recorded protocol (results/runs.csv)
matches the source's field by field, with enough seeds; every mismatch is listed otherwise. A
directional claim (PUGD vs SAM) is judged on paired seeds at its study's full protocol. Anything
else shows what was measured, with its CI, and passes or fails nothing.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from unitgrad import markdown
from unitgrad.report import style
from unitgrad.report.protocols import GROUP_COLUMNS, merged_mismatches, protocol_mismatches, run_protocols, text
from unitgrad.report.references import (
    DIRECTIONAL,
    FULL_TRAIN_SIZE,
    METRIC_LABELS,
    PAPER_EPOCHS,
    DirectionalClaim,
    PublishedNumber,
)
from unitgrad.report.tables import RAGGED, frame_json, frame_latex

SUPPORTED, NOT_SUPPORTED, NOT_COMPARABLE = "supported", "not supported", "not comparable"
NOT_RUN, CANNOT_RUN = "not run here", "cannot be run here"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, NOT_COMPARABLE, NOT_RUN, CANNOT_RUN)
DIRECTIONAL_PUBLISHED = "PUGD better than SAM"
COLUMNS = ["claim", "source", "study", "metric", "published", "reproduced", "scale", "verdict", "reason", "mismatches"]
# Settings two optimizers of a paired comparison must share (ρ, m and the ASAM rule are per method).
SHARED_FIELDS = [
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "label_smoothing",
    "augmentation",
    "train_size",
    "noise_kind",
]
NONE = "none"


def comparability_text(min_seeds: int, tolerance_pp: float) -> str:
    return (
        "Each published number names its *study*: the runs that follow its source's protocol. It is compared "
        "only with runs of that study on the same dataset, label-noise rate and optimizer whose recorded "
        "protocol (model, epochs, batch, LR, WD, ρ, m, label smoothing, augmentation, BN rule, ASAM rule, "
        f"training-set size, noise kind) matches the source's field by field, with at least {min_seeds} seeds, "
        "and on the metric the source reported (final or best epoch; best epoch is optimistic). It is "
        f"*supported* when the published value lies within the reproduced mean ± max(95 % CI, {tolerance_pp:g} "
        "percentage points), otherwise *not supported*. Any mismatch makes it *not comparable*, with every "
        "mismatch listed; *not run here* names the runs that are missing. Directional claims (PUGD vs SAM) "
        f"compare two optimizers on paired seeds of their study: a verdict needs ≥ {PAPER_EPOCHS} epochs, the "
        f"full training set, the study's settings shared by both optimizers and at least {min_seeds} paired "
        "seeds; *supported* when the 95 % CI of PUGD − SAM lies above 0. Their CI is shown in every case."
    )


def _pp(fraction: float) -> float:
    return 100 * fraction


def _noise_is(frame: pd.DataFrame, noise: float) -> pd.Series:
    return (frame["noise"] - noise).abs() < 1e-9


def _closest_group(
    protocols: pd.DataFrame, ref: PublishedNumber, optimizer: str, expected: dict[str, Any]
) -> tuple[pd.Series | None, list[str]]:
    """The study's run group for this row (the source's model if run, else the fewest mismatches) and its mismatches."""
    groups = protocols[
        (protocols["study"] == ref.study)
        & (protocols["dataset"] == ref.dataset)
        & (protocols["optimizer"] == optimizer)
        & _noise_is(protocols, ref.noise)
    ]
    if groups.empty:
        return None, []
    scored = [
        (protocol_mismatches(g, expected, ref.note), g["model"] != expected.get("model"), g["model"], g)
        for _, g in groups.iterrows()
    ]
    mismatches, _, _, group = min(scored, key=lambda s: (s[1], len(s[0]), s[2]))
    return group, mismatches


def _mean_ci(mean: float, ci: float, n: int) -> str:
    ci_text = f" ± {_pp(ci):.2f}" if math.isfinite(ci) else " ± n/a"
    return f"{_pp(mean):.2f}{ci_text} % (n={n})"


def _scale_text(scale: str, model: str, epochs: Any, train_size: Any, n: int) -> str:
    return f"{scale}: {model}, {text(epochs)} ep, {text(train_size)} train imgs, {n} seed{'s' if n != 1 else ''}"


def _summary_of(summary: pd.DataFrame, group: pd.Series, metric: str) -> pd.Series | None:
    match = summary[
        (summary["metric"] == metric)
        & _noise_is(summary, group["noise"])
        & (summary[GROUP_COLUMNS[:4]] == group[GROUP_COLUMNS[:4]].to_numpy()).all(axis=1)
    ]
    return None if match.empty else match.iloc[0]


def _published_row(
    ref: PublishedNumber,
    protocols: pd.DataFrame,
    summary: pd.DataFrame,
    scale: str,
    min_seeds: int,
    tolerance_pp: float,
) -> dict[str, str]:
    published = f"{ref.value:.2f}" + (f" ± {ref.ci}" if ref.ci is not None else "") + " %"
    row = {
        "claim": ref.claim,
        "source": ref.source,
        "study": ref.study or "—",
        "metric": ref.metric,
        "published": published,
        "reproduced": "—",
        "scale": "—",
        "mismatches": "—",
    }
    if ref.study is None:
        return {**row, "verdict": CANNOT_RUN, "reason": ref.note}
    found, missing, per_candidate = [], [], {}
    for optimizer, expected in ref.protocols.items():
        group, mismatches = _closest_group(protocols, ref, optimizer, dict(expected))
        if group is None:
            missing.append(optimizer)
            continue
        got = _summary_of(summary, group, ref.metric)
        if got is None:
            mismatches.append(f"{ref.metric} not recorded")
        elif got["n"] < min_seeds:
            mismatches.append(f"seeds {int(got['n'])} < {min_seeds}")
        per_candidate[optimizer] = mismatches
        found.append((optimizer, group, got))
    where = f"{style.dataset_label(ref.dataset)}{f', noise {ref.noise:g}' if ref.noise else ''}"
    if not found:
        return {
            **row,
            "verdict": NOT_RUN,
            "reason": f"not run here: study {ref.study} has no {' or '.join(missing)} runs on {where}",
        }
    mismatches = merged_mismatches(per_candidate) + [f"{o} not run" for o in missing]
    scored = [(o, g, s) for o, g, s in found if s is not None]
    if not scored:
        return {
            **row,
            "verdict": NOT_COMPARABLE,
            "mismatches": "; ".join(mismatches),
            "reason": "protocol differs: " + "; ".join(mismatches),
        }
    optimizer, group, got = max(scored, key=lambda c: c[2]["mean"])
    n = int(got["n"])
    row["reproduced"] = _mean_ci(got["mean"], got["ci95"], n) + (f", {optimizer}" if len(ref.protocols) > 1 else "")
    row["scale"] = _scale_text(scale, group["model"], group["epochs"], group["train_size"], n)
    row["mismatches"] = "; ".join(mismatches) or NONE
    chosen = ""
    if len(ref.protocols) > 1:
        means = ", ".join(f"{o} {_pp(s['mean']):.2f}" for o, _, s in scored)
        chosen = f"max({', '.join(ref.protocols)}) = {optimizer} ({means}), as the source did"
    if mismatches:
        reason = "protocol differs: " + "; ".join(mismatches)
        return {**row, "verdict": NOT_COMPARABLE, "reason": reason + (f"; {chosen}" if chosen else "")}
    tolerance = max(_pp(got["ci95"]) if math.isfinite(got["ci95"]) else 0.0, tolerance_pp)
    gap = _pp(got["mean"]) - ref.value
    reason = f"reproduced − published = {gap:+.2f} pp (tolerance ± {tolerance:.2f} pp)"
    optimistic = "best-epoch accuracy, as the source reported it (optimistic)" if ref.metric == "best_acc" else ""
    return {
        **row,
        "verdict": SUPPORTED if abs(gap) <= tolerance else NOT_SUPPORTED,
        "reason": "; ".join(r for r in (reason, chosen, optimistic, ref.note) if r),
    }


def _directional_mismatches(
    claim: DirectionalClaim, pair: pd.Series, protocols: pd.DataFrame, min_seeds: int
) -> list[str]:
    """Why a paired comparison is not at its study's full protocol (empty when it is)."""
    full = {**claim.protocol, "train_size": FULL_TRAIN_SIZE.get(pair["dataset"], math.inf)}
    reference = next(
        (dict(p) for noise, p in claim.reference_protocol.items() if abs(noise - pair["noise"]) < 1e-9), {}
    )
    recorded, per_optimizer = {}, {}
    for optimizer, expected in ((claim.optimizer, full), (claim.reference, {**full, **reference})):
        group = protocols[
            (protocols[GROUP_COLUMNS[:3]] == [claim.study, pair["dataset"], pair["model"]]).all(axis=1)
            & (protocols["optimizer"] == optimizer)
            & _noise_is(protocols, pair["noise"])
        ]
        if group.empty:
            per_optimizer[optimizer] = ["protocol not recorded"]
            continue
        recorded[optimizer] = got = group.iloc[0]
        epochs = got["epochs"]
        short = str(epochs).startswith("mixed: ") or not float(epochs) >= PAPER_EPOCHS  # NaN fails too
        per_optimizer[optimizer] = ([f"epochs {text(epochs)} < {PAPER_EPOCHS}"] if short else []) + protocol_mismatches(
            got, expected
        )
    out = merged_mismatches(per_optimizer)
    if len(recorded) == 2:
        a, b = recorded.values()
        out += [
            f"{name} differs: {claim.optimizer} {text(a[name])}, {claim.reference} {text(b[name])}"
            for name in SHARED_FIELDS
            if text(a[name]) != text(b[name])
        ]
    if pair["n"] < min_seeds:
        out.append(f"paired seeds {int(pair['n'])} < {min_seeds}")
    return out


def _directional_rows(
    claim: DirectionalClaim, paired: pd.DataFrame, protocols: pd.DataFrame, scale: str, min_seeds: int
) -> list[dict[str, str]]:
    base = {
        "claim": claim.claim,
        "source": claim.source,
        "study": claim.study,
        "metric": claim.metric,
        "published": DIRECTIONAL_PUBLISHED,
    }
    rows = paired[
        (paired["study"] == claim.study)
        & (paired["metric"] == claim.metric)
        & (paired["optimizer"] == claim.optimizer)
        & (paired["reference"] == claim.reference)
    ]
    rows = rows[rows["noise"] > 0] if claim.noisy else rows[rows["noise"] == 0]
    if rows.empty:
        what = "label-noise" if claim.noisy else ("corruption-evaluated" if claim.metric == "mca" else "clean")
        return [
            {
                **base,
                "reproduced": "—",
                "scale": "—",
                "verdict": NOT_RUN,
                "mismatches": "—",
                "reason": f"not run here: study {claim.study} has no paired {claim.optimizer} and "
                f"{claim.reference} {what} runs",
            }
        ]
    out = []
    for _, pair in rows.sort_values(["dataset", "model", "noise"]).iterrows():
        where = style.dataset_label(pair["dataset"])
        if claim.noisy:
            where += f", {round(100 * pair['noise'])} % noise"
        ci = (
            f"[{_pp(pair['ci95_low']):+.2f}, {_pp(pair['ci95_high']):+.2f}] pp"
            if math.isfinite(pair["ci95_low"])
            else "[n/a] (one seed)"
        )
        difference = f"{style.label(claim.optimizer)} − {style.label(claim.reference)}"
        group = protocols[
            (protocols[GROUP_COLUMNS[:4]] == [claim.study, pair["dataset"], pair["model"], claim.optimizer]).all(axis=1)
        ]
        epochs, size = (group.iloc[0]["epochs"], group.iloc[0]["train_size"]) if len(group) else (None, None)
        mismatches = _directional_mismatches(claim, pair, protocols, min_seeds)
        p_text = f" (paired t-test p = {pair['p_value']:.3g})" if math.isfinite(pair["p_value"]) else ""
        if mismatches:
            verdict, reason = NOT_COMPARABLE, "protocol differs: " + "; ".join(mismatches) + "; CI for information"
        elif pair["ci95_low"] > 0:
            verdict, reason = SUPPORTED, f"the CI of {difference} lies above 0{p_text}"
        elif pair["ci95_high"] < 0:
            verdict, reason = NOT_SUPPORTED, f"{style.label(claim.optimizer)} is worse: the CI lies below 0{p_text}"
        else:
            verdict, reason = NOT_SUPPORTED, f"no significant difference: the CI includes 0{p_text}"
        out.append(
            {
                **base,
                "reproduced": f"{where}: {difference} = {_pp(pair['mean_diff']):+.2f} pp, 95 % CI {ci}",
                "scale": _scale_text(scale, pair["model"], epochs, size, int(pair["n"])),
                "verdict": verdict,
                "reason": reason,
                "mismatches": "; ".join(mismatches) or NONE,
            }
        )
    return out


def check_claims(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    paired: pd.DataFrame,
    published: list[PublishedNumber],
    scale: str,
    min_seeds: int,
    tolerance_pp: float,
) -> pd.DataFrame:
    """One row per claim (directional claims: one per dataset/model/noise rate run), columns `COLUMNS`.

    Frames from an aggregate that lacks `study` or a protocol column read as "not recorded" there.
    """
    protocols = run_protocols(runs)
    summary = summary.reindex(columns=list(dict.fromkeys(["study", *summary.columns])))
    paired = paired.reindex(columns=list(dict.fromkeys(["study", *paired.columns])))
    rows = []
    for claim in DIRECTIONAL:
        rows += _directional_rows(claim, paired, protocols, scale, min_seeds)
    rows += [_published_row(ref, protocols, summary, scale, min_seeds, tolerance_pp) for ref in published]
    return pd.DataFrame(rows, columns=COLUMNS)


MARKDOWN_COLUMNS = ["claim", "source", "study", "metric", "published", "reproduced", "scale", "verdict", "reason"]


def claims_markdown(claims: pd.DataFrame, scale: str, min_seeds: int, tolerance_pp: float) -> str:
    """results/claims.md: the rules, the verdict counts and every row (the reason lists its mismatches)."""
    counts = claims["verdict"].value_counts()
    metrics = "; ".join(f"`{m}` = {label}" for m, label in METRIC_LABELS.items())
    lines = [
        "# Claims check",
        "",
        (
            f"Scale run: **{scale}** (params.yaml `scale`). Reproduced values are mean ± 95 % t-based CI across "
            f"seeds; directional claims show the paired difference. Metrics: {metrics}."
        ),
        "",
        comparability_text(min_seeds, tolerance_pp),
        "",
        "Verdicts: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS) + ".",
        "",
        *markdown.table(
            ["#", *MARKDOWN_COLUMNS],
            ([i, *row] for i, row in enumerate(claims[MARKDOWN_COLUMNS].itertuples(index=False), 1)),
        ),
    ]
    return "\n".join(lines) + "\n"


def condensed(claims: pd.DataFrame) -> pd.DataFrame:
    """The claims for the paper: directional and reproduced rows in full, the rest one row per source and study.

    The full list is results/claims.md; a page of identical "not run here" rows would hide the rows
    that carry information.
    """
    unreproduced = (claims["reproduced"] == "—") & (claims["published"] != DIRECTIONAL_PUBLISHED)
    rows = [claims[~unreproduced]]
    for (source, study, verdict), group in claims[unreproduced].groupby(["source", "study", "verdict"], sort=False):
        reasons = group["reason"].value_counts()
        if len(reasons) > 2:  # many distinct "not run here: …" lines: their common head says enough
            reasons = group["reason"].str.split(":", n=1).str[0].value_counts()
        single = len(group) == 1
        rows.append(
            pd.DataFrame(
                [
                    {
                        "claim": group["claim"].iloc[0] if single else f"{len(group)} published accuracies",
                        "source": source,
                        "study": study,
                        "metric": group["metric"].iloc[0],
                        "published": group["published"].iloc[0] if single else "see results/claims.md",
                        "reproduced": "—",
                        "scale": "—",
                        "verdict": verdict,
                        "reason": "; ".join(f"{reason} ({count}×)" for reason, count in reasons.items()),
                        "mismatches": "see results/claims.md",
                    }
                ]
            )
        )
    return pd.concat(rows, ignore_index=True)[COLUMNS]


PAPER_CAPTION = "Claims check: published claims against this reproduction (full list: results/claims.md)"


def _paper_frame(claims: pd.DataFrame) -> pd.DataFrame:
    """The condensed claims with verdict and reason in one column (the scale is in the paper's setup)."""
    table = condensed(claims)
    return pd.DataFrame(
        {
            "claim": table["claim"],
            "source (study)": table["source"] + " (" + table["study"] + ", " + table["metric"] + ")",
            "published": table["published"],
            "reproduced": table["reproduced"],
            "verdict": table["verdict"] + ": " + table["reason"],
        }
    )


def claims_latex(claims: pd.DataFrame) -> str:
    """The condensed claims as a LaTeX longtable for authors of a LaTeX paper."""
    return (
        "{\\footnotesize\n"
        + frame_latex(
            _paper_frame(claims),
            PAPER_CAPTION,
            "tab:claims",
            long=True,
            column_format="".join(RAGGED.format(w) for w in ("3.0cm", "2.7cm", "2.0cm", "3.0cm", "3.7cm")),
        )
        + "}\n"
    )


def claims_json(claims: pd.DataFrame) -> str:
    """The condensed claims as the JSON table the Typst paper reads."""
    return frame_json(_paper_frame(claims), PAPER_CAPTION)
