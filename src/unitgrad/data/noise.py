"""Training-label noise: exact flip counts, deterministic per seed."""

from __future__ import annotations

import math
import numbers

import numpy as np

from unitgrad.data.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES, CIFAR100_SUPERCLASSES
from unitgrad.errors import UnitgradError

KINDS = ("symmetric", "asymmetric")

# Visually similar pairs (Patrini et al. 2017): source class -> target class.
CIFAR10_ASYMMETRIC = {"truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"}


def asymmetric_targets(num_classes: int) -> np.ndarray:
    """target[c] = the class that c flips to, or -1 when c is never flipped (CIFAR-10 or CIFAR-100)."""
    targets = np.full(num_classes, -1, dtype=np.int64)
    if num_classes == 10:
        for source, target in CIFAR10_ASYMMETRIC.items():
            targets[CIFAR10_CLASSES.index(source)] = CIFAR10_CLASSES.index(target)
    elif num_classes == 100:
        # Each fine class flips to the next one of its superclass (in label order), cyclically.
        for fine in CIFAR100_SUPERCLASSES.values():
            members = sorted(CIFAR100_CLASSES.index(name) for name in fine)
            for i, label in enumerate(members):
                targets[label] = members[(i + 1) % len(members)]
    else:
        raise UnitgradError(f"asymmetric noise is defined for CIFAR-10 and CIFAR-100 only, not {num_classes} classes")
    return targets


def noisy_labels(
    labels: np.ndarray, num_classes: int, rate: float, kind: str = "symmetric", seed: int = 0
) -> np.ndarray:
    """A noisy copy of `labels` (int64); the flip mask is `noisy != labels`.

    symmetric: exactly round(rate*N) labels, chosen uniformly, each moved to a different class chosen
    uniformly. asymmetric: in each source class c, exactly round(rate*n_c) labels move to its target.
    """
    labels = np.asarray(labels)
    if kind not in KINDS:
        raise UnitgradError(f"unknown label-noise kind '{kind}': choose one of {', '.join(KINDS)}")
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise UnitgradError(
            f"label-noise rate {rate!r} must be a number in [0, 1]: fix studies.<name>.noise in params.yaml"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UnitgradError("labels must be a 1-D integer array")
    if num_classes < 2 or (labels.size and (labels.min() < 0 or labels.max() >= num_classes)):
        raise UnitgradError(f"labels must lie in [0, {num_classes}) with at least 2 classes")
    rng = np.random.default_rng(seed)
    noisy = labels.astype(np.int64)
    if kind == "symmetric":
        flip = rng.choice(labels.size, size=round(rate * labels.size), replace=False)
        # An offset in 1..C-1 picks each other class with equal probability.
        noisy[flip] = (noisy[flip] + rng.integers(1, num_classes, size=flip.size)) % num_classes
        return noisy
    targets = asymmetric_targets(num_classes)
    for source in np.flatnonzero(targets >= 0):
        members = np.flatnonzero(labels == source)
        flip = rng.choice(members, size=round(rate * members.size), replace=False)
        noisy[flip] = targets[source]
    return noisy
