"""Reporting: seed statistics, aggregation of run directories, tables, figures, claims and the CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typst
import yaml
from fixtures.synthetic_runs import CLEAN, CORRUPTIONS, EPOCHS, TRAIN_SIZE, fixture_params, write_runs
from PIL import Image
from scipy import stats

from unitgrad import cli as unitgrad_cli
from unitgrad import paper
from unitgrad.config import parse_params
from unitgrad.errors import UnitgradError
from unitgrad.report import aggregate, figures, tables
from unitgrad.report.cli import main as report_main
from unitgrad.report.stats import describe, paired_difference, t_half_width
from unitgrad.runs import RunId
from unitgrad.studies import selected_runs

# The project's params with the recipe the fixture runs are described by (rho for CIFAR-10 only).
RHO = {"sam": {"rho": {"cifar10": 0.05}}, "asam": {"rho": {"cifar10": 0.5}, "eta": 0.01}}
PARAMS = yaml.safe_dump(fixture_params(optim=RHO))
FIGURES = ["accuracy", "learning_curves", "label_noise", "corruption_severity", "corruption_heatmap"]
MD_TABLES = ["main", "label_noise", "corruption", "paired", "setup"]
TEX_TABLES = ["main", "label_noise", "corruption", "paired", "setup", "claims"]  # also written as .json


def _cli_args(root):
    return [
        "--params",
        str(root / "params.yaml"),
        "--runs",
        str(root / "results" / "runs"),
        "--results",
        str(root / "results"),
        "--figures",
        str(root / "results" / "figures"),
        "--paper-tables",
        str(root / "paper" / "tables"),
    ]


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
    assert list(runs.columns) == [
        *aggregate.ID_COLUMNS,
        "epochs",
        "train_size",
        *aggregate.PROTOCOL_COLUMNS,
        "metric",
        "value",
    ]
    assert not runs.duplicated([*aggregate.ID_COLUMNS, "metric"]).any()
    sam = runs[(runs["optimizer"] == "sam") & (runs["noise"] == 0)].iloc[0]
    assert (sam["study"], sam["batch_size"], sam["lr"], sam["rho"], sam["m"]) == ("main", 128, 0.1, 0.05, 128)
    assert (sam["augmentation"], sam["bn_update"], sam["monitor_size"]) == ("crop4+flip", "first_pass", 1000)
    best = runs[
        (runs["optimizer"] == "sam") & (runs["seed"] == 0) & (runs["noise"] == 0) & (runs["metric"] == "best_acc")
    ]["value"].item()
    assert best == pytest.approx(CLEAN[("sam", 0.0)][0])  # the fixture's curves rise: the last epoch is the best
    assert len(runs[runs["metric"] == "corruption/fog/5"]) == sum(len(v) for (o, n), v in CLEAN.items() if n == 0)
    curves = pd.read_csv(built / "results" / "curves.csv")
    sam0 = curves[
        (curves["optimizer"] == "sam")
        & (curves["seed"] == 0)
        & (curves["noise"] == 0)
        & (curves["metric"] == "test_acc")
    ]
    assert list(sam0["epoch"]) == list(range(EPOCHS))
    assert sam0["value"].iloc[-1] == pytest.approx(CLEAN[("sam", 0.0)][0])


def test_paired_csv_pairs_by_seed(built):
    paired = pd.read_csv(built / "results" / "paired.csv").fillna({"note": ""})
    row = paired[
        (paired["optimizer"] == "pugd")
        & (paired["reference"] == "sam")
        & (paired["metric"] == "clean_acc")
        & (paired["noise"] == 0)
    ].iloc[0]
    assert row["n"] == 3 and row["mean_diff"] == pytest.approx(0.03) and row["ci95_low"] > 0
    noisy = paired[(paired["noise"] == 0.4) & (paired["reference"] == "sam")]
    assert set(noisy["optimizer"]) == {"sgd", "pugd"}
    assert noisy["p_value"].isna().all() and noisy["note"].str.startswith("too few seeds").all()
    assert set(paired["reference"]) == {"sam", "sgd"}


@pytest.mark.parametrize("folder, rate", [("noise40", 0.4), ("noise0", 0.0)])
def test_run_identity_comes_from_the_path(tmp_path, folder, rate):
    run = tmp_path / "main" / "cifar100" / "cifar_wrn28_10" / "pugd" / folder / "seed7"
    (run / "train" / "dvclive").mkdir(parents=True)
    (run / "train" / "dvclive" / "metrics.json").write_text('{"test": {"acc": 0.8}}')
    ident, metrics, curves = aggregate.read_run(run)
    assert {k: ident[k] for k in aggregate.ID_COLUMNS} == {
        "study": "main",
        "dataset": "cifar100",
        "model": "cifar_wrn28_10",
        "optimizer": "pugd",
        "noise": rate,
        "seed": 7,
    }
    assert metrics == {"test_acc": 0.8} and curves == []  # not evaluated: no clean accuracy (monitor subset)
    assert math.isnan(ident["epochs"]) and math.isnan(ident["train_size"])


def test_only_the_selected_runs_are_read(tmp_path):
    selected = RunId("main", "cifar10", "cifar_resnet8", "sgd", 0, 0)
    for run in (selected, RunId("old", "cifar10", "cifar_resnet8", "sgd", 0, 0)):
        (run.to_path(tmp_path) / "train" / "dvclive").mkdir(parents=True)
        (run.to_path(tmp_path) / "train" / "dvclive" / "metrics.json").write_text('{"test": {"acc": 0.8}}')
    assert aggregate.finished(tmp_path, [selected, RunId("main", "cifar10", "cifar_resnet8", "sam", 0, 0)]) == [
        selected.to_path(tmp_path)
    ]
    with pytest.raises(UnitgradError, match="none of the 1 selected runs has finished"):
        aggregate.finished(tmp_path, [RunId("main", "cifar10", "cifar_resnet8", "sam", 0, 0)])


def test_best_epoch_accuracy_is_the_highest_monitored_test_accuracy(tmp_path):
    run = tmp_path / "main" / "cifar10" / "cifar_resnet8" / "sam" / "noise0" / "seed0"
    (run / "train" / "dvclive" / "plots" / "metrics" / "test").mkdir(parents=True)
    (run / "train" / "dvclive" / "metrics.json").write_text('{"test": {"acc": 0.4}}')
    (run / "train" / "dvclive" / "plots" / "metrics" / "test" / "acc.tsv").write_text(
        "step\tacc\n0\t0.3\n1\t0.5\n2\t0.4\n"
    )
    (run / "train" / "run.json").write_text('{"config": {"dataset": "cifar10", "monitor_per_class": null}}')
    ident, metrics, _ = aggregate.read_run(run)
    assert (metrics["best_acc"], metrics["test_acc"], ident["epochs"]) == (0.5, 0.4, 3)  # best epoch 2 of 3
    assert ident["monitor_size"] == 10_000  # picked on the whole test set: what ASAM's best-epoch numbers used


def test_epochs_fall_back_to_the_run_config(tmp_path):
    run = tmp_path / "main" / "cifar10" / "cifar_resnet8" / "sgd" / "noise0" / "seed0"
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
        aggregate.collect(root, selected_runs(parse_params(fixture_params())))


def test_no_runs_is_an_error_naming_dvc_repro(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text(PARAMS)
    (tmp_path / "results" / "runs").mkdir(parents=True)
    assert unitgrad_cli.main(["report", "aggregate", *_cli_args(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "dvc repro" in err and "\n" not in err
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
        assert json.loads((built / "paper" / "tables" / f"{name}.json").read_text())
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
    main_json = json.loads((built / "paper" / "tables" / "main.json").read_text())  # what the Typst paper reads
    assert main_json["columns"] == ["optimizer", "CIFAR-10 · cifar_resnet8"]
    pugd = main_json["rows"].index(["PUGD", "59.0 ± 2.0"])
    assert main_json["bold"][pugd] == [False, True] and sum(map(any, main_json["bold"])) == 1
    assert json.loads((built / "paper" / "tables" / "setup.json").read_text())["epochs"] == "3 (SGD (2× epochs): 6)"


def test_figures_are_written_without_noise_or_corruption_or_spread(tmp_path, built):
    runs = pd.read_csv(built / "results" / "runs.csv")
    runs = runs[(runs["noise"] == 0) & (runs["seed"] == 0) & ~runs["metric"].str.startswith("corruption/")]
    curves = pd.read_csv(built / "results" / "curves.csv")
    summary = aggregate.summarize(runs)
    paths = figures.write_figures(runs, summary, curves[curves["seed"] == 0], summary, tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"{s}.{f}" for s in FIGURES for f in ("png", "pdf"))
    empty = tables.label_noise_table(aggregate.summarize(runs))
    assert "no label-noise runs" in empty.markdown() and "no label-noise runs" in empty.latex()
    assert json.loads(empty.as_json())["rows"] == [] and "no label-noise runs" in json.loads(empty.as_json())["note"]


# --- paper ------------------------------------------------------------------------------------


def _paper_project(built, tmp_path) -> Path:
    """A project tree with the repository's main.typ, the generated tables and figures, and a toy figure."""
    repo_paper = Path(__file__).resolve().parents[1] / "paper" / "main.typ"
    (tmp_path / "paper").mkdir()
    shutil.copy(repo_paper, tmp_path / "paper" / "main.typ")
    shutil.copytree(built / "paper" / "tables", tmp_path / "paper" / "tables")
    shutil.copytree(built / "results" / "figures", tmp_path / "results" / "figures")
    Image.new("RGB", (40, 30), "white").save(tmp_path / "results" / "figures" / "toy_trajectories.png")
    return tmp_path / "paper"


def test_paper_builds_from_generated_tables_with_typst(built, tmp_path):
    paper_dir = _paper_project(built, tmp_path)
    pdf = paper.build(paper_dir)
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in paper_dir.iterdir()) == ["main.pdf", "main.typ", "tables"]  # no by-products


def test_paper_figures_stay_in_order_and_are_all_referenced(built, tmp_path):
    source = _paper_project(built, tmp_path) / "main.typ"
    elements = json.loads(typst.query(str(source), "selector(heading).or(figure)", root=str(tmp_path)))
    figures_ = [e for e in elements if e["func"] == "figure"]
    assert all(e.get("placement") is None for e in figures_)  # not floats: each stays where the text puts it
    claims_at = next(i for i, e in enumerate(elements) if e.get("label") == "<sec-claims>")
    assert [e["label"] for e in elements[claims_at:] if e["func"] == "figure"] == ["<tab-claims>"]
    assert [e["kind"] for e in figures_].count("table") == 7 and len(figures_) == 11
    references = {e["target"] for e in json.loads(typst.query(str(source), "ref", root=str(tmp_path)))}
    assert {e["label"] for e in figures_} <= references


def test_paper_compile_error_is_one_line_naming_the_file_and_keeps_the_old_pdf(built, tmp_path, capsys):
    paper_dir = _paper_project(built, tmp_path)
    paper.build(paper_dir)
    before = (paper_dir / "main.pdf").read_bytes()
    (paper_dir / "main.typ").write_text("= Title\n#undefined-macro\n")
    assert unitgrad_cli.main(["paper", "--paper-dir", str(paper_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "main.typ" in err and "unknown variable: undefined-macro" in err
    assert (paper_dir / "main.pdf").read_bytes() == before
    assert sorted(p.name for p in paper_dir.iterdir()) == ["main.pdf", "main.typ", "tables"]


def test_paper_without_generated_tables_says_which_stage_to_run(tmp_path):
    (tmp_path / "main.typ").write_text("= x\n")
    with pytest.raises(UnitgradError, match=r"setup\.json not found: run `dvc repro`"):
        paper.build(tmp_path)
