"""Reporting: seed statistics, aggregation of run directories, tables, figures, claims and the CLI."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fixtures.params import project_params
from fixtures.synthetic_runs import CLEAN, CORRUPTIONS, EPOCHS, TRAIN_SIZE, write_runs
from scipy import stats

from unitgrad import cli as unitgrad_cli
from unitgrad.errors import UnitgradError
from unitgrad.report import aggregate, claims, figures, paper, tables
from unitgrad.report.cli import main as report_main
from unitgrad.report.references import PUBLISHED, PublishedNumber
from unitgrad.report.stats import describe, paired_difference, t_half_width

# The project's params with the recipe the fixture runs are described by (rho for CIFAR-10 only).
RHO = {"sam": {"rho": {"cifar10": 0.05}}, "asam": {"rho": {"cifar10": 0.5}, "eta": 0.01}}
PARAMS = yaml.safe_dump(project_params(optim=RHO))
FIGURES = ["accuracy", "learning_curves", "label_noise", "corruption_severity", "corruption_heatmap"]
MD_TABLES = ["main", "label_noise", "corruption", "paired", "setup"]
TEX_TABLES = ["main", "label_noise", "corruption", "paired", "setup", "claims"]


def _cli_args(root):
    return ["--params", str(root / "params.yaml"), "--runs", str(root / "results" / "runs"),
            "--results", str(root / "results"), "--figures", str(root / "results" / "figures"),
            "--paper-tables", str(root / "paper" / "tables")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture runs pushed through every report step once (figures are the slow part)."""
    root = tmp_path_factory.mktemp("project")
    (root / "params.yaml").write_text(PARAMS)
    write_runs(root / "results")
    assert report_main(["all", *_cli_args(root)]) == 0
    return root


# --- statistics -------------------------------------------------------------------------------

def test_t_interval_of_one_two_three():
    # mean 2, std 1, n 3: half-width = t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051
    assert t_half_width([1, 2, 3]) == pytest.approx(2.4841377, abs=1e-6)
    assert describe([1, 2, 3]) == pytest.approx({"mean": 2.0, "std": 1.0, "n": 3, "ci95": 2.4841377}, abs=1e-6)


def test_single_seed_has_no_spread():
    one = describe([0.7])
    assert one["n"] == 1 and one["mean"] == 0.7
    assert math.isnan(one["std"]) and math.isnan(one["ci95"])


def test_paired_difference_matches_closed_form():
    a, b = [0.57, 0.59, 0.61], [0.55, 0.56, 0.57]
    result = paired_difference(a, b, min_seeds=3)
    t = 0.03 / (0.01 / math.sqrt(3))
    assert result["mean_diff"] == pytest.approx(0.03)
    assert result["ci95_high"] - result["mean_diff"] == pytest.approx(stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3))
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(t, 2))
    assert result["note"] == ""


def test_too_few_seeds_gives_no_p_value():
    result = paired_difference([0.42, 0.44], [0.40, 0.41], min_seeds=3)
    assert result["n"] == 2 and math.isnan(result["p_value"])
    assert result["note"] == "too few seeds (2 < 3)"
    assert result["ci95_low"] < result["mean_diff"] < result["ci95_high"]  # the CI is still reported


# --- aggregation ------------------------------------------------------------------------------

def test_summary_has_known_means_and_intervals(built):
    summary = pd.read_csv(built / "results" / "summary.csv")
    clean = summary[(summary["metric"] == "clean_acc")].set_index(["optimizer", "noise"])
    for (optimizer, noise), accs in CLEAN.items():
        row = clean.loc[(optimizer, noise)]
        assert row["mean"] == pytest.approx(np.mean(accs))
        assert row["n"] == len(accs)
        assert row["ci95"] == pytest.approx(t_half_width(accs), nan_ok=True)
        assert row["train_size"] == TRAIN_SIZE
    assert clean.loc[("sgd_2x", 0.0), "epochs"] == 2 * EPOCHS and clean.loc[("sam", 0.0), "epochs"] == EPOCHS
    assert math.isnan(clean.loc[("sgd_2x", 0.0), "std"])
    assert "NaN" in (built / "results" / "summary.csv").read_text()  # n = 1 is written as NaN, not 0
    mca = summary[(summary["metric"] == "mca") & (summary["optimizer"] == "sam")]["mean"].item()
    assert mca == pytest.approx(np.mean(CLEAN[("sam", 0.0)]) - 0.15 - np.mean(list(CORRUPTIONS.values())))


def test_runs_and_curves_are_tidy(built):
    runs = pd.read_csv(built / "results" / "runs.csv")
    assert list(runs.columns) == ["dataset", "model", "optimizer", "noise", "seed", "epochs", "train_size",
                                  "metric", "value"]
    assert not runs.duplicated(["dataset", "model", "optimizer", "noise", "seed", "metric"]).any()
    assert len(runs[runs["metric"] == "corruption/fog/5"]) == sum(len(v) for (o, n), v in CLEAN.items() if n == 0)
    curves = pd.read_csv(built / "results" / "curves.csv")
    sam0 = curves[(curves["optimizer"] == "sam") & (curves["seed"] == 0) & (curves["noise"] == 0)
                  & (curves["metric"] == "test_acc")]
    assert list(sam0["epoch"]) == list(range(EPOCHS))
    assert sam0["value"].iloc[-1] == pytest.approx(CLEAN[("sam", 0.0)][0])


def test_paired_csv_pairs_by_seed(built):
    paired = pd.read_csv(built / "results" / "paired.csv").fillna({"note": ""})
    row = paired[(paired["optimizer"] == "pugd") & (paired["reference"] == "sam") & (paired["metric"] == "clean_acc")
                 & (paired["noise"] == 0)].iloc[0]
    assert row["n"] == 3 and row["mean_diff"] == pytest.approx(0.03) and row["ci95_low"] > 0
    noisy = paired[(paired["noise"] == 0.4) & (paired["reference"] == "sam")]
    assert set(noisy["optimizer"]) == {"sgd", "pugd"}
    assert noisy["p_value"].isna().all() and noisy["note"].str.startswith("too few seeds").all()
    assert set(paired["reference"]) == {"sam", "sgd"}


@pytest.mark.parametrize("folder, rate", [("noise40", 0.4), ("noise0", 0.0)])
def test_run_identity_comes_from_the_path(tmp_path, folder, rate):
    run = tmp_path / "cifar100" / "cifar_wrn28_10" / "pugd" / folder / "seed7"
    (run / "train" / "dvclive").mkdir(parents=True)
    (run / "train" / "dvclive" / "metrics.json").write_text('{"test": {"acc": 0.8}}')
    ident, metrics, curves = aggregate.read_run(aggregate.find_runs(tmp_path)[0])
    assert {k: ident[k] for k in aggregate.ID_COLUMNS} == {
        "dataset": "cifar100", "model": "cifar_wrn28_10", "optimizer": "pugd", "noise": rate, "seed": 7}
    assert metrics == {"test_acc": 0.8} and curves == []  # not evaluated: no clean accuracy (monitor subset)
    assert math.isnan(ident["epochs"]) and math.isnan(ident["train_size"])


def test_folders_outside_the_run_layout_are_not_runs(tmp_path):
    for folder in ("noise0.4", "noise40x"):  # a decimal rate is not a percent
        run = tmp_path / "cifar10" / "cifar_resnet8" / "pugd" / folder / "seed0"
        (run / "train" / "dvclive").mkdir(parents=True)
        (run / "train" / "dvclive" / "metrics.json").write_text('{"test": {"acc": 0.8}}')
    with pytest.raises(UnitgradError, match="no finished runs"):
        aggregate.find_runs(tmp_path)


def test_epochs_fall_back_to_the_run_config(tmp_path):
    run = tmp_path / "cifar10" / "cifar_resnet8" / "sgd" / "noise0" / "seed0"
    (run / "train" / "dvclive").mkdir(parents=True)
    (run / "train" / "dvclive" / "metrics.json").write_text('{"test": {"acc": 0.5}}')
    (run / "train" / "run.json").write_text('{"config": {"epochs": 9, "warmup_epochs": 1}}')
    ident, _, _ = aggregate.read_run(run)
    assert ident["epochs"] == 9


def test_corrupt_metrics_file_is_a_one_line_error(tmp_path):
    root = write_runs(tmp_path)
    bad = next(root.rglob("eval.json"))
    bad.write_text("{not json")
    with pytest.raises(UnitgradError, match=r"eval\.json is unreadable"):
        aggregate.collect(root)


def test_no_runs_is_an_error_naming_dvc_repro_train(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text(PARAMS)
    (tmp_path / "results" / "runs").mkdir(parents=True)
    assert unitgrad_cli.main(["report", "aggregate", *_cli_args(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "dvc repro train" in err and "\n" not in err
    assert not (tmp_path / "results" / "summary.csv").exists()
    with pytest.raises(UnitgradError, match="unitgrad report aggregate"):
        report_main(["figures", *_cli_args(tmp_path)])


# --- outputs ----------------------------------------------------------------------------------

def test_every_output_has_its_fixed_name(built):
    results = built / "results"
    for name in ("runs", "summary", "paired", "curves"):
        assert (results / f"{name}.csv").stat().st_size > 0
    for stem in FIGURES:
        assert (results / "figures" / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert (results / "figures" / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
    for name in MD_TABLES:
        assert (results / "tables" / f"{name}.md").stat().st_size > 0
    for name in TEX_TABLES:
        assert (built / "paper" / "tables" / f"{name}.tex").stat().st_size > 0
    assert (results / "claims.md").is_file()
    leftovers = [p for p in built.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_tables_bold_the_best_mean_per_column(built):
    main_md = (built / "results" / "tables" / "main.md").read_text()
    assert "| PUGD | **59.0 ± 2.0** |" in main_md
    assert "| SGD (2× epochs) | 53.0 ± n/a |" in main_md
    main_tex = (built / "paper" / "tables" / "main.tex").read_text()
    assert "\\toprule" in main_tex and "\\bottomrule" in main_tex
    assert "PUGD & \\textbf{59.0 ± 2.0}" in main_tex and "\\textbf{56.0" not in main_tex
    assert "cifar\\_resnet8" in main_tex  # escaped for LaTeX
    noise_md = (built / "results" / "tables" / "label_noise.md").read_text()
    assert "| PUGD | **59.0 ± 2.0** | **43.0 ± 1.4** |" in noise_md
    setup = (built / "paper" / "tables" / "setup.tex").read_text()
    assert "\\newcommand{\\ugEpochs}{3 (SGD (2× epochs): 6)}" in setup
    assert "\\newcommand{\\ugScale}{smoke}" in setup


def test_figures_are_written_without_noise_or_corruption_or_spread(tmp_path, built):
    runs = pd.read_csv(built / "results" / "runs.csv")
    runs = runs[(runs["noise"] == 0) & (runs["seed"] == 0) & ~runs["metric"].str.startswith("corruption/")]
    curves = pd.read_csv(built / "results" / "curves.csv")
    paths = figures.write_figures(runs, aggregate.summarize(runs), curves[curves["seed"] == 0], tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"{s}.{f}" for s in FIGURES for f in ("png", "pdf"))
    empty = tables.label_noise_table(aggregate.summarize(runs))
    assert "no label-noise runs" in empty.markdown() and "no label-noise runs" in empty.latex()


# --- claims -----------------------------------------------------------------------------------

def test_smoke_claims_every_row_has_a_verdict(built):
    text = (built / "results" / "claims.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| #")]
    assert len(rows) == len(PUBLISHED) + 3  # three directional claims, one noise rate
    verdicts = [line.rsplit(" | ", 2)[1] for line in rows]
    assert set(verdicts) <= {claims.SUPPORTED, claims.NOT_SUPPORTED, claims.NOT_COMPARABLE}
    assert "paper-scale comparable" in text and "200" in text


def _summary_row(model, optimizer, mean, ci, n, epochs=200, train_size=50_000, noise=0.0, dataset="cifar10"):
    return {"dataset": dataset, "model": model, "optimizer": optimizer, "noise": noise, "metric": "clean_acc",
            "epochs": epochs, "train_size": train_size, "mean": mean, "std": ci, "n": n, "ci95": ci, "seeds": ""}


def _verdict(summary_rows, published, paired=None, scale="paper", tolerance_pp=0.5):
    paired = paired if paired is not None else pd.DataFrame(columns=aggregate.PAIRED_COLUMNS)
    checked = claims.check_claims(pd.DataFrame(summary_rows), paired, published, scale, 3, tolerance_pp)
    return checked.iloc[3:].reset_index(drop=True)  # after the three directional rows


def test_published_number_needs_paper_scale():
    ref = PublishedNumber("SAM, Table 1", "cifar10", "WRN-28-10", "cifar_wrn28_10", "sam", 97.3, 0.1)
    supported = _verdict([_summary_row("cifar_wrn28_10", "sam", 0.9712, 0.003, 5)], [ref])
    assert supported.loc[0, "verdict"] == claims.SUPPORTED
    assert supported.loc[0, "reproduced"] == "97.12 ± 0.30 % (n=5)"
    missed = _verdict([_summary_row("cifar_wrn28_10", "sam", 0.95, 0.003, 5)], [ref])
    assert missed.loc[0, "verdict"] == claims.NOT_SUPPORTED
    smoke = _verdict([_summary_row("cifar_wrn28_10", "sam", 0.973, 0.003, 2, epochs=4, train_size=5000)], [ref],
                     scale="smoke")
    assert smoke.loc[0, "verdict"] == claims.NOT_COMPARABLE  # even though the number happens to match
    assert "4 < 200 epochs" in smoke.loc[0, "reason"] and "too few seeds (2 < 3)" in smoke.loc[0, "reason"]
    absent = _verdict([_summary_row("cifar_resnet8", "sam", 0.5, 0.01, 3)], [ref])
    assert absent.loc[0, "verdict"] == claims.NOT_COMPARABLE and "not run here" in absent.loc[0, "reason"]


def test_match_tolerance_comes_from_params():
    ref = PublishedNumber("SAM, Table 1", "cifar10", "WRN-28-10", "cifar_wrn28_10", "sam", 97.3, 0.1)
    row = [_summary_row("cifar_wrn28_10", "sam", 0.9650, 0.001, 5)]  # 0.8 pp below, CI 0.1 pp
    assert _verdict(row, [ref], tolerance_pp=0.5).loc[0, "verdict"] == claims.NOT_SUPPORTED
    assert _verdict(row, [ref], tolerance_pp=1.0).loc[0, "verdict"] == claims.SUPPORTED


def _paired_row(low, high, n=3, noise=0.0):
    return {"dataset": "cifar10", "model": "cifar_resnet8", "noise": noise, "metric": "clean_acc",
            "optimizer": "pugd", "reference": "sam", "n": n, "mean_diff": (low + high) / 2, "ci95_low": low,
            "ci95_high": high, "p_value": 0.2, "note": ""}


@pytest.mark.parametrize("low, high, n, epochs, verdict", [
    (0.01, 0.05, 3, 200, claims.SUPPORTED),
    (-0.01, 0.05, 3, 200, claims.NOT_SUPPORTED),
    (-0.05, -0.01, 3, 200, claims.NOT_SUPPORTED),
    (0.01, 0.05, 2, 200, claims.NOT_COMPARABLE),  # too few seeds
    (0.01, 0.05, 3, 4, claims.NOT_COMPARABLE),  # smoke scale: a clear difference after 4 epochs decides nothing
])
def test_directional_claim_needs_paper_scale_and_states_its_ci(low, high, n, epochs, verdict):
    summary = pd.DataFrame([_summary_row("cifar_resnet8", "pugd", 0.6, 0.01, n, epochs=epochs)])
    checked = claims.check_claims(summary, pd.DataFrame([_paired_row(low, high, n)]), [], "smoke", 3, 0.5)
    clean = checked.iloc[0]
    assert clean["verdict"] == verdict
    assert f"95 % CI [{100 * low:+.2f}, {100 * high:+.2f}] pp" in clean["reproduced"]
    assert clean["scale"].startswith(f"smoke: cifar_resnet8, {epochs} ep, 50000 train imgs")
    if epochs < 200:
        assert clean["reason"].startswith("4 < 200 epochs")
    assert checked.iloc[1]["verdict"] == claims.NOT_COMPARABLE  # no label-noise pairs: not run


def test_paper_claims_table_condenses_unreproduced_rows(built):
    tex = (built / "paper" / "tables" / "claims.tex").read_text()
    assert "\\begin{longtable}" in tex and "\\toprule" in tex
    assert "30 published accuracies" in tex  # the ASAM table in one row; the full list is claims.md


# --- paper ------------------------------------------------------------------------------------

def test_paper_without_latexmk_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paper.shutil, "which", lambda name: None)
    assert unitgrad_cli.main(["paper", "--paper-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "apt-get install" in err and "latexmk" in err and "\n" not in err


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="TeX is not installed")
def test_paper_builds_from_generated_tables(built, tmp_path):
    repo_paper = Path(__file__).resolve().parents[1] / "paper" / "main.tex"
    (tmp_path / "paper").mkdir()
    shutil.copy(repo_paper, tmp_path / "paper" / "main.tex")
    shutil.copytree(built / "paper" / "tables", tmp_path / "paper" / "tables")
    shutil.copytree(built / "results" / "figures", tmp_path / "results" / "figures")
    pdf = paper.build(tmp_path / "paper")
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in (tmp_path / "paper").iterdir()) == ["main.log", "main.pdf", "main.tex", "tables"]
