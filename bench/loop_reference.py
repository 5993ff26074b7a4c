"""Per-parameter-loop SAM, ASAM and PUGD: the speed baselines for `unitgrad.optim`, nothing else.

`LOOP_OPTIMIZERS`: written straight from the formulas in the brief, one Python loop over the parameters
per operation, allocating its temporaries, the way a first implementation (or the papers' reference
code) does it. `LEAN_LOOP_OPTIMIZERS`: the same loops written for speed, every buffer allocated once and
every op in place, so what is left of unitgrad's lead is fewer passes over memory and fewer kernel
launches. `bench/run.py` asserts that both compute the same update as `unitgrad.optim` (float64) before
it times any of them.

    SAM   e = rho * g / ||g||;              zero grads; g* at w+e; restore w; base step with g*
    ASAM  e = rho * T^2 g / ||T g||, T = |w| + eta; otherwise as SAM
    PUGD  e = rho * |w| g / || |w| g ||;    grads kept, so the second backward gives G = g + g*;
          restore w; grads <- G / ||G||; base step
Norms are global over every parameter with a gradient; eps guards the division.
"""

from __future__ import annotations

import torch

EPS = 1e-12


class LoopTwoPass:
    """Shared plumbing: parameter iteration, saving/restoring w, the base optimizer step."""

    zero_grad_between_passes = True

    def __init__(self, params, base_optimizer, rho: float, **base_kwargs):
        self.base_optimizer = base_optimizer(params, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.rho = rho
        self.saved_weights: dict[torch.Tensor, torch.Tensor] = {}

    def _params_with_grad(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]

    def perturbation(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def first_step(self) -> None:
        params = self._params_with_grad()
        for p, e in zip(params, self.perturbation(params)):
            self.saved_weights[p] = p.clone()
            p.add_(e)
        if self.zero_grad_between_passes:
            for p in params:
                p.grad = None

    @torch.no_grad()
    def second_step(self) -> None:
        for p, w in self.saved_weights.items():
            p.copy_(w)
        self.saved_weights.clear()
        self.prepare_second_gradient()
        self.base_optimizer.step()

    def prepare_second_gradient(self) -> None:
        """SAM/ASAM step with the gradient at w+e as it is."""

    def zero_grad(self) -> None:
        self.base_optimizer.zero_grad()


def _global_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.norm(2) for t in tensors]).norm(2)


class LoopSAM(LoopTwoPass):
    def perturbation(self, params):
        grads = [p.grad for p in params]
        scale = self.rho / (_global_norm(grads) + EPS)
        return [g * scale for g in grads]


class LoopASAM(LoopTwoPass):
    def __init__(self, params, base_optimizer, rho: float, eta: float = 0.01, **base_kwargs):
        super().__init__(params, base_optimizer, rho, **base_kwargs)
        self.eta = eta

    def perturbation(self, params):
        scales = [p.abs() + self.eta for p in params]
        scaled_grads = [t * p.grad for t, p in zip(scales, params)]
        factor = self.rho / (_global_norm(scaled_grads) + EPS)
        return [t * tg * factor for t, tg in zip(scales, scaled_grads)]


class LoopPUGD(LoopTwoPass):
    zero_grad_between_passes = False  # the second backward accumulates: G = g + g*

    def perturbation(self, params):
        weighted = [p.abs() * p.grad for p in params]
        scale = self.rho / (_global_norm(weighted) + EPS)
        return [u * scale for u in weighted]

    def prepare_second_gradient(self) -> None:
        grads = [p.grad for p in self._params_with_grad()]
        inv_norm = 1.0 / (_global_norm(grads) + EPS)
        for g in grads:
            g.mul_(inv_norm)


LOOP_OPTIMIZERS = {"sam": LoopSAM, "asam": LoopASAM, "pugd": LoopPUGD}


class LeanLoopTwoPass(LoopTwoPass):
    """The loop with per-parameter buffers made on first use and reused: no allocation after step one."""

    def __init__(self, params, base_optimizer, rho: float, **base_kwargs):
        super().__init__(params, base_optimizer, rho, **base_kwargs)
        self.buffers: dict[tuple[str, torch.Tensor], torch.Tensor] = {}

    def buffer(self, name: str, p: torch.Tensor) -> torch.Tensor:
        if (name, p) not in self.buffers:
            self.buffers[(name, p)] = torch.empty_like(p)
        return self.buffers[(name, p)]

    def direction(self, p: torch.Tensor) -> torch.Tensor:
        """The tensor whose global norm divides e, in a buffer."""
        raise NotImplementedError

    def perturbation_into(self, p: torch.Tensor, direction: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
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
        return self.buffer("d", p).copy_(p.grad)


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

    prepare_second_gradient = LoopPUGD.prepare_second_gradient  # already in place


LEAN_LOOP_OPTIMIZERS = {"sam": LeanLoopSAM, "asam": LeanLoopASAM, "pugd": LeanLoopPUGD}
