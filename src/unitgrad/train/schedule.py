"""The LR schedule (linear warmup, then cosine to 0, per step) and the weight-decay parameter groups."""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import nn


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR factor at optimizer step `step` (0-based): linear ramp to 1 over `warmup_steps`, then cosine to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def lr_scheduler(
    optimizer: torch.optim.Optimizer, warmup_epochs: float, epochs: int, steps_per_epoch: int, update: str = "step"
) -> torch.optim.lr_scheduler.LambdaLR:
    """`warmup_cosine`, stepped once per optimizer step: over `epochs` × `steps_per_epoch` steps (update "step"),
    or over `epochs` with the factor held through each epoch (update "epoch", like CosineAnnealingLR stepped
    per epoch in the official PUGD code)."""
    if update == "epoch":
        warmup = math.ceil(warmup_epochs)  # whole epochs: the factor changes only between epochs

        def schedule(step: int) -> float:
            return warmup_cosine(step // steps_per_epoch, warmup, epochs)

    else:
        schedule = functools.partial(
            warmup_cosine, warmup_steps=round(warmup_epochs * steps_per_epoch), total_steps=epochs * steps_per_epoch
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def param_groups(model: nn.Module, no_weight_decay_bn_bias: bool) -> list[dict[str, Any]]:
    """One group of trainable (name, parameter) pairs, or two when BatchNorm weights and biases (1-D tensors)
    skip decay. The names let ASAM's official rule find the parameters named *weight*."""
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not no_weight_decay_bn_bias:
        return [{"params": params}]
    return [
        {"params": [(name, p) for name, p in params if p.ndim > 1]},
        {"params": [(name, p) for name, p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
