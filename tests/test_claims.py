"""The claims check by protocol: published rows, their studies and protocols, directional claims, renderings."""

from __future__ import annotations

import pandas as pd
import pytest
from fixtures.params import write_params

from unitgrad.report import aggregate, claims, protocols
from unitgrad.report.cli import main as report_main
from unitgrad.report.cli import write_csv
from unitgrad.report.references import DIRECTIONAL, PUBLISHED, STUDIES, protocols_markdown
from unitgrad.report.stats import describe, paired_difference

# The sources' protocols, written out here independently of references.py (reference-numbers.md).
SAM_T1_WRN_C10 = {
    "epochs": 200,
    "batch_size": 256,
    "lr": 0.1,
    "weight_decay": 5e-4,
    "rho": 0.05,
    "m": 32,
    "label_smoothing": 0.0,
    "augmentation": "crop4+flip",
    "bn_update": "first_pass",
    "asam_rule": "",
    "train_size": 50_000,
    "noise_kind": "",
    "monitor_size": 10_000,
}
ASAM_R20_C10 = {
    "epochs": 200,
    "batch_size": 128,
    "lr": 0.1,
    "weight_decay": 5e-4,
    "rho": 0.5,
    "m": 128,
    "label_smoothing": 0.1,
    "augmentation": "crop4+flip",
    "bn_update": "both_passes",
    "asam_rule": "official",
    "train_size": 50_000,
    "noise_kind": "",
    "monitor_size": 10_000,
}
SAM_T4 = {
    "epochs": 200,
    "batch_size": 128,
    "lr": 0.1,
    "weight_decay": 5e-4,
    "rho": 0.1,
    "m": 128,
    "label_smoothing": 0.0,
    "augmentation": "crop4+flip",
    "bn_update": "first_pass",
    "asam_rule": "",
    "train_size": 50_000,
    "noise_kind": "symmetric",
}
NO_PAIRS = pd.DataFrame(columns=aggregate.PAIRED_COLUMNS)


def _runs(study, model, optimizer, accs, protocol, dataset="cifar10", noise=0.0, best=None, **overrides):
    """Tidy runs.csv rows: one run per accuracy (seed = index), metrics clean_acc and best_acc."""
    rows = []
    for seed, acc in enumerate(accs):
        fields = {**protocol, **{k: (v[seed] if isinstance(v, list) else v) for k, v in overrides.items()}}
        ident = {
            "study": study,
            "dataset": dataset,
            "model": model,
            "optimizer": optimizer,
            "noise": noise,
            "seed": seed,
            **fields,
        }
        rows.append({**ident, "metric": "clean_acc", "value": acc})
        rows.append({**ident, "metric": "best_acc", "value": acc if best is None else best[seed]})
    return rows


def _summary(runs):
    keys = ["study", "dataset", "model", "optimizer", "noise", "metric"]
    return pd.DataFrame(
        [{**dict(zip(keys, key)), **describe(group["value"]), "seeds": ""} for key, group in runs.groupby(keys)]
    )


def _check(rows, published, paired=None, tolerance_pp=0.5, scale="paper"):
    runs = pd.DataFrame(rows)
    return (
        claims.check_claims(
            runs, _summary(runs), NO_PAIRS if paired is None else paired, published, scale, 3, tolerance_pp
        )
        .iloc[len(DIRECTIONAL) :]
        .reset_index(drop=True)
    )


def _ref(study, dataset, label, optimizer, noise=0.0):
    return next(
        r
        for r in PUBLISHED
        if (r.study, r.dataset, r.model_label, r.optimizer, r.noise) == (study, dataset, label, optimizer, noise)
    )


WRN_SAM = _ref("sam_table1", "cifar10", "WRN-28-10", "sam")  # published 97.30 ± 0.1


# --- the published protocols ----------------------------------------------------------------------


def test_published_protocols_are_the_sources():
    assert WRN_SAM.value == pytest.approx(97.3) and WRN_SAM.metric == "clean_acc"
    assert dict(WRN_SAM.protocols["sam"]) == {
        "model": "cifar_wrn28_10",
        "epochs": 200,
        "batch_size": 256,
        "lr": 0.1,
        "weight_decay": 5e-4,
        "augmentation": "crop4+flip",
        "train_size": 50_000,
        "rho": 0.05,
        "m": 32,
    }
    pyramid = _ref("sam_table1", "cifar100", "PyramidNet", "sam").protocols["sam"]
    assert (pyramid["model"], pyramid["lr"], pyramid["rho"]) == (None, 0.05, 0.2)
    assert _ref("sam_table1", "cifar100", "WRN-28-10", "sam").protocols["sam"]["rho"] == 0.1
    assert set(_ref("sam_table1", "cifar10", "WRN-28-10", "sgd").protocols) == {"sgd", "sgd_2x"}
    asam = _ref("asam_table", "cifar100", "ResNet-20", "asam")
    expected = {k: v for k, v in ASAM_R20_C10.items() if k != "noise_kind"}
    assert asam.metric == "best_acc" and dict(asam.protocols["asam"]) == {
        **expected,
        "rho": 1.0,
        "model": "cifar_resnet20",
    }
    assert _ref("asam_table", "cifar10", "ResNet-20", "sam").protocols["sam"]["rho"] == 0.05
    assert "asam_rule" not in _ref("asam_table", "cifar10", "ResNet-20", "sam").protocols["sam"]
    assert "label_smoothing" in _ref("asam_table", "cifar10", "ResNet-20", "sgd").protocols["sgd"]
    rhos = {r.noise: r.protocols["sam"]["rho"] for r in PUBLISHED if r.study == "sam_table4" and r.optimizer == "sam"}
    assert rhos == {0.2: 0.1, 0.4: 0.1, 0.6: 0.1, 0.8: 0.05}
    assert all(r.study in STUDIES or r.study is None for r in PUBLISHED)
    assert {c.study for c in DIRECTIONAL} <= set(STUDIES)


# --- published numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "accs, verdict",
    [
        ([0.972, 0.973, 0.974], claims.SUPPORTED),  # 97.30 published, mean 97.30
        ([0.960, 0.961, 0.962], claims.NOT_SUPPORTED),  # 1.2 pp below, CI 0.25 pp, tolerance 0.5 pp
    ],
)
def test_full_protocol_match_with_three_seeds_passes_or_fails(accs, verdict):
    row = _check(_runs("sam_table1", "cifar_wrn28_10", "sam", accs, SAM_T1_WRN_C10), [WRN_SAM]).iloc[0]
    assert (row["verdict"], row["mismatches"], row["study"], row["metric"]) == (
        verdict,
        "none",
        "sam_table1",
        "clean_acc",
    )
    assert row["reproduced"].startswith(f"{100 * sum(accs) / 3:.2f} ± ") and row["reproduced"].endswith("(n=3)")
    assert "reproduced − published" in row["reason"]


def test_match_tolerance_comes_from_params():
    rows = _runs("sam_table1", "cifar_wrn28_10", "sam", [0.9649, 0.9650, 0.9651], SAM_T1_WRN_C10)  # 0.8 pp below
    assert _check(rows, [WRN_SAM], tolerance_pp=0.5).loc[0, "verdict"] == claims.NOT_SUPPORTED
    assert _check(rows, [WRN_SAM], tolerance_pp=1.0).loc[0, "verdict"] == claims.SUPPORTED


@pytest.mark.parametrize(
    "ref, optimizer, protocol, field, value, expected",
    [
        (WRN_SAM, "sam", SAM_T1_WRN_C10, "m", 128, "m 128 ≠ 32"),
        (WRN_SAM, "sam", SAM_T1_WRN_C10, "batch_size", 128, "batch_size 128 ≠ 256"),
        (
            _ref("asam_table", "cifar10", "ResNet-20", "sgd"),
            "sgd",
            ASAM_R20_C10,
            "label_smoothing",
            0.0,
            "label_smoothing 0 ≠ 0.1",
        ),
        (
            _ref("asam_table", "cifar10", "ResNet-20", "asam"),
            "asam",
            ASAM_R20_C10,
            "asam_rule",
            "paper",
            "asam_rule paper ≠ official",
        ),
        (
            _ref("asam_table", "cifar10", "ResNet-20", "asam"),
            "asam",
            ASAM_R20_C10,
            "rho",
            None,
            "rho not recorded ≠ 0.5",
        ),
    ],
)
def test_one_field_off_is_not_comparable_and_named(ref, optimizer, protocol, field, value, expected):
    accs = [ref.value / 100] * 3  # the number itself: only the protocol can stop it from passing
    row = _check(_runs(ref.study, ref.model, optimizer, accs, {**protocol, field: value}), [ref]).iloc[0]
    assert row["verdict"] == claims.NOT_COMPARABLE
    assert row["mismatches"] == expected and row["reason"] == f"protocol differs: {expected}"


def test_seeds_that_disagree_on_a_field_are_a_mismatch():
    rows = _runs("sam_table1", "cifar_wrn28_10", "sam", [0.973] * 3, SAM_T1_WRN_C10, batch_size=[256, 256, 128])
    row = _check(rows, [WRN_SAM]).iloc[0]
    assert (row["verdict"], row["mismatches"]) == (claims.NOT_COMPARABLE, "batch_size mixed: 128, 256 ≠ 256")


def test_too_few_seeds_and_a_smaller_run_list_every_shortfall():
    rows = _runs("sam_table1", "cifar_resnet8", "sam", [0.973] * 2, SAM_T1_WRN_C10, epochs=5, train_size=2500)
    row = _check(rows, [WRN_SAM], scale="smoke").iloc[0]
    assert row["verdict"] == claims.NOT_COMPARABLE
    assert row["mismatches"] == (
        "model cifar_resnet8 ≠ cifar_wrn28_10; epochs 5 ≠ 200; train_size 2500 ≠ 50000; seeds 2 < 3"
    )
    assert row["scale"] == "smoke: cifar_resnet8, 5 ep, 2500 train imgs, 2 seeds"


def test_other_studies_runs_do_not_count():
    row = _check(_runs("main", "cifar_wrn28_10", "sam", [0.973] * 3, SAM_T1_WRN_C10), [WRN_SAM]).iloc[0]
    assert row["verdict"] == claims.NOT_RUN
    assert row["reason"] == "not run here: study sam_table1 has no sam runs on CIFAR-10"


def test_sgd_row_is_the_better_of_sgd_and_sgd_2x():
    ref = _ref("sam_table1", "cifar10", "WRN-28-10", "sgd")  # published 96.50 ± 0.1
    sgd = _runs("sam_table1", "cifar_wrn28_10", "sgd", [0.955, 0.956, 0.957], {**SAM_T1_WRN_C10, "rho": None})
    sgd_2x = _runs(
        "sam_table1", "cifar_wrn28_10", "sgd_2x", [0.964, 0.965, 0.966], {**SAM_T1_WRN_C10, "rho": None, "epochs": 400}
    )
    row = _check(sgd + sgd_2x, [ref]).iloc[0]
    assert row["verdict"] == claims.SUPPORTED and row["reproduced"].endswith("(n=3), sgd_2x")
    assert "max(sgd, sgd_2x) = sgd_2x (sgd 95.60, sgd_2x 96.50)" in row["reason"]
    only_sgd = _check(sgd, [ref]).iloc[0]
    assert (only_sgd["verdict"], only_sgd["mismatches"]) == (claims.NOT_COMPARABLE, "sgd_2x not run")
    short_2x = _check(sgd + [{**r, "epochs": 200} for r in sgd_2x], [ref]).iloc[0]  # sgd_2x must run 2x epochs
    assert short_2x["mismatches"] == "sgd_2x: epochs 200 ≠ 400"


def test_each_row_uses_its_sources_metric():
    asam_sgd = _ref("asam_table", "cifar10", "ResNet-20", "sgd")  # 93.18, best epoch
    rows = _runs("asam_table", "cifar_resnet20", "sgd", [0.90] * 3, ASAM_R20_C10, best=[0.9317, 0.9318, 0.9319])
    row = _check(rows, [asam_sgd]).iloc[0]
    assert (row["metric"], row["verdict"]) == ("best_acc", claims.SUPPORTED)
    assert row["reproduced"].startswith("93.18 ± ")
    assert row["reason"].endswith("best-epoch accuracy, as the source reported it (optimistic)")
    table4 = _ref("sam_table4", "cifar10", "ResNet-32", "sgd", noise=0.4)  # 68.8, final epoch
    rows = _runs("sam_table4", "cifar_resnet32", "sgd", [0.688] * 3, SAM_T4, noise=0.4, best=[0.80] * 3)
    row = _check(rows, [table4]).iloc[0]
    assert (row["metric"], row["verdict"], row["reproduced"][:5]) == ("clean_acc", claims.SUPPORTED, "68.80")


@pytest.mark.parametrize(
    "noise, rho, mismatches",
    [(0.8, 0.05, "none"), (0.8, 0.1, "rho 0.1 ≠ 0.05"), (0.4, 0.1, "none"), (0.4, 0.05, "rho 0.05 ≠ 0.1")],
)
def test_label_noise_rho_follows_the_noise_rate(noise, rho, mismatches):
    ref = _ref("sam_table4", "cifar10", "ResNet-32", "sam", noise=noise)
    rows = _runs("sam_table4", "cifar_resnet32", "sam", [ref.value / 100] * 3, {**SAM_T4, "rho": rho}, noise=noise)
    assert _check(rows, [ref]).loc[0, "mismatches"] == mismatches


def test_unknown_architecture_never_passes():
    ref = _ref("sam_table1", "cifar10", "PyramidNet", "sam")
    rows = _runs("sam_table1", "cifar_pyramidnet110_a270", "sam", [0.973] * 3, {**SAM_T1_WRN_C10, "lr": 0.05})
    row = _check(rows, [ref]).iloc[0]
    assert row["verdict"] == claims.NOT_COMPARABLE
    assert row["mismatches"] == "model cifar_pyramidnet110_a270: architecture not stated in the paper"


def test_imagenet21k_rows_say_they_cannot_be_run():
    pretrained = [r for r in PUBLISHED if r.study is None]
    assert len(pretrained) == 4
    checked = _check(_runs("main", "cifar_resnet8", "pugd", [0.5] * 3, SAM_T1_WRN_C10), pretrained)
    assert set(checked["verdict"]) == {claims.CANNOT_RUN}
    assert checked["reason"].str.contains("ImageNet-21k pretrained weights").all()
    assert checked["reason"].str.contains("trains every model from scratch").all()


# --- directional claims ---------------------------------------------------------------------------

MAIN = {**SAM_T1_WRN_C10, "batch_size": 128, "m": 128, "rho": 1.0}


def _pairs(runs, optimizer="pugd", reference="sam"):
    rows = []
    keys = ["study", "dataset", "model", "noise", "metric"]
    for key, group in runs[runs["metric"].isin(["clean_acc", "mca"])].groupby(keys):
        by_seed = group.pivot_table(index="seed", columns="optimizer", values="value")
        if {optimizer, reference} <= set(by_seed.columns):
            rows.append(
                {
                    **dict(zip(keys, key)),
                    "optimizer": optimizer,
                    "reference": reference,
                    **paired_difference(by_seed[optimizer], by_seed[reference], 3),
                }
            )
    return pd.DataFrame(rows)


def _directional(rows):
    runs = pd.DataFrame(rows)
    checked = claims.check_claims(runs, _summary(runs), _pairs(runs), [], "paper", 3, 0.5)
    return checked.set_index(checked["claim"].map({c.claim: c.key for c in DIRECTIONAL}))


@pytest.mark.parametrize(
    "pugd, overrides, verdict, mismatches",
    [
        ([0.92, 0.93, 0.94], {}, claims.SUPPORTED, "none"),  # +2 pp on every seed
        ([0.90, 0.92, 0.905], {}, claims.NOT_SUPPORTED, "none"),  # the CI includes 0
        ([0.92, 0.93], {}, claims.NOT_COMPARABLE, "paired seeds 2 < 3"),
        (
            [0.92, 0.93, 0.94],
            {"epochs": 4},
            claims.NOT_COMPARABLE,
            "pugd: epochs 4 < 200; epochs differs: pugd 4, sam 200",
        ),
        (
            [0.92, 0.93, 0.94],
            {"train_size": 2500},
            claims.NOT_COMPARABLE,
            "pugd: train_size 2500 ≠ 50000; train_size differs: pugd 2500, sam 50000",
        ),
    ],
)
def test_directional_claim_needs_its_studys_full_protocol(pugd, overrides, verdict, mismatches):
    rows = _runs("main", "cifar_resnet18", "pugd", pugd, MAIN, **overrides) + _runs(
        "main", "cifar_resnet18", "sam", [0.90, 0.91, 0.92][: len(pugd)], {**MAIN, "rho": 0.05}
    )
    row = _directional(rows).loc["pugd_sam_clean"]
    assert (row["verdict"], row["mismatches"], row["study"]) == (verdict, mismatches, "main")
    assert "95 % CI [" in row["reproduced"] and row["reproduced"].startswith("CIFAR-10: PUGD − SAM = ")
    assert _directional(rows).loc["pugd_sam_noise", "verdict"] == claims.NOT_RUN  # no label-noise pairs


def test_official_setting_claim_checks_the_official_codes_settings():
    official = {**MAIN, "batch_size": 100, "bn_update": "both_passes"}
    good = _runs("pugd_official", "upanets", "pugd", [0.92, 0.93, 0.94], official) + _runs(
        "pugd_official", "upanets", "sam", [0.90, 0.91, 0.92], {**official, "rho": 0.05}
    )
    assert _directional(good).loc["pugd_sam_official", "verdict"] == claims.SUPPORTED
    first_pass = [{**r, "bn_update": "first_pass"} for r in good]
    row = _directional(first_pass).loc["pugd_sam_official"]
    assert row["mismatches"] == "bn_update first_pass ≠ both_passes"  # shared by both optimizers: said once
    assert _directional(good).loc["pugd_sam_clean", "verdict"] == claims.NOT_RUN  # main's claim: not its runs


@pytest.mark.parametrize(
    "sam_rho, verdict, mismatches",
    [
        (0.05, claims.SUPPORTED, "none"),
        (0.1, claims.NOT_COMPARABLE, "sam: rho 0.1 ≠ 0.05"),  # Table 4's SAM used 0.05 at 80 % noise
    ],
)
def test_label_noise_claim_holds_sam_to_table_4s_rho(sam_rho, verdict, mismatches):
    rows = _runs("sam_table4", "cifar_resnet32", "pugd", [0.80, 0.81, 0.82], {**SAM_T4, "rho": 1.0}, noise=0.8) + _runs(
        "sam_table4", "cifar_resnet32", "sam", [0.77, 0.78, 0.79], {**SAM_T4, "rho": sam_rho}, noise=0.8
    )
    row = _directional(rows).loc["pugd_sam_noise"]
    assert (row["verdict"], row["mismatches"]) == (verdict, mismatches)
    assert row["reproduced"].startswith("CIFAR-10, 80 % noise: PUGD − SAM = +3.00 pp")


# --- smoke scale and the renderings ---------------------------------------------------------------

SMOKE = {**MAIN, "epochs": 2, "batch_size": 64, "m": 64, "train_size": 2500}


@pytest.fixture(scope="module")
def smoke():
    """Every study at a tiny size, the way the smoke params.yaml runs them: 2 seeds, 2 epochs, 2500 images."""
    rows = []
    for study, optimizers, noise, extra in [
        ("sam_table1", ["sgd", "sgd_2x", "sam"], 0.0, {"m": 32}),
        ("sam_table4", ["sgd", "sam", "pugd", "asam"], 0.4, {"noise_kind": "symmetric"}),
        ("asam_table", ["sgd", "sam", "asam"], 0.0, {"label_smoothing": 0.1, "asam_rule": "official"}),
        ("pugd_official", ["sgd", "sam", "pugd"], 0.0, {"batch_size": 100, "bn_update": "both_passes"}),
        ("main", ["sgd", "sam", "pugd"], 0.0, {}),
    ]:
        for i, optimizer in enumerate(optimizers):
            rows += _runs(
                study,
                "cifar_resnet8",
                optimizer,
                [0.3 + 0.01 * i, 0.31 + 0.01 * i],
                {**SMOKE, **extra},
                noise=noise,
                epochs=4 if optimizer == "sgd_2x" else 2,
            )
    runs = pd.DataFrame(rows)
    runs = pd.concat([runs, runs[(runs["study"] == "main") & (runs["metric"] == "clean_acc")].assign(metric="mca")])
    return claims.check_claims(runs, _summary(runs), _pairs(runs), PUBLISHED, "smoke", 3, 0.5)


def test_smoke_every_published_row_names_its_study_and_mismatches(smoke):
    published = smoke.iloc[len(DIRECTIONAL) :].reset_index(drop=True)
    assert len(published) == len(PUBLISHED) and set(smoke["verdict"]) <= set(claims.VERDICTS)
    for ref, row in zip(PUBLISHED, published.itertuples()):
        assert row.metric == ref.metric
        if ref.study is None:
            assert row.verdict == claims.CANNOT_RUN
        elif row.verdict == claims.NOT_RUN:  # e.g. CIFAR-100, or noise rates the smoke grid leaves out
            assert row.reason.startswith(f"not run here: study {ref.study} has no ")
        else:
            assert row.study == ref.study and row.verdict == claims.NOT_COMPARABLE
            assert "epochs 2 ≠ 200" in row.mismatches and "train_size 2500 ≠ 50000" in row.mismatches
            assert row.reason.startswith("protocol differs: ") and row.mismatches in row.reason
    counts = published["verdict"].value_counts()
    assert counts[claims.NOT_COMPARABLE] == 4 + 2 + 5 * 3  # Table 1 C-10, Table 4 at 40 %, ASAM C-10 (5 models)
    directional = smoke.iloc[: len(DIRECTIONAL)]
    assert list(directional["verdict"]) == [claims.NOT_COMPARABLE] * 4
    assert directional["mismatches"].str.startswith("epochs 2 < 200; ").all()


def test_markdown_shows_study_metric_and_mismatches(smoke):
    text = claims.claims_markdown(smoke, "smoke", 3, 0.5)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| #")]
    assert len(rows) == len(smoke)
    assert "| sam_table1 | clean_acc |" in text and "| asam_table | best_acc |" in text
    assert "protocol differs: model cifar_resnet8 ≠ cifar_wrn28_10; epochs 2 ≠ 200" in text
    assert "`best_acc` = best epoch (optimistic" in text
    assert f"{(smoke['verdict'] == claims.CANNOT_RUN).sum()} cannot be run here" in text


def test_paper_table_condenses_unrun_rows_and_keeps_the_study(smoke):
    table = claims.condensed(smoke)
    assert list(table.columns) == claims.COLUMNS
    assert len(table) < len(smoke) and "4 published accuracies" in set(table["claim"])  # ImageNet-21k rows
    tex = claims.claims_latex(smoke)
    assert "\\begin{longtable}" in tex and "asam\\_table, best\\_acc" in tex


def test_frames_without_study_or_protocol_columns_read_as_not_recorded():
    runs = pd.DataFrame(_runs("sam_table1", "cifar_wrn28_10", "sam", [0.973] * 3, {})).drop(columns="study")
    summary = _summary(runs.assign(study="x")).drop(columns="study")
    checked = claims.check_claims(runs, summary, NO_PAIRS.drop(columns="study"), [WRN_SAM], "paper", 3, 0.5)
    assert checked.iloc[-1]["verdict"] == claims.NOT_RUN
    recorded = protocols.run_protocols(runs.assign(study="sam_table1"))
    assert recorded.loc[0, "n_seeds"] == 3 and recorded[protocols.RECORDED_FIELDS].isna().all(axis=None)


def test_protocols_table_names_every_study():
    table = protocols_markdown()
    lines = table.splitlines()
    assert lines[0] == "| study | source | what matches | what deviates and why |"
    named = {line.split(" | ")[0].removeprefix("| ") for line in lines[2:]}
    assert {r.study for r in PUBLISHED if r.study} | {c.study for c in DIRECTIONAL} <= named
    assert named - {"—"} == set(STUDIES)
    assert "chunks of 32" in table and "PyramidNet-272 is not in the artifact" in table


def test_protocols_survive_the_csv_round_trip_of_the_report_stage(tmp_path):
    """runs.csv spells a missing ρ or ASAM rule as NaN and "" reads back as NaN: the matches must still hold."""
    asam = _ref("asam_table", "cifar10", "ResNet-20", "asam")
    rows = _runs("sam_table1", "cifar_wrn28_10", "sam", [0.972, 0.973, 0.974], SAM_T1_WRN_C10) + _runs(
        "asam_table", "cifar_resnet20", "asam", [0.93] * 3, ASAM_R20_C10, best=[0.9381, 0.9382, 0.9383]
    )
    rows += _runs("asam_table", "cifar_resnet20", "sgd", [0.93] * 3, {**ASAM_R20_C10, "rho": None, "asam_rule": ""})
    runs = pd.DataFrame(rows)
    results = tmp_path / "results"
    for name, frame in {"runs": runs, "summary": _summary(runs), "paired": NO_PAIRS}.items():
        write_csv(frame, results / f"{name}.csv")
    write_params(tmp_path / "params.yaml", scale="paper")
    args = ["--params", str(tmp_path / "params.yaml"), "--results", str(results)]
    assert report_main(["claims", *args, "--paper-tables", str(tmp_path / "tables")]) == 0
    text = (results / "claims.md").read_text()
    assert "Verdicts: 3 supported, 0 not supported," in text
    lines = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| ")}
    sgd = _ref("asam_table", "cifar10", "ResNet-20", "sgd")  # 93.18 published, 93.00 reproduced
    assert all(" | supported | " in lines[ref.claim] for ref in (WRN_SAM, asam, sgd))
