"""Checkpoints and RNG state: what makes a killed run resume bit-identical on CPU.

A checkpoint (weights, optimizer, scheduler, RNG states, metric history) is written atomically after
every epoch and reused only when its format and config hash match.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unitgrad.io import write_torch

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout changes: older checkpoints then start fresh


@contextlib.contextmanager
def determinism(device: torch.device) -> Iterator[None]:
    """Deterministic kernels on CPU (bit-identical resume); cuDNN autotuning on CUDA (speed over bits)."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also every CUDA device


def rng_states(device: torch.device) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],  # plain types: loadable with weights_only
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and states["cuda"] is not None:
        torch.cuda.set_rng_state(states["cuda"], device)
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])


def read_checkpoint(path: Path, config_hash: str, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The checkpoint at `path` if it was made under `config_hash` by this format; None (start fresh) otherwise."""
    if not path.is_file():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        log(f"checkpoint {path} is unreadable ({exc.__class__.__name__}): starting fresh")
        return None
    if checkpoint.get("format") != CHECKPOINT_FORMAT or checkpoint.get("config_hash") != config_hash:
        log(f"checkpoint {path} was made with another config: starting fresh")
        return None
    return checkpoint


def write_checkpoint(path: Path, config_hash: str, epoch: int, history: list, elapsed_s: float, state: dict) -> None:
    """Atomically write the state after `epoch` epochs (`state`: the trainer's model/optimizer/scheduler/rng)."""
    record = {
        "format": CHECKPOINT_FORMAT,
        "config_hash": config_hash,
        "epoch": epoch,
        "history": history,
        "elapsed_s": elapsed_s,
        **state,
    }
    write_torch(path, record)
