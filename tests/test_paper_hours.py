"""bench/paper_hours.py: runs × epochs × steps × step time, with the step time measured, interpolated between
measured batches, scaled past them, or taken from a proxy model; hand-computed on a 2-run study."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from unitgrad.config import load_params, read_yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import paper_hours  # noqa: E402 - bench/ is not a package

ROWS = [  # a fake gpu.json: seconds per step
    {"model": "cifar_resnet18", "batch": 128, "method": "sgd", "step_s": 0.010},
    {"model": "cifar_resnet18", "batch": 512, "method": "sgd", "step_s": 0.034},
    {"model": "cifar_resnet18", "batch": 128, "method": "sam", "step_s": 0.020},
    {"model": "cifar_resnet32", "batch": 128, "method": "sam", "step_s": 0.030},
]


def _params(tmp_path, model: str, batch: int) -> Path:
    """Smoke params with one study of 2 runs: sgd_2x and sam, 10 epochs, 1000 training images, `batch`."""
    data = read_yaml(ROOT / "params.yaml")
    data["data"]["loader"]["train_per_class"] = 100  # 1000 CIFAR-10 images
    study = {
        "source": "test",
        "datasets": ["cifar10"],
        "models": [model],
        "optimizers": ["sgd_2x", "sam"],
        "noise": [0],
        "noise_kind": "symmetric",
        "seeds": [0],
        "corruptions": False,
        "set": {"train.epochs": 10, "train.warmup_epochs": 0, "train.batch_size": batch},
        "when": [],
    }
    data["studies"] = {"main": study}
    data["report"].update(main_study="main", noise_study="main")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_hours_are_runs_times_epochs_times_steps_times_step_time(tmp_path):
    params = load_params(_params(tmp_path, "cifar_resnet18", 256))
    step_time = paper_hours.StepTimes(ROWS, ops=lambda name: pytest.fail(f"no proxy needed, asked for {name}"))
    (study,) = paper_hours.project(params, step_time)
    # 1000 // 256 = 3 steps per epoch. sgd_2x: 20 epochs at sgd's time interpolated between batch 128 and 512,
    # 0.010 + 0.024 * 128/384 = 0.018 s; sam: 10 epochs at 0.020 s * 256/128 = 0.040 s (only batch 128 measured).
    expected = (20 * 3 * 0.018 + 10 * 3 * 0.040) / 3600
    assert (study.study, study.runs, study.epochs) == ("main", 2, (10, 20))
    assert study.hours == pytest.approx(expected, rel=1e-12)
    assert study.by_model == {"cifar_resnet18": pytest.approx(expected, rel=1e-12)}
    assert step_time.used[("cifar_resnet18", "sgd", 256)][1] == "interpolated: batch 128 and 512"


def test_an_unmeasured_model_takes_its_proxy_times_the_op_ratio(tmp_path):
    params = load_params(_params(tmp_path, "cifar_resnet20", 100))
    ops = {"cifar_resnet20": 300, "cifar_resnet32": 600}
    step_time = paper_hours.StepTimes(
        [*ROWS, {"model": "cifar_resnet32", "batch": 128, "method": "sgd", "step_s": 0.012}], ops=ops.__getitem__
    )
    (study,) = paper_hours.project(params, step_time)
    # 1000 // 100 = 10 steps; below the smallest measured batch the time stays at batch 128's; ops ratio 0.5
    assert study.hours == pytest.approx((20 * 10 * 0.012 * 0.5 + 10 * 10 * 0.030 * 0.5) / 3600, rel=1e-12)


def test_a_model_with_neither_times_nor_proxy_names_the_fix(tmp_path):
    params = load_params(_params(tmp_path, "cifar_resnet8", 128))
    with pytest.raises(SystemExit, match="no step time for cifar_resnet8 / sgd: measure it"):
        paper_hours.project(params, paper_hours.StepTimes(ROWS))


def test_the_cli_writes_and_prints_the_table(tmp_path, capsys):
    gpu = tmp_path / "gpu.json"
    gpu.write_text(json.dumps({"device": {"name": "Fake GPU", "date": "2026-01-02T00:00:00"}, "rows": ROWS}))
    out = tmp_path / "hours.md"
    argv = ["--gpu", str(gpu), "--params", str(_params(tmp_path, "cifar_resnet18", 128)), "--out", str(out)]
    assert paper_hours.main(argv) == 0
    text = out.read_text()
    hours = (20 * 7 * 0.010 + 10 * 7 * 0.020) / 3600  # 1000 // 128 = 7 steps
    assert f"| main | 2 | 10/20 | {hours:,.1f} | cifar_resnet18 {hours:,.1f} |" in text
    assert "on one Fake GPU" in text and capsys.readouterr().out == text
