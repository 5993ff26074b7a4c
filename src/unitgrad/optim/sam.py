"""SAM (Foret et al., 2021): e = ρ·g/‖g‖; the base optimizer steps with the gradient g* = ∇L(w + e)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from unitgrad.optim._base import TwoPassOptimizer, check_nonnegative
from unitgrad.optim._foreach import Bucket


class SAM(TwoPassOptimizer):
    """Sharpness-aware minimisation around any base optimizer; `rho` may also be set per param group."""

    def __init__(
        self,
        params: Iterable[Any],
        base_cls: type[torch.optim.Optimizer],
        rho: float = 0.05,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(params, base_cls, {"rho": check_nonnegative("rho", rho)}, base_kwargs)

    def _direction(self, bucket: Bucket) -> tuple[list[Tensor], list[Tensor] | None]:
        # g is dropped after first_step: it may be scaled in place
        return bucket.grads, None
