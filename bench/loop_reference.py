"""Per-parameter-loop SAM, ASAM and PUGD: the speed baselines for `unitgrad.optim`, nothing else.

`LOOP_OPTIMIZERS`: the loop as the papers' reference code writes it (davda54/sam, the official PUGD code):
each parameter's e is a fresh tensor kept until `second_step`, which restores w by subtracting it, and
PUGD's normalised gradient is a fresh tensor too. `LEAN_LOOP_OPTIMIZERS`: the same loops written for
speed, every buffer allocated once, every op in place, and w restored from a saved copy. `bench/run.py`
asserts that both compute the same update as `unitgrad.optim` (float64) before it times any of them.

    SAM   e = rho * g / ||g||;              zero grads; g* at w+e; restore w; base step with g*
    ASAM  e = rho * T^2 g / ||T g||, T = |w| + eta; otherwise as SAM
    PUGD  e = rho * |w| g / || |w| g ||;    grads kept, so the second backward gives G = g + g*;
          restore w; grads <- G / ||G||; base step
Norms are global over every parameter with a gradient; eps guards the division.
"""

from __future__ import annotations

import torch

EPS = 1e-12


def _global_norm(tensors) -> torch.Tensor:
    return torch.stack([t.norm(2) for t in tensors]).norm(2)


class _Baseline:
    """What both loop flavours share: the base optimizer, parameter iteration, the hook before its step."""

    zero_grad_between_passes = True

    def __init__(self, params, base_optimizer, rho: float, **base_kwargs):
        self.base_optimizer = base_optimizer(params, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.rho = rho

    def _params_with_grad(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]

    def prepare_second_gradient(self) -> None:
        """SAM/ASAM step with the gradient at w+e as it is."""

    def zero_grad(self) -> None:
        self.base_optimizer.zero_grad()


class LoopTwoPass(_Baseline):
    """The reference-code loop: e kept per parameter, w restored by subtracting it."""

    def __init__(self, params, base_optimizer, rho: float, **base_kwargs):
        super().__init__(params, base_optimizer, rho, **base_kwargs)
        self.perturbations: dict[torch.Tensor, torch.Tensor] = {}

    def norm_term(self, p: torch.Tensor) -> torch.Tensor:
        """This parameter's part of the tensor whose global norm divides e."""
        raise NotImplementedError

    def perturbation(self, p: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def first_step(self) -> None:
        params = self._params_with_grad()
        scale = self.rho / (_global_norm(self.norm_term(p) for p in params) + EPS)
        for p in params:
            e = self.perturbation(p, scale)
            p.add_(e)
            self.perturbations[p] = e
        if self.zero_grad_between_passes:
            for p in params:
                p.grad = None

    @torch.no_grad()
    def second_step(self) -> None:
        for p, e in self.perturbations.items():
            p.sub_(e)
        self.perturbations.clear()
        self.prepare_second_gradient()
        self.base_optimizer.step()


class LoopSAM(LoopTwoPass):
    def norm_term(self, p):
        return p.grad

    def perturbation(self, p, scale):
        return p.grad * scale


class LoopASAM(LoopTwoPass):
    def __init__(self, params, base_optimizer, rho: float, eta: float = 0.01, **base_kwargs):
        super().__init__(params, base_optimizer, rho, **base_kwargs)
        self.eta = eta

    def norm_term(self, p):
        return (p.abs() + self.eta) * p.grad

    def perturbation(self, p, scale):
        return (p.abs() + self.eta) ** 2 * p.grad * scale


class LoopPUGD(LoopTwoPass):
    zero_grad_between_passes = False  # the second backward accumulates: G = g + g*

    def norm_term(self, p):
        return p.abs() * p.grad

    def perturbation(self, p, scale):
        return p.abs() * p.grad * scale

    def prepare_second_gradient(self) -> None:
        params = self._params_with_grad()
        norm = _global_norm(p.grad for p in params)
        for p in params:
            p.grad = p.grad / (norm + EPS)


LOOP_OPTIMIZERS = {"sam": LoopSAM, "asam": LoopASAM, "pugd": LoopPUGD}


class LeanLoopTwoPass(_Baseline):
    """The loop with per-parameter buffers made on first use and reused: no allocation after step one."""

    def __init__(self, params, base_optimizer, rho: float, **base_kwargs):
        super().__init__(params, base_optimizer, rho, **base_kwargs)
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

    @torch.no_grad()
    def first_step(self) -> None:
        params = self._params_with_grad()
        directions = [self.direction(p) for p in params]
        scale = self.rho / (_global_norm(directions) + EPS)
        for p, d in zip(params, directions):
            self.buffer("saved", p).copy_(p)
            p.add_(self.perturbation_into(p, d, scale))
        if self.zero_grad_between_passes:
            for p in params:
                p.grad = None

    @torch.no_grad()
    def second_step(self) -> None:
        for p in self._params_with_grad():
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
        grads = [p.grad for p in self._params_with_grad()]
        inv_norm = 1.0 / (_global_norm(grads) + EPS)
        for g in grads:
            g.mul_(inv_norm)


LEAN_LOOP_OPTIMIZERS = {"sam": LeanLoopSAM, "asam": LeanLoopASAM, "pugd": LeanLoopPUGD}
