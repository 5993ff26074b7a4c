"""The speed baseline computes unitgrad.optim's update, and bench/run.py parses and writes its summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import harness
import run

import unitgrad.optim as ugo

UNITGRAD = {"sam": ugo.SAM, "asam": ugo.ASAM, "pugd": ugo.PUGD}


def _loss(params: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    # non-quadratic, so the gradient at w + e differs from the one at w in direction as well as size
    return sum(
        torch.sin(p * (i + 1)).sum() + torch.cosh(p.flatten()[: len(target)] - target).log().sum()
        for i, p in enumerate(params)
    )


@pytest.mark.parametrize("method", ["sam", "asam", "pugd"])
@pytest.mark.parametrize("two_groups", [False, True])
@pytest.mark.parametrize("baseline", sorted(harness.BASELINES))
def test_loop_reference_matches_unitgrad(method, two_groups, baseline):
    torch.manual_seed(0)
    init = [
        torch.randn(3, 4, dtype=torch.float64),
        torch.randn(5, dtype=torch.float64),
        torch.zeros(2, dtype=torch.float64),
    ]  # a zero weight: |w| = 0 must not break PUGD/ASAM
    target = torch.randn(2, dtype=torch.float64)
    kwargs = {**harness.METHOD_KWARGS[method], **harness.BASE_KWARGS}
    final = {}
    for name, cls in (("unitgrad", UNITGRAD[method]), ("loop", harness.BASELINES[baseline][method])):
        params = [w.clone().requires_grad_() for w in init]
        groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.03}] if two_groups else params
        opt = cls(groups, torch.optim.SGD, **kwargs)
        for _ in range(4):
            opt.zero_grad()
            _loss(params, target).backward()
            opt.first_step()
            _loss(params, target).backward()
            opt.second_step()
        final[name] = params
    for a, b, w in zip(final["unitgrad"], final["loop"], init):
        assert not torch.equal(a, w)  # the steps moved the weights, so the comparison means something
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_optimizer_work_fills_gradients_like_backward():
    params = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    params[0].grad = torch.ones(2)
    harness.accumulate_grads(params, [torch.full((2,), 2.0), torch.full((3,), 5.0)])
    assert params[0].grad.tolist() == [3.0, 3.0] and params[1].grad.tolist() == [5.0] * 3


def test_parse_args_defaults_and_bad_device():
    args = run.parse_args(["--quick"])
    assert args.quick and args.device == "cpu" and args.out == run.REPO / "results" / "bench"
    with pytest.raises(SystemExit):
        run.parse_args(["--device", "tpu"])


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory):
    """The bench's smallest configuration, run once: its output folder."""
    out = tmp_path_factory.mktemp("bench")
    tiny = run.Config(
        optimizer_models=("cifar_resnet8",),
        optimizer_repeats=1,
        step_model="cifar_resnet8",
        step_batch=4,
        step_repeats=1,
        loader_images=64,
        loader_batch=16,
        loader_workers=0,
        loader_repeats=1,
        pipeline=False,
    )
    run.run(tiny, torch.device("cpu"), out, "test")
    return out


@pytest.mark.slow
def test_run_writes_summary_and_markdown(bench_out):
    tmp_path = bench_out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"optimizer_speedup_vs_loop", "two_pass_over_sgd", "loader_speedup_vs_dataloader"} <= summary.keys()
    work = summary["optimizer_speedup_vs_loop"]["by_model"]["cifar_resnet8"]
    for method in ("sam", "asam", "pugd"):
        assert work[method]["unitgrad_s"] > 0 and summary["two_pass_over_sgd"][method]["ratio"] > 0
    assert summary["optimizer_speedup_vs_loop"]["headline_pugd_cifar_resnet18"] is None  # not measured here
    assert summary["loader_speedup_vs_dataloader"]["images_per_epoch"] == {"device_loader": 64, "torch_dataloader": 64}
    assert summary["loop_reference_check"].keys() == {"loop", "lean_loop"}
    assert max(d for by_method in summary["loop_reference_check"].values() for d in by_method.values()) <= 1e-10
    markdown = (tmp_path / "cpu.md").read_text()
    assert "| cifar_resnet8 |" in markdown and "not measured" in markdown


@pytest.mark.slow
def test_a_fixed_summary_renders_its_speed_ups(bench_out):
    """Known step times (ms, first / second pass per repeat) give a known table row."""
    times = {
        "unitgrad": [(1.0e-3, 1.0e-3), (0.9e-3, 1.2e-3)],  # best step 2.0 ms; best first 0.9, best second 1.0
        "loop": [(3.0e-3, 3.5e-3), (3.5e-3, 3.0e-3)],  # best step 6.5 ms: 3.25× unitgrad
        "lean_loop": [(2.0e-3, 3.0e-3)],  # 5.0 ms: 2.50×
    }
    work = run.work_summary(times)
    assert (work["unitgrad_s"], work["loop_s"], work["lean_loop_s"]) == pytest.approx((2.0e-3, 6.5e-3, 5.0e-3))
    summary = json.loads((bench_out / "summary.json").read_text())
    by_model = summary["optimizer_speedup_vs_loop"]["by_model"]["cifar_resnet8"]
    by_model.update({"parameters": 78_042, "pugd": work})
    markdown = run.render_markdown(summary)
    assert "| cifar_resnet8 | 0.1 M | pugd | 2.0 | 0.9 / 1.0 | 6.5 | 3.0 / 3.0 | 3.25× | 5.0 | 2.50× |" in markdown
