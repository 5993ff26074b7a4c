"""unitgrad toy: the 2-D trajectories stage writes a deterministic CSV and a PNG, and rejects bad params."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml
from fixtures.params import project_params
from fixtures.params import write_params as project_write_params

from unitgrad import toy
from unitgrad.errors import UnitgradError
from unitgrad.schema import Toy

TOY = {
    "start": [-1.5, 1.8],
    "steps": 300,
    "optimizers": ["sgd", "adagrad", "ngd", "sam", "asam", "ugd", "pugd"],
    "lr": 0.02,
    "adagrad_lr": 0.1,
    "momentum": 0.9,
    "sam_rho": 0.05,
    "asam_rho": 0.5,
    "asam_eta": 0.01,
    "pugd_rho": 1.0,
}


def write_params(tmp_path, **overrides):
    return project_write_params(tmp_path / "params.yaml", toy={**TOY, **overrides})


def test_toy_writes_csv_and_png_deterministically(tmp_path):
    params = write_params(tmp_path, steps=20)
    for out in ("a", "b"):
        assert toy.main(["--params", str(params), "--out-dir", str(tmp_path / out)]) == 0
    csv_a = (tmp_path / "a/toy/trajectories.csv").read_bytes()
    assert csv_a == (tmp_path / "b/toy/trajectories.csv").read_bytes()
    rows = list(csv.DictReader(csv_a.decode().splitlines()))
    assert list(rows[0]) == ["optimizer", "step", "x", "y", "loss"]
    assert len(rows) == 7 * 21
    assert {r["optimizer"] for r in rows} == set(TOY["optimizers"])
    first = [r for r in rows if r["step"] == "0"]
    assert all((float(r["x"]), float(r["y"])) == (-1.5, 1.8) for r in first)
    assert (tmp_path / "a/figures/toy_trajectories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "a").rglob("*.tmp"))


def test_paths_differ_as_the_methods_do():
    """On the default surface plain gradient methods stop in the sharp well; PUGD and UGD reach the wide one."""
    cfg = Toy(**TOY)
    paths = {name: toy.trajectory(name, cfg) for name in TOY["optimizers"]}
    finals = {name: path[-1] for name, path in paths.items()}
    for name in ("sgd", "adagrad", "ngd"):
        assert np.linalg.norm(finals[name] - toy.SHARP_MIN) < 0.1, name
    for name in ("pugd", "ugd", "asam"):
        assert np.linalg.norm(finals[name] - toy.WIDE_MIN) < 0.3, name
    for a, path in paths.items():  # every pair of paths is visibly apart somewhere
        assert all(np.abs(path - other).max() > 0.05 for b, other in paths.items() if b != a), a


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"start": [1.0]}, r"toy.start: list should have at least 2 items"),
        ({"steps": 0}, r"toy.steps: input should be greater than or equal to 1, got 0"),
        ({"optimizers": ["sgd", "lamb"]}, r"toy.optimizers.1: input should be 'sgd', 'adagrad', .*got 'lamb'"),
        ({"lr": 0}, r"toy.lr: input should be greater than 0, got 0"),
        ({"pugd_rho": -1}, r"toy.pugd_rho: input should be greater than 0, got -1"),
        ({"momentum": "lots"}, r"toy.momentum: input should be a valid number, got 'lots'"),
    ],
)
def test_bad_params_are_one_line_errors_and_write_nothing(tmp_path, override, match):
    params = write_params(tmp_path, **override)
    with pytest.raises(UnitgradError, match=match) as info:
        toy.main(["--params", str(params), "--out-dir", str(tmp_path / "out")])
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{params}: ")
    assert not (tmp_path / "out").exists()


def test_missing_toy_key_names_it(tmp_path):
    params = project_params(toy=TOY)
    del params["toy"]["adagrad_lr"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(UnitgradError, match=r"toy\.adagrad_lr: missing"):
        toy.main(["--params", str(path), "--out-dir", str(tmp_path / "out")])
