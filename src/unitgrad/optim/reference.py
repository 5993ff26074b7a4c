"""The reference statement of every update: SAM, ASAM, PUGD and UGD as a plain loop over parameters.

Written as the papers' reference code writes them (davda54/sam, the official PUGD code): each parameter's
perturbation e is a fresh tensor kept until the second step, which restores w by subtracting it. The classes
beside this file compute the same updates with foreach ops on reused buffers (fast, and harder to read); the
tests hold them to these loops, and `bench/` times them against these loops. Norms are global over every
parameter with a gradient; EPS guards each division.

    SAM   e = ρ·g/‖g‖                          zero g; g* at w + e; restore w; base step with g*
    ASAM  e = ρ·T²g/‖Tg‖,  T = |w| + η         otherwise as SAM (the paper's rule: T for every parameter)
    PUGD  e = ρ·|w|g/‖|w|g‖                    keep g, so the second backward gives G = g + g*;
                                               restore w; base step with G/‖G‖
    UGD   one pass: base step with g/‖g‖
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from unitgrad.optim._base import EPS


def global_norm(tensors: list[Tensor]) -> Tensor:
    return torch.stack([t.norm(2) for t in tensors]).norm(2)


class ReferenceOptimizer:
    """A `base_cls` optimizer over `params`, and the parameters that have a gradient."""

    def __init__(self, params: Iterable[Any], base_cls: type[torch.optim.Optimizer], **base_kwargs: Any) -> None:
        self.base_optimizer = base_cls(params, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups

    def _with_grad(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none)


class SAM(ReferenceOptimizer):
    zero_grad_between_passes = True

    def __init__(self, params: Iterable[Any], base_cls: type[torch.optim.Optimizer], rho: float, **base_kwargs: Any):
        super().__init__(params, base_cls, **base_kwargs)
        self.rho = rho
        self.e: dict[Tensor, Tensor] = {}

    def perturbations(self, params: list[Tensor]) -> list[Tensor]:
        scale = self.rho / (global_norm([p.grad for p in params]) + EPS)
        return [p.grad * scale for p in params]

    def prepare_step(self, params: list[Tensor]) -> None:
        """The gradient the base optimizer steps with: SAM and ASAM take g* as it is."""

    @torch.no_grad()
    def first_step(self) -> None:
        params = self._with_grad()
        for p, e in zip(params, self.perturbations(params)):
            p.add_(e)
            self.e[p] = e
        if self.zero_grad_between_passes:
            self.zero_grad()

    @torch.no_grad()
    def restore(self) -> None:
        for p, e in self.e.items():
            p.sub_(e)
        self.e.clear()

    @torch.no_grad()
    def second_step(self) -> None:
        self.restore()
        self.prepare_step(self._with_grad())
        self.base_optimizer.step()


class ASAM(SAM):
    def __init__(self, params: Iterable[Any], base_cls: type[torch.optim.Optimizer], rho: float, eta: float, **kwargs):
        super().__init__(params, base_cls, rho, **kwargs)
        self.eta = eta

    def perturbations(self, params: list[Tensor]) -> list[Tensor]:
        t = [p.abs() + self.eta for p in params]
        scale = self.rho / (global_norm([ti * p.grad for ti, p in zip(t, params)]) + EPS)
        return [ti * ti * p.grad * scale for ti, p in zip(t, params)]


class PUGD(SAM):
    zero_grad_between_passes = False  # the second backward adds g* to g: G = g + g*

    def perturbations(self, params: list[Tensor]) -> list[Tensor]:
        scale = self.rho / (global_norm([p.abs() * p.grad for p in params]) + EPS)
        return [p.abs() * p.grad * scale for p in params]

    def prepare_step(self, params: list[Tensor]) -> None:
        norm = global_norm([p.grad for p in params])
        for p in params:
            p.grad = p.grad / (norm + EPS)


class UGD(ReferenceOptimizer):
    @torch.no_grad()
    def step(self) -> None:
        params = self._with_grad()
        norm = global_norm([p.grad for p in params])
        for p in params:
            p.grad = p.grad / (norm + EPS)
        self.base_optimizer.step()


OPTIMIZERS = {"sam": SAM, "asam": ASAM, "pugd": PUGD, "ugd": UGD}
