"""The grid uses DVC internals: pyproject.toml pins the DVC versions they are tested with, and the grid refuses
others with a one-line error."""

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from unitgrad.errors import UnitgradError
from unitgrad.grid import stages

ROOT = Path(__file__).resolve().parents[1]


def test_installed_dvc_is_one_the_grid_is_tested_with():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = next(Requirement(d) for d in deps if Requirement(d).name == "dvc").specifier
    assert pinned == SpecifierSet(stages.DVC_TESTED), "pyproject.toml and grid.stages.DVC_TESTED must agree"
    installed = version("dvc")
    assert installed in pinned, (
        f"dvc {installed} is installed, but unitgrad grid uses DVC internals tested only with dvc{pinned}: "
        "test the grid with it (tests/test_grid*.py) and widen DVC_TESTED and pyproject.toml, or install a tested DVC"
    )


def test_an_untested_dvc_is_refused(monkeypatch):
    monkeypatch.setattr("importlib.metadata.version", lambda name: "3.50.0")
    with pytest.raises(UnitgradError, match=r"^unitgrad grid is tested with dvc>=3\.67\.1,<3\.68 .* dvc 3\.50\.0 is"):
        stages.open_repo(ROOT)
