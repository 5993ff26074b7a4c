"""Data-parallel processes from torchrun's environment: one process per device, rank 0 alone writes files.

`torchrun --nproc_per_node N -m unitgrad train …` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; `session` joins the process group (NCCL on CUDA, gloo on CPU) for the length of the run.
Code that already initialised a process group itself (tests, notebooks) is used as it is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Process:
    """This process's place in the group; the defaults describe a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def local_rank() -> int:
    """The device index torchrun gave this process (0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def current() -> Process:
    """This process's rank and world size from the initialised process group, else a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return Process()
    return Process(dist.get_rank(), dist.get_world_size(), local_rank())


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[Process]:
    """Inside, this process belongs to torchrun's group (if launched by torchrun with WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield current()
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """`tensor` reduced in place over every process ("sum" or "min"); unchanged in a single process."""
    if current().world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MIN)
    return tensor


def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process.

    Replicas normalise by their own shard's batches, so their running statistics drift apart;
    evaluating and saving rank 0's makes every process hold the same model.
    """
    if current().world_size > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
