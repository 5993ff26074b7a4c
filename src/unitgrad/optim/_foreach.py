"""foreach helpers of the wrappers: buckets of parameters and the tensor arithmetic on them.

All tensor work uses `torch._foreach_*` ops on buckets of parameters that share a param group, device and
dtype; nothing reads a value back to the host.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from unitgrad.errors import UnitgradError

# torch optimizers with a fused implementation of the same update (equal to the default one up to rounding)
_FUSABLE = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)


class Bucket:
    """Parameters of one param group on one device with one dtype: the unit every foreach op runs on."""

    __slots__ = ("group", "params")

    def __init__(self, group: dict[str, Any], params: list[Tensor]) -> None:
        self.group = group
        self.params = params

    @property
    def grads(self) -> list[Tensor]:
        return [p.grad for p in self.params]  # type: ignore[misc]


def buckets(param_groups: list[dict[str, Any]], keep: Callable[[Tensor], bool]) -> list[Bucket]:
    """Split the kept parameters of every group by (device, dtype) so foreach ops take their fast path."""
    out = []
    for group in param_groups:
        split: dict[tuple[torch.device, torch.dtype], list[Tensor]] = defaultdict(list)
        for p in group["params"]:
            if keep(p):
                split[(p.device, p.dtype)].append(p)
        out += [Bucket(group, params) for params in split.values()]
    return out


def has_grad(p: Tensor) -> bool:
    if p.grad is not None and p.grad.is_sparse:
        raise UnitgradError("sparse gradients are not supported by unitgrad.optim: use dense embeddings")
    return p.grad is not None


def fused_supported(base_cls: type[torch.optim.Optimizer], params: list[Any]) -> bool:
    """True when `base_cls` is torch's SGD/Adam/AdamW and every parameter is a floating-point CPU or CUDA tensor."""
    return base_cls in _FUSABLE and all(
        isinstance(p, Tensor) and p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
    )


def abs_into(out: list[Tensor], tensors: list[Tensor]) -> None:
    """out ← |tensors| element-wise, into existing buffers."""
    # foreach ops are a loop over tensors on CPU, so per-tensor `out=` saves a pass; on an accelerator a
    # kernel launch per tensor costs more than the extra pass of the multi-tensor kernels.
    if tensors[0].device.type == "cpu":
        for tensor, buffer in zip(tensors, out):
            torch.abs(tensor, out=buffer)
    else:
        torch._foreach_copy_(out, tensors)
        torch._foreach_abs_(out)


def add_scaled_(tensors: list[Tensor], others: list[Tensor], scale: Tensor) -> None:
    """tensors ← tensors + scale·others for a 0-dim `scale`, without reading it on the host; `others` is consumed."""
    # One pass on CPU; on an accelerator a broadcast `scale` would leave the multi-tensor kernels' fast path.
    if tensors[0].device.type == "cpu":
        torch._foreach_addcmul_(tensors, others, [scale] * len(tensors))
    else:
        torch._foreach_mul_(others, scale)
        torch._foreach_add_(tensors, others)


def global_norm(tensor_lists: list[list[Tensor]]) -> Tensor:
    """‖all tensors concatenated‖₂ as a 0-dim tensor, accumulated in float32 (float64 for float64 input)."""
    partial = []
    for tensors in tensor_lists:
        acc = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
        partial.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors, 2, dtype=acc))))
    if len(partial) == 1:
        return partial[0]
    device, dtype = (
        partial[0].device,
        max((t.dtype for t in partial), key=lambda d: d.itemsize),
    )
    return torch.linalg.vector_norm(torch.stack([t.to(device, dtype) for t in partial]))
