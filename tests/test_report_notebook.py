"""notebooks/analysis.ipynb is stored without outputs and runs top to bottom on the fixture results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from fixtures.params import project_params
from fixtures.synthetic_runs import write_runs
from nbclient import NotebookClient

from unitgrad.report import cli as report_cli

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"
PARAMS = yaml.safe_dump(project_params())


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.fixture
def this_interpreter_kernel(tmp_path, monkeypatch):
    """A kernel spec for the running interpreter, so a fresh venv needs no `ipykernel install`."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "unitgrad-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "unitgrad test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "unitgrad-test"


def test_notebook_runs_on_fixture(tmp_path, monkeypatch, this_interpreter_kernel):
    results = tmp_path / "results"
    runs = write_runs(results)
    (tmp_path / "params.yaml").write_text(PARAMS)
    report_cli.run_aggregate(runs, results, report_cli.load_params(tmp_path / "params.yaml"))
    monkeypatch.setenv("UNITGRAD_RESULTS", str(results))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, kernel_name=this_interpreter_kernel, timeout=120,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    markdown = [out["data"]["text/markdown"] for out in outputs if "text/markdown" in out.get("data", {})]
    assert len(images) == 2
    assert any("**59.0 ± 2.0**" in text for text in markdown)  # the main table, best mean in bold
