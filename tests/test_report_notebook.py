"""notebooks/analysis.ipynb is stored without outputs and runs top to bottom on the fixture results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from fixtures.synthetic_runs import fixture_params, write_runs
from nbclient import NotebookClient

from unitgrad.report import cli as report_cli

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"
PARAMS = yaml.safe_dump(fixture_params())


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.fixture
def this_interpreter_kernel(tmp_path, monkeypatch):
    """A kernel spec for the running interpreter, so a fresh venv needs no `ipykernel install`."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "unitgrad-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "unitgrad test",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "unitgrad-test"


def test_notebook_runs_on_fixture(tmp_path, monkeypatch, this_interpreter_kernel):
    results = tmp_path / "results"
    write_runs(results)
    (tmp_path / "params.yaml").write_text(PARAMS)
    args = [
        "--params",
        str(tmp_path / "params.yaml"),
        "--runs",
        str(results / "runs"),
        "--results",
        str(results),
        "--paper-tables",
        str(tmp_path / "paper" / "tables"),
    ]
    for step in ("aggregate", "claims"):  # the notebook reads the four CSVs and claims.csv
        assert report_cli.main([step, *args]) == 0
    monkeypatch.setenv("UNITGRAD_RESULTS", str(results))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        kernel_name=this_interpreter_kernel,
        timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 4  # paired differences, learning curves, memorisation, corruption x severity
    text = [out["data"]["text/plain"] for out in outputs if "text/plain" in out.get("data", {})]
    accuracy = next(t for t in text if "ci95" in t and "epochs" in t)
    assert "59.0" in accuracy and "0.59" not in accuracy  # percent, not fractions
    differences = next(t for t in text if "mean_diff" in t)
    assert "3.0" in differences and "0.030 " not in differences  # pp: PUGD − SAM = 3 pp, not 0.030
    assert any("not comparable" in t for t in text)  # the claims table
