"""Label noise: exact flip counts, the target classes, determinism, bad input."""

import numpy as np
import pytest

from unitgrad.data import CIFAR10_CLASSES, CIFAR100_CLASSES, CIFAR100_SUPERCLASSES, noisy_labels
from unitgrad.data.noise import asymmetric_targets
from unitgrad.errors import UnitgradError


def _labels(num_classes, per_class, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.37, 0.8, 1.0])
@pytest.mark.parametrize("num_classes", [10, 100])
def test_symmetric_flips_exactly_round_rate_n_each_to_another_class(rate, num_classes):
    labels = _labels(num_classes, 13)
    noisy = noisy_labels(labels, num_classes, rate, "symmetric", seed=1)
    assert noisy.dtype == np.int64 and noisy.shape == labels.shape
    assert (noisy != labels).sum() == round(rate * labels.size)
    assert noisy.min() >= 0 and noisy.max() < num_classes


def test_symmetric_targets_are_uniform_over_the_other_classes():
    labels = np.zeros(20000, dtype=np.int64)
    noisy = noisy_labels(labels, 10, 0.9, seed=0)
    counts = np.bincount(noisy[noisy != labels], minlength=10)
    assert counts[0] == 0
    expected = 18000 / 9
    assert np.all(np.abs(counts[1:] - expected) < 5 * np.sqrt(expected))  # ~5 sigma


def test_noise_is_deterministic_per_seed_and_leaves_input_alone():
    labels = _labels(10, 50)
    before = labels.copy()
    for kind in ("symmetric", "asymmetric"):
        a = noisy_labels(labels, 10, 0.4, kind, seed=7)
        np.testing.assert_array_equal(a, noisy_labels(labels, 10, 0.4, kind, seed=7))
        assert not np.array_equal(a, noisy_labels(labels, 10, 0.4, kind, seed=8))
    np.testing.assert_array_equal(labels, before)


def test_cifar10_asymmetric_pairs_and_counts():
    labels = _labels(10, 101)
    noisy = noisy_labels(labels, 10, 0.4, "asymmetric", seed=0)
    pairs = {"truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"}
    for c, name in enumerate(CIFAR10_CLASSES):
        members = labels == c
        flipped = members & (noisy != labels)
        if name in pairs:
            assert flipped.sum() == round(0.4 * 101) == 40
            assert set(noisy[flipped]) == {CIFAR10_CLASSES.index(pairs[name])}
        else:
            assert flipped.sum() == 0


def test_cifar100_asymmetric_moves_each_class_to_the_next_in_its_superclass():
    targets = asymmetric_targets(100)
    superclass_of = {CIFAR100_CLASSES.index(f): s for s, fines in CIFAR100_SUPERCLASSES.items() for f in fines}
    assert sorted(targets) == list(range(100))  # a permutation: every class is a source and a target
    for c in range(100):
        assert targets[c] != c and superclass_of[int(targets[c])] == superclass_of[c]
        # Following the map 5 times returns to the start: one 5-cycle per superclass.
        cycle = c
        for _ in range(5):
            cycle = targets[cycle]
        assert cycle == c
    assert CIFAR100_CLASSES[targets[CIFAR100_CLASSES.index("beaver")]] == "dolphin"
    assert CIFAR100_CLASSES[targets[CIFAR100_CLASSES.index("whale")]] == "beaver"
    labels = _labels(100, 7)
    noisy = noisy_labels(labels, 100, 0.3, "asymmetric", seed=0)
    for c in range(100):
        flipped = (labels == c) & (noisy != labels)
        assert flipped.sum() == round(0.3 * 7) and set(noisy[flipped]) <= {targets[c]}


def test_cifar100_class_tables_are_the_official_ones():
    assert len(CIFAR100_SUPERCLASSES) == 20 and len(set(CIFAR100_CLASSES)) == 100
    assert tuple(sorted(CIFAR100_CLASSES)) == CIFAR100_CLASSES
    assert CIFAR100_CLASSES[:4] == ("apple", "aquarium_fish", "baby", "bear") and CIFAR100_CLASSES[-1] == "worm"


@pytest.mark.parametrize(
    "args, match",
    [
        ((10, 1.5, "symmetric"), "rate"),
        ((10, -0.1, "symmetric"), "rate"),
        ((10, float("nan"), "symmetric"), "rate"),
        ((10, "0.4", "symmetric"), "rate"),
        ((10, 0.4, "pairflip"), "kind"),
        ((5, 0.4, "asymmetric"), "CIFAR-10 and CIFAR-100"),
        ((3, 0.4, "symmetric"), r"\[0, 3\)"),
    ],
)
def test_bad_noise_arguments_are_one_line_errors(args, match):
    with pytest.raises(UnitgradError, match=match):
        noisy_labels(_labels(5, 4), *args)
