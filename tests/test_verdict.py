"""The laptop-scale verdict: gates, one-sided paired tests, Holm's correction, on hand-made run tables."""

import math

import pandas as pd
import pytest
from scipy import stats

from unitgrad.report import verdict

STUDIES = {"noise": "laptop_noise", "clean": "laptop_clean"}


def runs(pool_noise, pool_clean, mca, fit_sgd):
    """aggregate's tidy runs frame: {optimizer: [value per seed]} for each metric."""
    rows = []
    for study, metric, table in [
        ("laptop_noise", "pool_acc", pool_noise),
        ("laptop_clean", "pool_acc", pool_clean),
        ("laptop_clean", "mca", mca),
        ("laptop_noise", "fit_flipped", {"sgd": fit_sgd}),
    ]:
        for optimizer, values in table.items():
            rows += [
                {"study": study, "optimizer": optimizer, "seed": seed, "metric": metric, "value": value}
                for seed, value in enumerate(values)
            ]
    return pd.DataFrame(rows, columns=["study", "optimizer", "seed", "metric", "value"])


NOISE = {"sgd": [0.30, 0.31, 0.29, 0.30], "sam": [0.40, 0.41, 0.40, 0.42], "pugd": [0.45, 0.47, 0.44, 0.46]}
CLEAN = {"sam": [0.50, 0.51, 0.52, 0.50, 0.51], "pugd": [0.498, 0.508, 0.521, 0.499, 0.509]}
MCA = {"sam": [0.40, 0.41, 0.42, 0.40, 0.41], "pugd": [0.39, 0.40, 0.43, 0.40, 0.40]}


def test_holm_multiplies_the_ordered_p_values_and_keeps_them_monotone():
    assert verdict.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert verdict.holm([0.5, math.nan, 0.01])[1] != verdict.holm([0.5, math.nan, 0.01])[1]  # NaN stays NaN
    assert verdict.holm([0.5, math.nan, 0.01])[::2] == pytest.approx([1.0, 0.03])


def test_one_sided_tests_shift_by_the_margin():
    diff = [0.001, -0.002, 0.003, 0.0, -0.001]
    got = verdict.one_sided(pd.Series(diff).to_numpy(), 0.005)
    assert got["t"] == pytest.approx(stats.ttest_1samp([d + 0.005 for d in diff], 0, alternative="greater").pvalue)
    assert (got["wins"], got["n"]) == (5, 5) and got["sign"] == pytest.approx(1 / 32)
    assert got["wilcoxon"] == pytest.approx(1 / 32)


def test_both_gates_pass_and_each_claim_gets_its_holm_verdict():
    table = verdict.laptop_verdict(runs(NOISE, CLEAN, MCA, [0.6, 0.7, 0.65, 0.55]), STUDIES, gate=0.5, margin_pp=0.5)
    assert table["verdict"].tolist()[:2] == [verdict.PASSED, verdict.PASSED]
    noise, clean, mca = table.iloc[2:].to_dict("records")
    assert noise["value"] == "+4.75 pp" and noise["verdict"] == verdict.SUPPORTED
    assert clean["value"] == "-0.10 pp" and clean["verdict"] == verdict.SUPPORTED  # within the 0.5 pp margin
    assert mca["verdict"] == verdict.NOT_SUPPORTED
    raw = [float(r["p"]) for r in (noise, clean, mca)]
    assert [float(r["p_holm"]) for r in (noise, clean, mca)] == pytest.approx(verdict.holm(raw), rel=1e-2)
    assert noise["sign"].startswith("4/4")


def test_a_failed_gate_makes_every_claim_uninformative():
    few_fits = runs(NOISE, CLEAN, MCA, [0.3, 0.45, 0.4, 0.5])  # SGD memorised under half of the flipped labels
    table = verdict.laptop_verdict(few_fits, STUDIES, gate=0.5, margin_pp=0.5)
    assert table["verdict"].tolist() == [verdict.FAILED, verdict.PASSED] + [verdict.UNINFORMATIVE] * 3
    no_control = dict(NOISE, sam=NOISE["sgd"])  # SAM no better than SGD under noise
    table = verdict.laptop_verdict(runs(no_control, CLEAN, MCA, [0.7] * 4), STUDIES, gate=0.5, margin_pp=0.5)
    assert table["verdict"].tolist() == [verdict.PASSED, verdict.FAILED] + [verdict.UNINFORMATIVE] * 3


def test_missing_runs_fail_the_gates_instead_of_passing_them():
    table = verdict.laptop_verdict(runs({}, {}, {}, []), STUDIES, gate=0.5, margin_pp=0.5)
    assert table["verdict"].tolist() == [verdict.FAILED, verdict.FAILED] + [verdict.UNINFORMATIVE] * 3
    assert (table["n"] == 0).all()
