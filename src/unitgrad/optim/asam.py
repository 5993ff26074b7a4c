"""ASAM (Kwon et al., 2021): e = ρ·T²g/‖Tg‖ with T = |w| + η element-wise; otherwise as SAM."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from unitgrad.optim._base import (
    _SCRATCH,
    Bucket,
    TwoPassOptimizer,
    abs_into,
    check_nonnegative,
)


class ASAM(TwoPassOptimizer):
    """Adaptive SAM: the perturbation is scaled per weight by T = |w| + η; `rho`, `eta` may be set per group."""

    def __init__(
        self,
        params: Iterable[Any],
        base_cls: type[torch.optim.Optimizer],
        rho: float = 0.5,
        eta: float = 0.01,
        **base_kwargs: Any,
    ) -> None:
        own = {
            "rho": check_nonnegative("rho", rho),
            "eta": check_nonnegative("eta", eta),
        }
        super().__init__(params, base_cls, own, base_kwargs)

    def _direction(self, bucket: Bucket) -> tuple[list[Tensor], list[Tensor] | None]:
        scale = self._buffers(bucket, _SCRATCH)
        abs_into(scale, bucket.params)
        torch._foreach_add_(scale, bucket.group["eta"])
        grads = bucket.grads
        # g is dropped after first_step: it can hold d = Tg
        torch._foreach_mul_(grads, scale)
        return grads, scale  # e ∝ T·d = T²g
