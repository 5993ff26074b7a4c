"""`unitgrad snapshot`: a finished scale's small results, copied where git keeps them, and README's verdict block."""

from __future__ import annotations

import pytest
import yaml
from fixtures.synthetic_runs import fixture_params, write_runs

from unitgrad import snapshot
from unitgrad.errors import UnitgradError
from unitgrad.report import cli as report_cli


def test_snapshot_copies_the_report_and_each_selected_runs_records(tmp_path):
    params = fixture_params()
    # every selected run finished (a new dict: the fixture's study is shared with other tests)
    params["studies"]["main"] = {
        **params["studies"]["main"],
        "optimizers": ["sgd", "sam", "pugd"],
        "noise": [0],
        "seeds": [0, 1, 2],
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    results = tmp_path / "results"
    write_runs(results, params)  # also runs the study does not select: sgd_2x and the noisy ones
    paths = ["--params", str(tmp_path / "params.yaml"), "--runs", str(results / "runs"), "--results", str(results)]
    paths += ["--figures", str(results / "figures"), "--paper-tables", str(tmp_path / "tables")]
    assert report_cli.main(["all", *paths]) == 0
    dest = tmp_path / "snap"
    argv = [str(dest), "--results", str(results), "--params", str(tmp_path / "params.yaml"), "--wall-time", "1 h 2 min"]
    assert snapshot.main(argv) == 0
    copied = sorted(p.parent.parent.name + "/" + p.parent.name for p in (dest / "runs").rglob("eval.json"))
    assert len(copied) == 9 and all("noise0" in c for c in copied)  # the selected runs only
    assert all((results / name).read_bytes() == (dest / name).read_bytes() for name in snapshot.RESULT_FILES)
    assert sorted(p.stem for p in (dest / "figures").iterdir()) == sorted(snapshot.FIGURES)
    readme = (dest / "README.md").read_text()
    assert "wall time of the whole scale: 1 h 2 min; 9 training runs" in readme and "- commit: " in readme
    block = snapshot.readme_block(dest)
    assert block.startswith(snapshot.README_BEGIN) and block.endswith(snapshot.README_END)
    assert "| check | n | value |" in block  # the verdict table (empty below the laptop scale)


def test_snapshot_of_unfinished_results_names_what_is_missing_and_writes_nothing(tmp_path):
    params = fixture_params()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_runs(tmp_path / "results", params)
    with pytest.raises(UnitgradError, match=r"lacks runs\.csv.*: finish the scale"):
        snapshot.snapshot(tmp_path / "results", tmp_path / "snap", str(tmp_path / "params.yaml"), "1 h")
    assert not (tmp_path / "snap").exists()
