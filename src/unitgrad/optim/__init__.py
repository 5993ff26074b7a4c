"""SAM, ASAM, PUGD and UGD around any torch optimizer, plus a factory and the BatchNorm/DDP/AMP helpers.

`unitgrad.optim.reference` states each update as a plain per-parameter loop; the classes here compute the same
updates with foreach ops on reused buffers.

Usage in your own training loop::

    import torch
    from unitgrad.optim import PUGD, bn_update_disabled

    opt = PUGD(model.parameters(), torch.optim.SGD, rho=1.0, lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)  # drives the base optimizer
    for epoch in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            loss_fn(model(x), y).backward()          # gradient g at w
            opt.first_step()                         # w -> w + e
            with bn_update_disabled(model):          # BN running stats: first pass only
                loss_fn(model(x), y).backward()      # PUGD accumulates g + g*; SAM/ASAM get g* alone
            opt.second_step()                        # restore w, base step
        sched.step()
    # or, after the first backward: opt.step(closure) with closure() doing the second forward + backward

UGD is one pass: `loss.backward(); opt.step()`. `SAM`, `ASAM` and `PUGD` are two-pass (`is_two_pass`).
fp16: `scaler.scale(loss).backward()` in both passes and `opt.second_step(scaler)` (or
`opt.step(closure, scaler=scaler)`), then `scaler.update()`; the whole step is skipped if either pass
overflowed. DDP: run the first pass under `unitgrad.optim.ddp.first_pass_no_sync(model)`.

A training loop can leave all of that to `train_step(opt, model, loss_fn, x, y, m=32)`, the step of unitgrad's
trainer, which also does m-sharpness (each chunk of m images perturbs with its own gradient, then `restore()`;
see `unitgrad.optim.step`). ASAM's `rule="official"` (T only for parameters named
"*weight*", as SamsungLabs/ASAM) takes `model.named_parameters()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from unitgrad.errors import UnitgradError
from unitgrad.optim import reference
from unitgrad.optim._base import TwoPassOptimizer, WrappedOptimizer
from unitgrad.optim._foreach import fused_supported
from unitgrad.optim.asam import ASAM
from unitgrad.optim.bn import bn_update_disabled
from unitgrad.optim.ddp import first_pass_no_sync
from unitgrad.optim.pugd import PUGD
from unitgrad.optim.sam import SAM
from unitgrad.optim.step import chunk_size, is_two_pass, method_name, train_step
from unitgrad.optim.ugd import UGD

__all__ = [
    "ASAM",
    "OPTIMIZERS",
    "PUGD",
    "SAM",
    "UGD",
    "TwoPassOptimizer",
    "WrappedOptimizer",
    "bn_update_disabled",
    "chunk_size",
    "create_optimizer",
    "first_pass_no_sync",
    "is_two_pass",
    "method_name",
    "reference",
    "train_step",
]

# name -> (wrapper class or None for the plain base optimizer, the wrapper's own hyper-parameters)
OPTIMIZERS: dict[str, tuple[type[WrappedOptimizer] | None, tuple[str, ...]]] = {
    "sgd": (None, ()),
    "sam": (SAM, ("rho",)),
    "asam": (ASAM, ("rho", "eta", "rule")),
    "pugd": (PUGD, ("rho",)),
    "ugd": (UGD, ()),
}
BASES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adamw": torch.optim.AdamW,
}


def create_optimizer(
    name: str,
    params: Iterable[Any],
    base: str | type[torch.optim.Optimizer] = "sgd",
    **cfg: Any,
) -> torch.optim.Optimizer:
    """The optimizer `name` over `params`; `cfg` holds rho/eta/rule and the base optimizer's kwargs (lr, ...).

    `params` may be tensors, `model.named_parameters()` or param groups; ASAM's rule "official" needs the names.

    "sgd" is the plain base optimizer (SGD or AdamW, despite the name: it is the no-perturbation baseline).
    The wrappers get torch's fused SGD/AdamW unless `cfg` picks an implementation (fused, foreach).
    """
    if name not in OPTIMIZERS:
        raise UnitgradError(f"unknown optimizer '{name}': choose one of {', '.join(OPTIMIZERS)}")
    if isinstance(base, str):
        if base not in BASES:
            raise UnitgradError(f"unknown base optimizer '{base}': choose one of {', '.join(BASES)}")
        base = BASES[base]
    elif not (isinstance(base, type) and issubclass(base, torch.optim.Optimizer)):
        raise UnitgradError(f"base must be 'sgd', 'adamw' or a torch.optim.Optimizer class, got {base!r}")
    wrapper, own_keys = OPTIMIZERS[name]
    foreign = sorted({"rho", "eta", "rule"}.intersection(cfg).difference(own_keys))
    if foreign:
        raise UnitgradError(f"optimizer '{name}' takes no {', '.join(foreign)}: remove it from optim.{name}")
    # torch steps with a per-parameter loop on CPU (foreach on CUDA); its fused kernel makes the same update
    # (up to rounding) in one pass over memory: SGD on ResNet-18's weights takes 3.7 ms on CPU instead of 9.3.
    # Only for the wrappers, whose second_step keeps GradScaler off torch's fused inf-skip (it leaves
    # uninitialised SGD momentum when the first step is skipped); the plain base is returned as torch builds it.
    # A caller who passes fused, foreach or differentiable keeps that choice.
    chosen = {"fused", "foreach", "differentiable"}.intersection(cfg)
    if wrapper is not None and not chosen and not isinstance(params, torch.Tensor):
        params, tensors = _materialised(params)
        if fused_supported(base, tensors):
            cfg = {**cfg, "fused": True}
    try:
        return base(params, **cfg) if wrapper is None else wrapper(params, base, **cfg)
    except (TypeError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        raise UnitgradError(f"cannot build optimizer '{name}' ({detail}): fix optim.* in params.yaml") from exc


def _materialised(params: Iterable[Any]) -> tuple[list[Any], list[Any]]:
    """`params` (tensors, (name, tensor) pairs or groups) as a list that can be read again, and its parameters."""
    items, tensors = [], []
    for item in params:
        if isinstance(item, dict) and "params" in item:
            group = item["params"]
            group = [group] if isinstance(group, torch.Tensor) else list(group)
            item = {**item, "params": group}
            tensors += item["params"]
        else:
            tensors.append(item)
        items.append(item)
    return items, [t[1] if isinstance(t, tuple) and len(t) == 2 else t for t in tensors]
