"""Data-parallel training with 2 gloo processes on CPU: one run, one set of outputs, identical replicas."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from fixtures.tiny_cifar import tiny_cifar, tiny_source

from unitgrad.data import CIFAR_MEAN, CIFAR_STD, DeviceLoader
from unitgrad.models import create_model
from unitgrad.train import cli as train_cli
from unitgrad.train import data as train_data
from unitgrad.train import fit

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
RUN = "main/cifar10/cifar_resnet8/pugd/noise0/seed0"


def tiny_params(path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["loader"]["train_per_class"] = 4
    params["train"]["monitor_per_class"] = None
    params["train"].update(epochs=2, batch_size=8, warmup_epochs=0.5, device="cpu")
    path.write_text(yaml.safe_dump(params))


def _worker(rank, port, tmp, optimizer):
    """One process as torchrun starts it: its rank in the environment, then the `unitgrad train` CLI."""
    rendezvous = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), **rendezvous)
    torch.set_num_threads(1)
    train_data.load_cifar, train_data.source_of = tiny_cifar, tiny_source
    created = []
    make = fit.create_model
    fit.create_model = lambda *args, **kwargs: created.append(make(*args, **kwargs)) or created[-1]
    run = f"--study main --dataset cifar10 --model cifar_resnet8 --optimizer {optimizer} --seed 0".split()
    argv = [*run, "--out", f"{tmp}/runs", "--params", f"{tmp}/params.yaml"]
    assert train_cli.main(argv) == 0
    assert not dist.is_initialized()  # the CLI left the process group it joined
    state = {k: v.detach().clone() for k, v in created[0].state_dict().items()}
    torch.save(state, Path(tmp) / f"replica{rank}.pt")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_torchrun_style_cli_trains_one_run_on_two_gloo_processes(tmp_path, capfd):
    tiny_params(tmp_path / "params.yaml")
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), "pugd"), nprocs=WORLD, join=True)
    assert capfd.readouterr().out.count("wrote ") == 1  # rank 0 alone reports (and writes)
    replicas = [torch.load(tmp_path / f"replica{r}.pt", weights_only=True) for r in range(WORLD)]
    first, second = replicas
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)

    out = tmp_path / "runs" / RUN / "train"
    written = ["checkpoint.pt", "dvclive", "labels.npz", "model.pt", "model_best.pt", "run.json"]
    assert sorted(p.name for p in out.iterdir()) == written
    saved = torch.load(out / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(saved[k], first[k]) for k in first)
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == WORLD
    for name in ("train/loss.tsv", "test/acc.tsv"):
        rows = (out / "dvclive" / "plots" / "metrics" / name).read_text().splitlines()[1:]
        assert [int(row.split("\t")[0]) for row in rows] == [0, 1]  # written once, by rank 0
    # Each rank scores its shard of the test set with rank 0's BN statistics; the sums equal one full pass.
    model = create_model("cifar_resnet8", 10).eval()
    model.load_state_dict(saved)
    _, _, x_te, y_te, _ = tiny_cifar("cifar10", None)
    loader = DeviceLoader(x_te, y_te, len(x_te), "cpu", CIFAR_MEAN["cifar10"], CIFAR_STD["cifar10"], train=False)
    x, y = next(iter(loader))
    with torch.no_grad():
        logits = model(x)
    test = json.loads((out / "dvclive" / "metrics.json").read_text())["test"]
    assert test["acc"] == (logits.argmax(1) == y).double().mean().item()
    assert test["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
