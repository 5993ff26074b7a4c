"""bench/gpu_quick.py's params: params.yaml with one valid study `main` at the quick budget, which the report shows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from unitgrad.config import parse_params, read_yaml
from unitgrad.run_config import RunConfig
from unitgrad.studies import selected_runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_quick  # noqa: E402 - a script folder, importable once on the path


@pytest.mark.parametrize(("sizes", "device"), [(gpu_quick.GPU, "cuda"), (gpu_quick.CPU_DRY_RUN, "cpu")])
def test_quick_params_validate_and_select_the_quick_runs(sizes, device):
    base = read_yaml(ROOT / "params.yaml")
    params = parse_params(gpu_quick.quick_params(base, sizes, device, "cifar10-jpeg.tar.gz"), "quick params")
    runs = selected_runs(params)
    assert {(r.study, r.model, r.noise) for r in runs} == {("main", sizes.model, 0)}
    assert sorted((r.optimizer, r.seed) for r in runs) == sorted(
        (o, s) for o in ("sgd", "sam", "pugd") for s in sizes.seeds
    )
    cfg = RunConfig.for_run(params, runs[0], "quick params")
    settings = (cfg.epochs, cfg.train.batch_size, cfg.loader.train_per_class, cfg.train.device)
    assert settings == (sizes.epochs, sizes.batch_size, sizes.train_per_class, device)
    assert cfg.train.warmup_epochs < cfg.epochs
    assert params.report.main_study == params.report.noise_study == "main"
    assert params.data.sources == {"cifar10": "cifar10-jpeg.tar.gz"}
    assert base["studies"].keys() == read_yaml(ROOT / "params.yaml")["studies"].keys()


def test_changes_lists_only_the_changed_leaves():
    base = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": [1]}
    quick = {"a": {"b": 1, "c": {"d": 2, "e": 4}}, "f": [1, 2], "g": 5}
    assert gpu_quick.changes(base, quick) == {"a": {"c": {"e": 4}}, "f": [1, 2], "g": 5}
