"""DDP on gloo, 2 CPU processes: per-replica perturbation, synchronised second pass, same update as a reference.

m-sharpness: one process stepping on both replicas' images with `train_step(m=16)` makes the update of the
2-process run, and m = 8 (under DDP or on one device) that of 4 replicas perturbing on their own.
"""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.parallel import DistributedDataParallel

from unitgrad.optim import create_optimizer, train_step
from unitgrad.optim.ddp import first_pass_no_sync

WORLD = 2
STEPS = 3
METHODS = {"sam": {"rho": 0.2}, "asam": {"rho": 0.5, "eta": 0.05}, "pugd": {"rho": 0.7}}
SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2}
EPS = 1e-12


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def shards():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(STEPS, WORLD, 16, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (STEPS, WORLD, 16), generator=gen)
    return x, y


def _worker(rank, port, out_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    x, y = shards()
    results = {"compiled_first_pass_local": None}
    probe = DistributedDataParallel(make_model())
    with first_pass_no_sync(torch.compile(probe)):  # the wrapper is unwrapped; nothing is compiled here
        results["compiled_first_pass_local"] = not probe.require_backward_grad_sync
    for method, cfg in METHODS.items():
        model = DistributedDataParallel(make_model())
        opt = create_optimizer(method, model.parameters(), **cfg, **SGD)
        for t in range(STEPS):
            train_step(opt, model, F.cross_entropy, x[t, rank], y[t, rank])
        results[method] = [p.detach().clone() for p in model.parameters()]
        model = DistributedDataParallel(make_model())  # two chunks of 8 per replica: 4 perturbations in all
        opt = create_optimizer(method, model.parameters(), **cfg, **SGD)
        for t in range(STEPS):
            train_step(opt, model, F.cross_entropy, x[t, rank], y[t, rank], m=8)
        results[f"{method}_m8"] = [p.detach().clone() for p in model.parameters()]
    torch.save(results, f"{out_path}.{rank}")
    dist.destroy_process_group()


def reference(method, cfg, chunks=1):
    """Each replica (each of its `chunks`) perturbs with its own gradient; the second-pass gradients are averaged;
    SGD by hand."""
    model = make_model()
    names = [n for n, _ in model.named_parameters()]
    w = [p.detach().clone() for p in model.parameters()]
    x, y = shards()
    buf = None

    def grad(weights, t, r, c):
        params = [v.clone().requires_grad_() for v in weights]
        loss = F.cross_entropy(functional_call(model, dict(zip(names, params)), (x[t, r][c],)), y[t, r][c])
        return torch.autograd.grad(loss, params)

    def norm(tensors):
        return torch.sqrt(sum((v * v).sum() for v in tensors))

    for t in range(STEPS):
        second = []
        for r, c in ((r, c) for r in range(WORLD) for c in torch.arange(16).chunk(chunks)):
            g = grad(w, t, r, c)
            if method == "sam":
                d = g
                e = [cfg["rho"] * gi / (norm(d) + EPS) for gi in g]
            elif method == "asam":
                tw = [wi.abs() + cfg["eta"] for wi in w]
                d = [ti * gi for ti, gi in zip(tw, g)]
                e = [cfg["rho"] * ti * di / (norm(d) + EPS) for ti, di in zip(tw, d)]
            else:
                d = [wi.abs() * gi for wi, gi in zip(w, g)]
                e = [cfg["rho"] * di / (norm(d) + EPS) for di in d]
            g_star = grad([wi + ei for wi, ei in zip(w, e)], t, r, c)
            second.append([gs + gi for gs, gi in zip(g_star, g)] if method == "pugd" else list(g_star))
        synced = [sum(parts) / len(second) for parts in zip(*second)]
        if method == "pugd":
            synced = [s / (norm(synced) + EPS) for s in synced]
        d_p = [s + SGD["weight_decay"] * wi for s, wi in zip(synced, w)]
        buf = d_p if buf is None else [SGD["momentum"] * b + dp for b, dp in zip(buf, d_p)]
        w = [wi - SGD["lr"] * b for wi, b in zip(w, buf)]
    return w


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    """The parameters each of the 2 gloo processes ends with, per method (and per method with m = 8)."""
    out_path = tmp_path_factory.mktemp("ddp") / "params"
    mp.spawn(_worker, args=(_free_port(), str(out_path)), nprocs=WORLD, join=True)
    return [torch.load(f"{out_path}.{r}", weights_only=True) for r in range(WORLD)]


@pytest.mark.slow
def test_ddp_two_replicas_match_single_process_reference(replicas):
    for method, cfg in METHODS.items():
        expected = reference(method, cfg)
        for params in replicas:
            for got, want in zip(params[method], expected):
                torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(replicas[0]["pugd"], replicas[1]["pugd"]))
    assert all(r["compiled_first_pass_local"] for r in replicas)  # first_pass_no_sync sees through torch.compile


@pytest.mark.parametrize("m", [16, 8])
def test_one_device_m_sharpness_matches_ddp_with_per_replica_perturbation(replicas, m):
    """Batch 32 on one device in chunks of m = 16: the 2-process run; m = 8: the 2-process run with m = 8."""
    x, y = shards()
    for method, cfg in METHODS.items():
        model = make_model()
        opt = create_optimizer(method, model.parameters(), **cfg, **SGD)
        for t in range(STEPS):
            train_step(opt, model, F.cross_entropy, x[t].reshape(-1, 5), y[t].reshape(-1), m=m)
        ddp_run = replicas[0][method if m == 16 else f"{method}_m8"]
        for got, want, hand in zip(model.parameters(), ddp_run, reference(method, cfg, chunks=16 // m)):
            torch.testing.assert_close(got.detach(), want, rtol=0, atol=1e-12)
            torch.testing.assert_close(got.detach(), hand, rtol=0, atol=1e-12)
