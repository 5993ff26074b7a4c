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


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX
    (elsewhere bf16 is emulated and slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_amp(device: torch.device, amp: str) -> str:
    """`train.amp` (auto | bf16 | none) on `device` as bf16 or none; auto is bf16 where it is native."""
    if amp == "auto":
        return "bf16" if native_bf16(device) else "none"
    return amp


def autocast(device: torch.device, amp: str) -> Callable[[], AbstractContextManager]:
    """A factory of bf16 autocast contexts on `device` when `amp` resolves to bf16; of disabled ones otherwise."""
    return functools.partial(
        torch.autocast, device.type, dtype=torch.bfloat16, enabled=resolve_amp(device, amp) == "bf16"
    )
