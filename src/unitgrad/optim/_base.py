"""Shared machinery of the wrappers: a base optimizer behind shared param groups, global norms, two passes.

Every wrapper is a `torch.optim.Optimizer` whose `param_groups` list *is* the base optimizer's, so an LR
scheduler built on the wrapper drives the base optimizer. All tensor work uses `torch._foreach_*` ops on
buckets of parameters (`unitgrad.optim._foreach`); nothing reads a value back to the host, and no
parameter-sized tensor is allocated after the first step (on CPU each fresh allocation costs page faults that
took longer than the arithmetic).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from unitgrad.errors import UnitgradError
from unitgrad.optim._foreach import Bucket, add_scaled_, buckets, global_norm, has_grad

EPS = 1e-12  # added to every norm in a denominator
_SAVED = "w"  # state key: the weights at w while the optimizer is between first_step and restore
_SCRATCH = "scratch"  # state key: a parameter-sized work buffer, never checkpointed


def check_nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise UnitgradError(f"{name} must be a number >= 0, got {value!r}: fix optim.* in params.yaml")
    return float(value)


class _PlainStep:
    """The base optimizer as GradScaler sees it in `second_step`: its param groups and step, nothing else.

    GradScaler hands a fused optimizer its inf flag instead of skipping `step()`, and torch's fused SGD then
    stores uninitialised momentum when the very first step is skipped; this view makes GradScaler skip it.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.param_groups = optimizer.param_groups
        self.step = optimizer.step


class WrappedOptimizer(torch.optim.Optimizer):
    """A `base_cls` optimizer whose gradients (and, for two-pass methods, weights) are transformed first.

    `own_defaults` are this wrapper's per-group hyper-parameters (rho, eta); `base_kwargs` go to `base_cls`.
    `state_dict()` holds this wrapper's state plus the base optimizer's under "base".
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_cls: type[torch.optim.Optimizer],
        own_defaults: dict[str, Any],
        base_kwargs: dict[str, Any],
    ) -> None:
        if not (isinstance(base_cls, type) and issubclass(base_cls, torch.optim.Optimizer)):
            raise UnitgradError(f"base_cls must be a torch.optim.Optimizer class, got {base_cls!r}")
        super().__init__(params, {**own_defaults, **base_kwargs})
        self.base_optimizer = base_cls(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults = {**self.base_optimizer.defaults, **own_defaults}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "base": self.base_optimizer.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "base" not in state_dict:
            raise UnitgradError(
                f"not a {type(self).__name__} state dict (no 'base' entry): load the checkpoint of the same optimizer"
            )
        own = {k: v for k, v in state_dict.items() if k != "base"}
        self.base_optimizer.load_state_dict(state_dict["base"])
        super().load_state_dict(own)
        self.param_groups = self.base_optimizer.param_groups  # loading rebuilt both lists: share them again

    def _normalise_grads(self) -> None:
        """g ← g / (‖g‖ + ε) with one global norm over every parameter that has a gradient."""
        grad_buckets = [b.grads for b in buckets(self.param_groups, has_grad)]
        if not grad_buckets:
            return
        denom = global_norm(grad_buckets) + EPS
        for grads in grad_buckets:
            torch._foreach_div_(grads, denom.to(grads[0].device))


class TwoPassOptimizer(WrappedOptimizer):
    """Perturb w by e = ρ·(a ⊙ d)/(‖d‖ + ε) with one global ‖d‖, take a second gradient there, restore w, step.

    Subclasses define the direction d and the optional element-wise factor a (`_direction`), whether the first
    pass's gradient is dropped before the second pass (`zero_grad_between_passes`), and what is done to the
    second-pass gradient before the base step (`_prepare_step`). `first_step` turns d into e in place: it must
    be a buffer of this optimizer, or gradients that are dropped afterwards. `restore` puts w back without a
    step (m-sharpness: `unitgrad.optim.train_step` sums the chunks' gradients in between).
    """

    zero_grad_between_passes = True
    _first_pass_finite: Tensor | None = None  # every first pass since the last base step was finite
    _mid_step = False  # between first_step and restore: the saved weights are live

    def state_dict(self) -> dict[str, Any]:
        """As `WrappedOptimizer.state_dict`; the saved weights only while live."""
        state_dict = super().state_dict()
        # Stale buffers are left out to keep checkpoints lean: the scratch always, the saved w between steps.
        stale = {_SCRATCH} | ({_SAVED} if not self._mid_step else set())
        own = {i: {k: v for k, v in s.items() if k not in stale} for i, s in state_dict["state"].items()}
        state_dict["state"] = {i: s for i, s in own.items() if s}
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._mid_step = any(_SAVED in s for s in self.state.values())

    def _direction(self, bucket: Bucket) -> tuple[list[Tensor], list[Tensor] | None]:
        raise NotImplementedError

    def _prepare_step(self) -> None:
        """Hook between restoring w and the base step; the gradients are unscaled by then."""

    @torch.no_grad()
    def first_step(self) -> None:
        """Save w, move to w + e using the current gradients, and (SAM, ASAM) zero the gradients."""
        self._mid_step = True
        for p in (p for g in self.param_groups for p in g["params"] if p.grad is None and p in self.state):
            self.state[p].pop(_SAVED, None)  # only perturbed weights are restored in second_step
        grad_buckets = buckets(self.param_groups, has_grad)
        if grad_buckets:
            directions = [self._direction(b) for b in grad_buckets]
            norm = global_norm([d for d, _ in directions])
            # Under fp16 + GradScaler the first pass is never unscaled (e is scale-invariant); remember
            # whether it (or, with m-sharpness, any chunk's) overflowed so second_step can skip the whole update.
            finite = torch.isfinite(norm)
            self._first_pass_finite = finite if self._first_pass_finite is None else self._first_pass_finite & finite
            denom = norm + EPS
            for bucket, (d, factor) in zip(grad_buckets, directions):
                scale = (bucket.group["rho"] / denom).to(d[0].device)
                torch._foreach_copy_(self._buffers(bucket, _SAVED), bucket.params)
                if factor is not None:
                    torch._foreach_mul_(d, factor)
                add_scaled_(bucket.params, d, scale)
        if self.zero_grad_between_passes:
            self.zero_grad(set_to_none=True)

    def _buffers(self, bucket: Bucket, key: str) -> list[Tensor]:
        """The `key` buffer of every parameter of `bucket`, created like the parameter on first use."""
        buffers = []
        for p in bucket.params:
            state = self.state[p]
            if key not in state:
                state[key] = torch.empty_like(p, memory_format=torch.preserve_format)
            buffers.append(state[key])
        return buffers

    @torch.no_grad()
    def second_step(self, scaler: torch.amp.GradScaler | None = None) -> None:
        """Restore w (unless `restore` did), then update it with the base optimizer from the current gradient.

        With fp16 + `torch.amp.GradScaler`, pass `scaler`: the gradients are unscaled once here and the base
        step is skipped (w stays restored) if either pass overflowed; call `scaler.update()` afterwards.
        """
        self.restore()
        self._base_step(scaler)

    @torch.no_grad()
    def restore(self) -> None:
        """w ← the weights saved by `first_step`, without a step (m-sharpness: after each chunk's second pass)."""
        if not self._mid_step:
            return
        saved = buckets(self.param_groups, lambda p: _SAVED in self.state.get(p, ()))
        for bucket in saved:
            torch._foreach_copy_(bucket.params, [self.state[p][_SAVED] for p in bucket.params])
        self._mid_step = False

    def _base_step(self, scaler: torch.amp.GradScaler | None) -> None:
        plain = _PlainStep(self.base_optimizer)
        if scaler is not None and scaler.is_enabled():
            self._carry_first_pass_overflow()
            scaler.unscale_(plain)
        self._prepare_step()
        if scaler is not None:
            # skips the step if found inf/NaN (GradScaler's own host sync)
            scaler.step(plain)
        else:
            self.base_optimizer.step()
        self._first_pass_finite = None
        self._opt_called = True  # LR schedulers read this flag to check the optimizer stepped before them

    def _carry_first_pass_overflow(self) -> None:
        """GradScaler inspects only the gradients it unscales: turn a first-pass overflow into a NaN there."""
        finite = self._first_pass_finite
        grad_buckets = [b.grads for b in buckets(self.param_groups, has_grad)]
        if finite is None or not grad_buckets:
            return
        first = grad_buckets[0][0]
        first.mul_(torch.where(finite, 1.0, torch.nan).to(first.device, first.dtype))

    @torch.no_grad()
    def step(
        self,
        closure: Callable[[], Any] | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> Any:
        """`first_step()`, `closure()` (forward + backward at w + e; returns the loss), `second_step(scaler)`.

        The gradient at w must already be in `.grad`. Returns the closure's loss (at the perturbed point).
        """
        if closure is None:
            raise UnitgradError(
                f"{type(self).__name__}.step needs a closure that recomputes the loss and calls backward; "
                "or call first_step(), backward, second_step()"
            )
        self.first_step()
        with torch.enable_grad():
            loss = closure()
        self.second_step(scaler)
        return loss
