"""ASAM (Kwon et al., 2021): e = ρ·T²g/‖Tg‖ with T = |w| + η element-wise; otherwise as SAM.

`rule` says which parameters get T. "paper": every parameter, the paper's formula. "official": as
SamsungLabs/ASAM's code, only parameters whose name contains "weight" (convolution, linear and BatchNorm
scale weights); the others (biases, BatchNorm shifts) get T = 1, i.e. their share of e is ρ·g/‖Tg‖, with
one global ‖Tg‖ over all of them. The official ρ (0.5 on CIFAR-10) was tuned with that rule. It needs
parameter names: pass `model.named_parameters()` or groups of (name, parameter) pairs. The denominator is
‖Tg‖ + 1e-12 under both rules (the official code adds 1e-16).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from unitgrad.errors import UnitgradError
from unitgrad.optim._base import _SCRATCH, TwoPassOptimizer, check_nonnegative
from unitgrad.optim._foreach import Bucket, abs_into

RULES = ("paper", "official")


class ASAM(TwoPassOptimizer):
    """Adaptive SAM: the perturbation is scaled per weight by T = |w| + η; `rho`, `eta`, `rule` may be set per group."""

    def __init__(
        self,
        params: Iterable[Any],
        base_cls: type[torch.optim.Optimizer],
        rho: float = 0.5,
        eta: float = 0.01,
        rule: str = "paper",
        **base_kwargs: Any,
    ) -> None:
        own = {
            "rho": check_nonnegative("rho", rho),
            "eta": check_nonnegative("eta", eta),
            "rule": _check_rule(rule),
        }
        super().__init__(params, base_cls, own, base_kwargs)
        self._unscaled = self._official_unscaled()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._unscaled = self._official_unscaled()  # the loaded groups may carry another rule

    def _official_unscaled(self) -> set[int]:
        """ids of the parameters the official rule leaves unscaled (T = 1): those not named "*weight*"."""
        unscaled: set[int] = set()
        for group in self.param_groups:
            if _check_rule(group["rule"]) == "paper":
                continue
            names = group.get("param_names")
            if names is None:
                raise UnitgradError(
                    "ASAM rule 'official' scales only parameters named '*weight*' and needs their names: pass "
                    "model.named_parameters() (or groups of (name, parameter) pairs), or set optim.asam.rule: paper"
                )
            unscaled |= {id(p) for name, p in zip(names, group["params"]) if "weight" not in name}
        return unscaled

    def _direction(self, bucket: Bucket) -> tuple[list[Tensor], list[Tensor] | None]:
        scale = self._buffers(bucket, _SCRATCH)
        abs_into(scale, bucket.params)
        torch._foreach_add_(scale, bucket.group["eta"])
        if self._unscaled:
            for p, t in zip(bucket.params, scale):
                if id(p) in self._unscaled:
                    t.fill_(1.0)
        grads = bucket.grads
        # g is dropped after first_step: it can hold d = Tg
        torch._foreach_mul_(grads, scale)
        return grads, scale  # e ∝ T·d = T²g


def _check_rule(rule: Any) -> str:
    if rule not in RULES:
        raise UnitgradError(f"ASAM rule must be 'paper' or 'official', got {rule!r}: fix optim.asam.rule")
    return rule
