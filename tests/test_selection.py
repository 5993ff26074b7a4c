"""The report reads exactly the runs params.yaml selects: stale run directories never mix into it."""

import copy

import pandas as pd
import pytest
import yaml
from fixtures.synthetic_runs import CLEAN, fixture_params, write_runs

from unitgrad import cli
from unitgrad.runs import RunId


def _report(tmp_path, params, capsys):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = [
        "--params",
        str(tmp_path / "params.yaml"),
        "--runs",
        str(tmp_path / "results" / "runs"),
        "--results",
        str(tmp_path / "results"),
    ]
    code = cli.main(["report", "aggregate", *args])
    return code, capsys.readouterr().err


def test_runs_no_study_selects_are_named_in_a_warning_and_not_reported(tmp_path, capsys):
    write_runs(tmp_path / "results")  # seeds 0, 1, 2
    params = fixture_params()
    params["studies"]["main"]["seeds"] = [0]  # e.g. `dvc exp run -S studies.main.seeds=[0]`
    code, err = _report(tmp_path, params, capsys)
    assert code == 0
    stale = sum(len(accs) - 1 for accs in CLEAN.values())
    assert f"warning: {stale} run directories under" in err and "`unitgrad clean` removes them" in err
    summary = pd.read_csv(tmp_path / "results" / "summary.csv")
    sam = summary[(summary["optimizer"] == "sam") & (summary["noise"] == 0) & (summary["metric"] == "clean_acc")]
    assert sam["n"].item() == 1 and sam["mean"].item() == pytest.approx(CLEAN[("sam", 0.0)][0])
    assert set(summary["seeds"].astype(str)) == {"0"}


def test_a_selected_run_trained_otherwise_is_an_error_naming_it(tmp_path, capsys):
    write_runs(tmp_path / "results")  # trained for 3 epochs
    params = copy.deepcopy(fixture_params())
    params["train"]["epochs"] = 1  # params now say 1 epoch: the recorded runs are another experiment's
    code, err = _report(tmp_path, params, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "main/cifar10/cifar_resnet8/sgd/noise0/seed0 was trained with epochs 3 (params: 1) where" in err
    assert not (tmp_path / "results" / "summary.csv").exists()


def test_unitgrad_clean_removes_only_the_stale_run_directories(tmp_path, capsys):
    root = write_runs(tmp_path / "results")
    params = fixture_params()
    params["studies"]["main"]["seeds"] = [0, 1]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = ["--params", str(tmp_path / "params.yaml"), "--runs", str(root)]
    kept = RunId("main", "cifar10", "cifar_resnet8", "sam", 0, 1).to_path(root)
    gone = RunId("main", "cifar10", "cifar_resnet8", "sam", 0, 2).to_path(root)
    assert cli.main(["clean", "--dry-run", *args]) == 0
    assert f"would remove {gone}" in capsys.readouterr().out and gone.is_dir()
    assert cli.main(["clean", *args]) == 0
    assert f"removed {gone}" in capsys.readouterr().out
    assert kept.is_dir() and not gone.exists() and (root / "main").is_dir()
    assert cli.main(["clean", *args]) == 0
    assert "no stale run directories" in capsys.readouterr().out
