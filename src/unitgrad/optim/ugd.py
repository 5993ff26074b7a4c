"""UGD: one pass, the base optimizer steps with the unit gradient g/‖g‖ (one global norm)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from unitgrad.optim._base import WrappedOptimizer


class UGD(WrappedOptimizer):
    """Unit gradient descent around any base optimizer; call `step()` after backward.

    Under fp16 use the usual `scaler.step(opt)`: the scaler unscales and skips on inf/NaN as for any optimizer.
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_cls: type[torch.optim.Optimizer],
        **base_kwargs: Any,
    ) -> None:
        super().__init__(params, base_cls, {}, base_kwargs)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Normalise the gradients by their global norm, then take the base step; returns closure() if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._normalise_grads()
        self.base_optimizer.step()
        return loss
