"""Measurements shared by `bench/run.py` (CPU) and `bench/gpu_check.py` (lent GPU).

Every timing here is of one step; callers repeat and keep the minimum. `clock` is either wall time
(`time.perf_counter`, after a device synchronise) or this process's CPU time (`time.process_time`),
which on a shared CPU leaves out the time spent waiting for a core; with one torch thread it is
the wall time the same work takes on an idle machine.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import time
from collections.abc import Callable

import torch
from lean_loop import LEAN_LOOP_OPTIMIZERS

from unitgrad.optim import create_optimizer, reference, train_step

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
TWO_PASS_METHODS = ("sam", "asam", "pugd")
# The training recipe of the paper scale (params.paper.yaml); timing does not depend on the values.
BASE_KWARGS = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
METHOD_KWARGS = {"sam": {"rho": 0.05}, "asam": {"rho": 0.5, "eta": 0.01}, "pugd": {"rho": 1.0}}
BASELINES = {"loop": reference.OPTIMIZERS, "lean_loop": LEAN_LOOP_OPTIMIZERS}
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)


def keep_freed_memory() -> str:
    """Tell glibc's malloc to keep freed memory for reuse; returns the allocator setting now in force.

    An implementation that allocates temporaries every step (the loop baselines) is otherwise charged
    for page faults whenever malloc hands large blocks back to the kernel and asks for them again, and
    how often it does depends on the process's history: the same loop took 28-45 ms of CPU time on
    ResNet-18's parameters in different processes here, and 30-32 ms with memory kept. Kept memory
    spares the allocating baselines most of that; unitgrad allocates nothing after its first step.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        kept = libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 1 << 40) == 1
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to set
        kept = False
    return "glibc malloc keeps freed memory (mallopt)" if kept else "default"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_optimizer(impl: str, method: str, params: list[torch.Tensor]):
    """`impl` "unitgrad": unitgrad.optim as training builds it (method "sgd" too); "loop" or "lean_loop": a baseline."""
    if impl == "unitgrad":
        return create_optimizer(method, params, base="sgd", **METHOD_KWARGS.get(method, {}), **BASE_KWARGS)
    if impl in BASELINES:
        # foreach=False: torch's own per-parameter loop, also on CUDA where foreach is the default
        loop_sgd = functools.partial(torch.optim.SGD, foreach=False)
        return BASELINES[impl][method](params, loop_sgd, **METHOD_KWARGS[method], **BASE_KWARGS)
    raise ValueError(f"unknown implementation {impl!r}")


def accumulate_grads(params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
    """What `backward()` does to `.grad`: create it if absent, otherwise add to it."""
    with torch.no_grad():
        for p, g in zip(params, grads):
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.add_(g)


class OptimizerWork:
    """One optimizer's step with gradients pre-filled: only first_step + second_step are timed.

    The gradient at w (g) and at w+e (g*) are fixed random tensors; filling them in stands in
    for the two backward passes and is not timed.
    """

    def __init__(self, impl, method, shapes: list[torch.Size], device, dtype, clock=time.perf_counter, seed=0):
        self.clock = clock
        gen = torch.Generator().manual_seed(seed)
        rand = lambda s: torch.randn(s, generator=gen, dtype=dtype).to(device)
        self.params = [rand(s).requires_grad_() for s in shapes]
        self.grad_at_w = [rand(s) * 1e-2 for s in shapes]
        self.grad_at_perturbed = [rand(s) * 1e-2 for s in shapes]
        self.optimizer = make_optimizer(impl, method, self.params)
        self.device = torch.device(device)

    def device_seconds(self, sleep_cycles: int = 100_000_000) -> tuple[float, float] | None:
        """(first_step, second_step) seconds of GPU execution alone, as in a training step that keeps the queue full.

        A sleep kernel holds the GPU while the host enqueues both steps, so the CUDA events around them
        time the kernels back to back, without the host's Python and launch time that `step_seconds`
        includes. None when the host had not finished enqueuing before the sleep ended.
        """
        for p in self.params:
            p.grad = None
        accumulate_grads(self.params, self.grad_at_w)
        synchronize(self.device)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        torch.cuda._sleep(sleep_cycles)
        events[0].record()
        self.optimizer.first_step()
        events[1].record()
        accumulate_grads(self.params, self.grad_at_perturbed)
        events[2].record()
        self.optimizer.second_step()
        events[3].record()
        queue_was_full = not events[0].query()  # the GPU is still asleep: everything above was enqueued in time
        synchronize(self.device)
        if not queue_was_full:
            return None
        return events[0].elapsed_time(events[1]) / 1e3, events[2].elapsed_time(events[3]) / 1e3

    def step_seconds(self) -> tuple[float, float]:
        """(first_step seconds, second_step seconds) of one step."""
        for p in self.params:
            p.grad = None
        accumulate_grads(self.params, self.grad_at_w)
        synchronize(self.device)
        start = self.clock()
        self.optimizer.first_step()
        synchronize(self.device)
        first = self.clock() - start
        accumulate_grads(self.params, self.grad_at_perturbed)
        synchronize(self.device)
        start = self.clock()
        self.optimizer.second_step()
        synchronize(self.device)
        return first, self.clock() - start


def base_step_seconds(shapes, device, dtype, variant: str, steps: int, clock=time.perf_counter) -> list[float]:
    """The SGD base step alone per step, as torch implements it: `variant` "loop", "foreach" or "fused"."""
    params = [torch.randn(s, dtype=dtype, device=device).requires_grad_() for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-2
    implementation = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[variant]
    opt = torch.optim.SGD(params, **implementation, **BASE_KWARGS)
    times = []
    for _ in range(steps):
        synchronize(torch.device(device))
        start = clock()
        opt.step()
        synchronize(torch.device(device))
        times.append(clock() - start)
    return times


def check_loop_reference(device="cpu", steps: int = 3, atol: float = 1e-10) -> dict[str, dict[str, float]]:
    """Max |w_unitgrad - w_baseline| per baseline and method after `steps` two-pass steps on a small float64 net.

    Raises AssertionError when they differ by more than `atol`: a baseline that computes a
    different update would make the speed comparison meaningless.
    """
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 5)
    ).to(device=device, dtype=torch.float64)
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64, device=device)
    y = torch.randint(0, 5, (6,), device=device)
    diffs: dict[str, dict[str, float]] = {baseline: {} for baseline in BASELINES}
    for method in TWO_PASS_METHODS:
        nets = {impl: copy.deepcopy(net) for impl in ("unitgrad", *BASELINES)}
        for impl, model in nets.items():
            opt = make_optimizer(impl, method, list(model.parameters()))
            for _ in range(steps):
                train_step(opt, model, torch.nn.functional.cross_entropy, x, y, bn_first_pass_only=False)
        for baseline in BASELINES:
            diff = max(
                (a - b).abs().max().item() for a, b in zip(nets["unitgrad"].parameters(), nets[baseline].parameters())
            )
            assert diff <= atol, (
                f"{method}: unitgrad.optim and the {baseline} baseline differ by {diff:.3g} "
                f"(> {atol:g}); the speed baseline must compute the same update"
            )
            diffs[baseline][method] = diff
    return diffs


def format_reference_check(diffs: dict[str, dict[str, float]]) -> str:
    """`check_loop_reference`'s result as one line: "loop: sam 2.8e-17, …; lean_loop: …"."""
    return "; ".join(
        f"{baseline}: " + ", ".join(f"{method} {diff:.1e}" for method, diff in by_method.items())
        for baseline, by_method in diffs.items()
    )
