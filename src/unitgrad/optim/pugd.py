"""PUGD (arXiv 2110.00199; USAM in v1), following the official code.

e = ρ·(|w|⊙g)/‖|w|⊙g‖; the gradients are *not* zeroed, so the second backward at w + e accumulates
G = g + g*; w is restored and the base optimizer steps with G/‖G‖ (SGD's weight decay and momentum
act after the normalisation). ρ is the paper's γ, the radius of the perturbation in unit space.
The same update as a plain loop over parameters: `unitgrad.optim.reference.PUGD`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from unitgrad.optim._base import _SCRATCH, TwoPassOptimizer, check_nonnegative
from unitgrad.optim._foreach import Bucket, abs_into


class PUGD(TwoPassOptimizer):
    """Perturbated unit gradient descent; `rho` may also be set per param group."""

    zero_grad_between_passes = False

    def __init__(
        self,
        params: Iterable[Any],
        base_cls: type[torch.optim.Optimizer],
        rho: float = 1.0,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(params, base_cls, {"rho": check_nonnegative("rho", rho)}, base_kwargs)

    def _direction(self, bucket: Bucket) -> tuple[list[Tensor], list[Tensor] | None]:
        # not in g: the second backward accumulates into it
        direction = self._buffers(bucket, _SCRATCH)
        abs_into(direction, bucket.params)
        torch._foreach_mul_(direction, bucket.grads)
        return direction, None

    def _prepare_step(self) -> None:
        self._normalise_grads()
