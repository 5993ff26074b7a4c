"""`train_step`: one optimizer step on a batch, the one training step of the trainer, the benches and the tests.

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
from unitgrad.optim._base import WrappedOptimizer
from unitgrad.optim.bn import bn_update_disabled
from unitgrad.optim.ddp import first_pass_no_sync


def is_two_pass(optimizer: Any) -> bool:
    """True for SAM, ASAM and PUGD (and the reference loops): a second forward/backward at the perturbed weights."""
    return callable(getattr(optimizer, "first_step", None))


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


def train_step(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    m: int | None = None,
    bn_first_pass_only: bool = True,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of `optimizer` on (x, y): (loss at w, logits at w, norm of the gradient at w), all on the device.

    One-pass optimizers (SGD, UGD) take `loss.backward(); step()` and accept no m. Two-pass ones (SAM, ASAM,
    PUGD) perturb per chunk of `m` images (None: the whole batch): the first pass under `first_pass_no_sync` (a
    DDP model, compiled or not, keeps its first-pass gradient local), the second with BatchNorm running
    statistics frozen when `bn_first_pass_only`. `autocast` is entered around each forward; with fp16, pass
    `scaler` (losses are scaled, the step is skipped on an overflow in any pass; call `scaler.update()` after).
    The loss is the mean of the chunks' losses, the logits are the chunks' concatenated, the gradient norm is the
    mean over chunks of ‖g_i‖ (as a DDP run's mean over replicas of its local first-pass norm); for m = batch
    all three are those of the whole batch.
    """

    def forward_backward(inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        with autocast():
            logits = model(inputs)
            loss = loss_fn(logits, targets)
        (loss if scaler is None else scaler.scale(loss)).backward()
        return loss.detach(), logits.detach()

    if not is_two_pass(optimizer):
        if m is not None:
            raise UnitgradError(
                f"optim.{method_name(optimizer)}.m is only for two-pass methods (sam, asam, pugd): remove it"
            )
        optimizer.zero_grad(set_to_none=True)
        loss, logits = forward_backward(x, y)
        grad_norm = _grad_norm(model)
        optimizer.step() if scaler is None else scaler.step(optimizer)
        return loss.float(), logits, grad_norm

    size = chunk_size(method_name(optimizer), m, len(x))
    second_pass = (lambda: bn_update_disabled(model)) if bn_first_pass_only else contextlib.nullcontext
    losses, logits, norms, mean_grads = [], [], [], {}
    for inputs, targets in zip(x.split(size), y.split(size)):
        optimizer.zero_grad(set_to_none=True)
        with first_pass_no_sync(model):
            loss, chunk_logits = forward_backward(inputs, targets)  # g at w
        losses.append(loss)
        logits.append(chunk_logits)
        norms.append(_grad_norm(model))
        optimizer.first_step()  # w -> w + e
        with second_pass():
            forward_backward(inputs, targets)  # SAM/ASAM: g* at w + e; PUGD accumulates g + g*
        if size < len(x):
            optimizer.restore()
            _add_grads(mean_grads, model, size / len(x))
    for p, grad in mean_grads.items():
        p.grad = grad
    # restore w (if not yet), base step; no scaler argument without fp16, as davda54/sam's second_step takes none
    optimizer.second_step() if scaler is None else optimizer.second_step(scaler)
    return torch.stack(losses).mean().float(), torch.cat(logits), torch.stack(norms).mean()


def _add_grads(mean_grads: dict[Tensor, Tensor], model: nn.Module, weight: float) -> None:
    """mean_grads[p] += weight × p.grad for every parameter with a gradient; the first chunk's gradient
    tensors become the sums (the next chunk's zero_grad lets go of them), so nothing is allocated."""
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is None:
                continue
            if p in mean_grads:
                mean_grads[p].add_(p.grad, alpha=weight)
            else:
                mean_grads[p] = p.grad.mul_(weight)


def _grad_norm(model: nn.Module) -> Tensor:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
