"""`train.compile: true` (params.paper.yaml) with the two-pass step: the same losses as eager, and torch.compile
compiles a bounded number of graphs, not one per step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from fixtures.tiny_cifar import tiny_cifar, tiny_source

from unitgrad.config import parse_params
from unitgrad.run_config import RunConfig
from unitgrad.train import data as train_data
from unitgrad.train.run import train_run

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, STEPS = 2, 3  # 60 images in batches of 16


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sam", "asam", "pugd"])
def test_compiled_two_pass_training_matches_eager_without_recompiling(optimizer, tmp_path, monkeypatch):
    monkeypatch.setattr(train_data, "load_cifar", tiny_cifar)
    monkeypatch.setattr(train_data, "source_of", tiny_source)
    torch.set_num_threads(1)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["loader"]["train_per_class"] = 6
    # A small LR: the test is about the same arithmetic, not about how far rounding differences grow.
    params["train"].update(
        epochs=EPOCHS, batch_size=16, lr=0.01, warmup_epochs=0.5, device="cpu", monitor_per_class=None
    )
    run = {"dataset": "cifar10", "model": "cifar_resnet8", "optimizer": optimizer, "seed": 0, "noise": 0.0}
    results = {}
    for compiled in (False, True):
        params["train"]["compile"] = compiled
        cfg = RunConfig.from_params(parse_params(params), **run)
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        results[compiled] = train_run(cfg, tmp_path / f"compile{compiled}")
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        if compiled:
            # the first pass, the second (BatchNorm frozen): a few graphs for 2 epochs × 3 steps × 2 passes
            assert 1 <= graphs <= 4, dict(torch._dynamo.utils.counters["stats"])
        else:
            assert graphs == 0
    for split in ("train", "test"):
        compiled, eager = results[True][split], results[False][split]
        assert compiled["loss"] == pytest.approx(eager["loss"], rel=1e-3, abs=1e-3)
        # compiled kernels round differently: a logit tie can flip one of the 40-48 images' argmax, no more
        assert compiled["acc"] == pytest.approx(eager["acc"], abs=1 / 40 + 1e-9)
