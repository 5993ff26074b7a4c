"""The lean loop: SAM, ASAM and PUGD per parameter, written for speed; a speed baseline for `unitgrad.optim`.

`unitgrad.optim.reference` is the loop as the papers' reference code writes it (each e a fresh tensor, w
restored by subtracting it); this is the same loop with every buffer allocated once, every op in place, and w
restored from a saved copy: what a careful per-parameter implementation costs. `bench/run.py` asserts that
both compute the same update as `unitgrad.optim` (float64) before it times any of them.
"""

from __future__ import annotations

import torch

from unitgrad.optim.reference import EPS, ReferenceOptimizer, global_norm


class LeanLoopTwoPass(ReferenceOptimizer):
    """The loop with per-parameter buffers made on first use and reused: no allocation after step one."""

    zero_grad_between_passes = True

    def __init__(self, params, base_optimizer, rho: float, **base_kwargs):
        super().__init__(params, base_optimizer, **base_kwargs)
        self.rho = rho
        self.buffers: dict[tuple[str, torch.Tensor], torch.Tensor] = {}

    def buffer(self, name: str, p: torch.Tensor) -> torch.Tensor:
        if (name, p) not in self.buffers:
            self.buffers[(name, p)] = torch.empty_like(p)
        return self.buffers[(name, p)]

    def direction(self, p: torch.Tensor) -> torch.Tensor:
        """The tensor whose global norm divides e."""
        raise NotImplementedError

    def perturbation_into(self, p: torch.Tensor, direction: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """e, in a buffer (`direction` may be overwritten)."""
        return direction.mul_(scale)

    def prepare_second_gradient(self) -> None:
        """SAM/ASAM step with the gradient at w+e as it is."""

    @torch.no_grad()
    def first_step(self) -> None:
        params = self._with_grad()
        directions = [self.direction(p) for p in params]
        scale = self.rho / (global_norm(directions) + EPS)
        for p, d in zip(params, directions):
            self.buffer("saved", p).copy_(p)
            p.add_(self.perturbation_into(p, d, scale))
        if self.zero_grad_between_passes:
            for p in params:
                p.grad = None

    @torch.no_grad()
    def second_step(self) -> None:
        for p in self._with_grad():
            p.copy_(self.buffer("saved", p))
        self.prepare_second_gradient()
        self.base_optimizer.step()


class LeanLoopSAM(LeanLoopTwoPass):
    def direction(self, p):
        return p.grad

    def perturbation_into(self, p, direction, scale):
        return torch.mul(direction, scale, out=self.buffer("e", p))


class LeanLoopASAM(LeanLoopTwoPass):
    def __init__(self, params, base_optimizer, rho: float, eta: float = 0.01, **base_kwargs):
        super().__init__(params, base_optimizer, rho, **base_kwargs)
        self.eta = eta

    def direction(self, p):
        t = torch.abs(p, out=self.buffer("t", p)).add_(self.eta)
        return torch.mul(t, p.grad, out=self.buffer("d", p))

    def perturbation_into(self, p, direction, scale):
        return direction.mul_(self.buffer("t", p)).mul_(scale)


class LeanLoopPUGD(LeanLoopTwoPass):
    zero_grad_between_passes = False

    def direction(self, p):
        return torch.abs(p, out=self.buffer("d", p)).mul_(p.grad)

    def prepare_second_gradient(self) -> None:
        grads = [p.grad for p in self._with_grad()]
        inv_norm = 1.0 / (global_norm(grads) + EPS)
        for g in grads:
            g.mul_(inv_norm)


LEAN_LOOP_OPTIMIZERS = {"sam": LeanLoopSAM, "asam": LeanLoopASAM, "pugd": LeanLoopPUGD}
