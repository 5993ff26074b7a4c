"""Where training and evaluation run: `train.device`, `train.amp` and `train.channels_last` as torch settings."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from unitgrad.errors import UnitgradError


def resolve_device(name: str, index: int = 0) -> torch.device:
    """`train.device` (auto | cpu | cuda) as a torch device; cuda uses device `index` (torchrun's local rank)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UnitgradError("train.device is cuda but no CUDA device is available: set train.device: auto")
        return torch.device("cuda", index)
    if name != "cpu":
        raise UnitgradError(f"train.device is {name!r}: choose one of auto, cpu, cuda")
    return torch.device("cpu")


def autocast(device: torch.device, amp: str) -> Callable[[], AbstractContextManager]:
    """A factory of bf16 autocast contexts when `amp` is bf16 on CUDA; of disabled ones otherwise."""
    return functools.partial(
        torch.autocast, device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and amp == "bf16"
    )


def uses_channels_last(device: torch.device, channels_last: bool) -> bool:
    """channels_last is the faster convolution layout on CUDA; on CPU it is not used."""
    return channels_last and device.type == "cuda"
