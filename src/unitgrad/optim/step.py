"""`two_pass_step`: one optimizer step on a batch, with m-sharpness (each chunk of m images perturbs on its own).

m-sharpness (SAM, Foret et al. 2021, Sec. 4.1): SAM's CIFAR numbers come from 8 accelerators that each
perturbed w with the gradient of their own 32 images and averaged the gradients taken there. On one device
the batch is split into chunks of m images; chunk i takes its gradient g_i at w, its own e_i, and its gradient
g*_i at w + e_i; the update uses mean_i g*_i (SAM, ASAM) or mean_i (g_i + g*_i) (PUGD, whose gradients are not
zeroed between the passes), as a DDP run with one replica per chunk does. m = batch is the unchunked step.
Under DDP the chunks split each process's own batch; every chunk's second pass is all-reduced.
BatchNorm normalises each chunk by its own statistics, as each replica does; its running statistics take one
update per chunk (batch/m per step) where each replica of a DDP run would keep its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from unitgrad.errors import UnitgradError
from unitgrad.optim._base import TwoPassOptimizer, WrappedOptimizer
from unitgrad.optim.bn import bn_update_disabled
from unitgrad.optim.ddp import first_pass_no_sync


def method_name(optimizer: torch.optim.Optimizer) -> str:
    """The `optim.<name>` key of `optimizer`: its wrapper's name ("sam", "pugd", ...), or "sgd" for a plain one."""
    return type(optimizer).__name__.lower() if isinstance(optimizer, WrappedOptimizer) else "sgd"


def chunk_size(name: str, m: Any, batch: int) -> int:
    """The chunk size for optimizer `name` on a batch of `batch`: `m`, or the whole batch when m is None.

    UnitgradError naming `optim.<name>.m` unless m is a positive integer that divides the batch.
    """
    if m is None:
        return batch
    if isinstance(m, bool) or not isinstance(m, int) or m <= 0 or batch % m:
        raise UnitgradError(
            f"optim.{name}.m must be a positive integer that divides the per-process batch of {batch}, got {m!r}: "
            f"set optim.{name}.m to a divisor of {batch} (or null for the whole batch)"
        )
    return m


def two_pass_step(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    m: int | None = None,
    bn_first_pass_only: bool = True,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of `optimizer` on (x, y): (loss at w, logits at w, norm of the gradient at w), all on the device.

    Two-pass optimizers (SAM, ASAM, PUGD) perturb per chunk of `m` images (None: the whole batch, the plain
    two-pass step); one-pass ones (SGD, UGD) take `loss.backward(); step()` and accept no m. The first pass runs
    under `first_pass_no_sync` (a DDP model, compiled or not, keeps its first-pass gradient local). With
    `bn_first_pass_only`, BatchNorm running statistics come from the first pass (of every chunk) only.
    `autocast` is entered around each forward. The loss is the mean of the chunks' losses, the logits are the
    chunks' concatenated, the gradient norm is the mean over chunks of ‖g_i‖ (as a DDP run's mean over replicas
    of its local first-pass norm); for m = batch all three are those of the whole batch.
    """
    name = method_name(optimizer)

    def forward_backward(inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        with autocast():
            logits = model(inputs)
            loss = loss_fn(logits, targets)
        loss.backward()
        return loss, logits

    if not isinstance(optimizer, TwoPassOptimizer):
        if m is not None:
            raise UnitgradError(f"optim.{name}.m is only for two-pass methods (sam, asam, pugd): remove it")
        optimizer.zero_grad(set_to_none=True)
        loss, logits = forward_backward(x, y)
        grad_norm = _grad_norm(model)
        optimizer.step()
        return loss.detach().float(), logits.detach(), grad_norm

    size = chunk_size(name, m, len(x))
    second_pass_context = (lambda: bn_update_disabled(model)) if bn_first_pass_only else contextlib.nullcontext
    if size == len(x):
        optimizer.zero_grad(set_to_none=True)
        with first_pass_no_sync(model):
            loss, logits = forward_backward(x, y)
        grad_norm = _grad_norm(model)

        def closure() -> Tensor:
            with second_pass_context():
                return forward_backward(x, y)[0]

        optimizer.step(closure)
        return loss.detach().float(), logits.detach(), grad_norm

    losses, logits, norms = [], [], []
    for inputs, targets in zip(x.split(size), y.split(size)):
        optimizer.zero_grad(set_to_none=True)
        with first_pass_no_sync(model):
            loss, chunk_logits = forward_backward(inputs, targets)
        losses.append(loss.detach())
        logits.append(chunk_logits.detach())
        norms.append(_grad_norm(model))
        optimizer.first_step()
        with second_pass_context():
            forward_backward(inputs, targets)
        optimizer.accumulate_chunk(size / len(x))
    optimizer.accumulated_step()
    return torch.stack(losses).mean().float(), torch.cat(logits), torch.stack(norms).mean()


def _grad_norm(model: nn.Module) -> Tensor:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
