"""Metrics on hand-made tensors with known values."""

import math

import pytest
import torch

from unitgrad.metrics import accuracy, expected_calibration_error, nll, per_class_accuracy

LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 0.5], [0.0, 0.0, 5.0]])
LABELS = torch.tensor([0, 1, 2, 2])  # predictions 0, 1, 0, 2: the third row is wrong

# Two-class probabilities with confidences 0.95 (right), 0.85 (wrong), 0.65 (right), 0.55 (wrong), as
# logits: log-probabilities, whose softmax is the probabilities again.
PROBS = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.55, 0.45]]).log()
PROB_LABELS = torch.tensor([0, 1, 1, 1])


def test_accuracy():
    assert accuracy(LOGITS, LABELS) == 0.75


def test_nll_is_mean_negative_log_softmax_of_the_label():
    expected = -sum(
        row[y].item() - math.log(sum(math.exp(v) for v in row.tolist())) for row, y in zip(LOGITS, LABELS)
    ) / len(LABELS)
    assert nll(LOGITS, LABELS) == pytest.approx(expected, rel=1e-12)


def test_ece_one_sample_per_bin():
    # Ten bins: every sample alone in its bin, so ECE = mean |correct − confidence|.
    expected = (0.05 + 0.85 + 0.35 + 0.55) / 4
    assert expected_calibration_error(PROBS, PROB_LABELS, n_bins=10) == pytest.approx(expected, abs=1e-6)


def test_ece_shared_bin_uses_bin_averages():
    # Two bins: all confidences fall in (0.5, 1]: |mean accuracy 0.5 − mean confidence 0.75|.
    assert expected_calibration_error(PROBS, PROB_LABELS, n_bins=2) == pytest.approx(0.25, abs=1e-6)


def test_ece_of_logits_is_ece_of_their_softmax_and_ignores_a_shift():
    confidence = [max(math.exp(v) for v in row) / sum(math.exp(v) for v in row) for row in LOGITS.tolist()]
    # 15 bins: rows 0-2 alone in their bins; row 3 (confidence 0.987, right) in the last bin.
    assert sorted(int(c * 15) for c in confidence) == [7, 9, 12, 14]
    expected = sum(abs(float(ok) - c) for ok, c in zip([1, 1, 0, 1], confidence)) / 4
    assert expected_calibration_error(LOGITS, LABELS, n_bins=15) == pytest.approx(expected, abs=1e-12)
    assert expected_calibration_error(LOGITS + 3.0, LABELS, n_bins=15) == pytest.approx(expected, abs=1e-12)


def test_ece_full_confidence_lands_in_the_last_bin():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).log()
    assert expected_calibration_error(probs, torch.tensor([0, 0]), n_bins=15) == pytest.approx(0.5)


def test_ece_is_zero_when_perfectly_calibrated():
    probs = torch.tensor([[0.75, 0.25]] * 4, dtype=torch.float64).log()
    assert expected_calibration_error(probs, torch.tensor([0, 0, 0, 1]), n_bins=15) == pytest.approx(0.0, abs=1e-12)


def test_per_class_accuracy_and_empty_class():
    result = per_class_accuracy(LOGITS, LABELS, num_classes=4)
    assert result[:3] == [1.0, 1.0, 0.5]
    assert math.isnan(result[3])


def test_metrics_accept_bf16_logits():
    assert accuracy(LOGITS.bfloat16(), LABELS) == 0.75
    assert nll(LOGITS.bfloat16(), LABELS) == pytest.approx(nll(LOGITS, LABELS), rel=1e-2)
