"""Classification metrics on logits and integer labels: accuracy, NLL, ECE, per-class accuracy.

Pure functions: tensors in (any device, any float dtype; computed in float64), Python numbers out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose arg-max equals the label."""
    return (logits.argmax(1) == y).double().mean().item()


def nll(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log-likelihood (cross-entropy) of the labels under softmax(logits)."""
    return F.cross_entropy(logits.double(), y).item()


def expected_calibration_error(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    """ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)| over `n_bins` equal-width confidence bins (lo, hi].

    Confidence is the top softmax probability of `logits` (pass log-probabilities to score probabilities).
    """
    probs = logits.double().softmax(1)
    confidence, prediction = probs.max(1)
    correct = (prediction == y).double()
    inner_edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=probs.device)[1:-1]
    bins = torch.bucketize(confidence, inner_edges)  # bin b holds confidences in (b/n, (b+1)/n]
    count = torch.bincount(bins, minlength=n_bins).double()
    gap = torch.bincount(bins, weights=correct - confidence, minlength=n_bins)  # Σ (acc − conf) per bin
    return (gap.abs().sum() / count.sum()).item()


def per_class_accuracy(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float]:
    """Accuracy over the rows of each class 0..num_classes-1; NaN for a class without rows."""
    correct = (logits.argmax(1) == y).double()
    hits = torch.bincount(y, weights=correct, minlength=num_classes)
    count = torch.bincount(y, minlength=num_classes).double()
    return [h / c if c else math.nan for h, c in zip(hits.tolist(), count.tolist())]
