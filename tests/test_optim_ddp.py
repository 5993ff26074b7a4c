"""DDP on gloo, 2 CPU processes: per-replica perturbation, synchronised second pass, same update as a reference."""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.parallel import DistributedDataParallel

from unitgrad.optim import bn_update_disabled, create_optimizer
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
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    x, y = shards()
    results = {}
    for method, cfg in METHODS.items():
        model = DistributedDataParallel(make_model())
        opt = create_optimizer(method, model.parameters(), **cfg, **SGD)
        for t in range(STEPS):
            opt.zero_grad()
            with first_pass_no_sync(model):
                F.cross_entropy(model(x[t, rank]), y[t, rank]).backward()
            opt.first_step()
            with bn_update_disabled(model):
                F.cross_entropy(model(x[t, rank]), y[t, rank]).backward()
            opt.second_step()
        results[method] = [p.detach().clone() for p in model.parameters()]
    torch.save(results, f"{out_path}.{rank}")
    dist.destroy_process_group()


def reference(method, cfg):
    """Each replica perturbs with its own gradient; the second-pass gradients are averaged; SGD by hand."""
    model = make_model()
    names = [n for n, _ in model.named_parameters()]
    w = [p.detach().clone() for p in model.parameters()]
    x, y = shards()
    buf = None

    def grad(weights, t, r):
        params = [v.clone().requires_grad_() for v in weights]
        loss = F.cross_entropy(
            functional_call(model, dict(zip(names, params)), (x[t, r],)), y[t, r]
        )
        return torch.autograd.grad(loss, params)

    def norm(tensors):
        return torch.sqrt(sum((v * v).sum() for v in tensors))

    for t in range(STEPS):
        second = []
        for r in range(WORLD):
            g = grad(w, t, r)
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
            g_star = grad([wi + ei for wi, ei in zip(w, e)], t, r)
            second.append(
                [gs + gi for gs, gi in zip(g_star, g)]
                if method == "pugd"
                else list(g_star)
            )
        synced = [(a + b) / WORLD for a, b in zip(*second)]
        if method == "pugd":
            synced = [s / (norm(synced) + EPS) for s in synced]
        d_p = [s + SGD["weight_decay"] * wi for s, wi in zip(synced, w)]
        buf = (
            d_p
            if buf is None
            else [SGD["momentum"] * b + dp for b, dp in zip(buf, d_p)]
        )
        w = [wi - SGD["lr"] * b for wi, b in zip(w, buf)]
    return w


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_two_replicas_match_single_process_reference(tmp_path):
    out_path = tmp_path / "params"
    mp.spawn(_worker, args=(_free_port(), str(out_path)), nprocs=WORLD, join=True)
    replicas = [torch.load(f"{out_path}.{r}", weights_only=True) for r in range(WORLD)]
    for method, cfg in METHODS.items():
        expected = reference(method, cfg)
        for params in replicas:
            for got, want in zip(params[method], expected):
                torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert all(
        torch.equal(a, b) for a, b in zip(replicas[0]["pugd"], replicas[1]["pugd"])
    )
