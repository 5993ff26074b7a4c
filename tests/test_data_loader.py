"""DeviceLoader: real crops and flips, determinism per (seed, epoch), batching; balanced_subset."""

import numpy as np
import pytest
import torch

from unitgrad.data import CIFAR_MEAN, CIFAR_STD, DeviceLoader, balanced_subset
from unitgrad.errors import UnitgradError

MEAN, STD = CIFAR_MEAN["cifar10"], CIFAR_STD["cifar10"]


def _images(n=12, seed=0):
    return np.random.default_rng(seed).integers(1, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _pixels(x):
    """Undo the normalisation: NCHW float -> NHWC uint8."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return torch.round((x * std + mean) * 255).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _loader(images, **kwargs):
    kwargs = {"batch_size": 5, "device": "cpu", "mean": MEAN, "std": STD, "seed": 0} | kwargs
    return DeviceLoader(images, np.arange(len(images)), **kwargs)


def test_train_batches_are_crops_of_the_zero_padded_image_possibly_flipped():
    images = _images()
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    seen_flip = seen_plain = seen_offset = False
    for x, y in _loader(images, drop_last=False):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and y.dtype == torch.int64
        for crop, i in zip(_pixels(x), y.tolist()):
            windows = {(dy, dx): padded[i, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)}
            matches = [
                (dy, dx, flipped)
                for (dy, dx), window in windows.items()
                for flipped in (False, True)
                if np.array_equal(crop, window[:, ::-1] if flipped else window)
            ]
            assert len(matches) == 1, f"sample {i} is not a crop of its padded image"
            dy, dx, flipped = matches[0]
            seen_flip |= flipped
            seen_plain |= not flipped
            seen_offset |= (dy, dx) != (4, 4)
    assert seen_flip and seen_plain and seen_offset


def test_same_seed_and_epoch_give_the_same_batches_and_epochs_differ():
    images = _images(20)
    a, b = _loader(images), _loader(images)
    first = [x for x, _ in a]
    assert all(torch.equal(p, q) for p, q in zip(first, [x for x, _ in b]))
    a.set_epoch(1)
    assert not torch.equal(torch.cat(first), torch.cat([x for x, _ in a]))
    a.set_epoch(0)
    assert all(torch.equal(p, q) for p, q in zip(first, [x for x, _ in a]))
    other_seed = [x for x, _ in _loader(images, seed=1)]
    assert not torch.equal(torch.cat(first), torch.cat(other_seed))


def test_an_epoch_visits_every_sample_once_and_drop_last_sets_the_length():
    images = _images(12)
    loader = _loader(images, drop_last=False)
    assert len(loader) == 3 and [len(y) for _, y in loader] == [5, 5, 2]
    assert sorted(torch.cat([y for _, y in loader]).tolist()) == list(range(12))
    dropping = _loader(images, drop_last=True)
    assert len(dropping) == 2 and [len(y) for _, y in dropping] == [5, 5]


def test_eval_mode_keeps_order_and_pixels():
    images = _images(7)
    loader = _loader(images, train=False, drop_last=False)
    x = torch.cat([x for x, _ in loader])
    assert torch.cat([y for _, y in loader]).tolist() == list(range(7))
    np.testing.assert_array_equal(_pixels(x), images)
    expected = (
        torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected)


def test_no_flip_no_padding_is_a_pure_shuffle():
    images = _images(10)
    loader = _loader(images, crop_padding=0, flip=False, batch_size=10)
    x, y = next(iter(loader))
    np.testing.assert_array_equal(_pixels(x), images[y.numpy()])


def test_cutout_zeroes_one_square_per_image():
    images = _images(8)
    plain = torch.cat([x for x, _ in _loader(images, crop_padding=0, flip=False)])
    cut = torch.cat([x for x, _ in _loader(images, crop_padding=0, flip=False, cutout=8)])
    zeroed = (cut == 0).all(dim=1) & (plain != 0).any(dim=1)  # (N, H, W)
    for mask in zeroed:
        rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8
        assert mask.sum() == len(rows) * len(cols)  # one axis-aligned rectangle (clipped square)
    assert torch.equal(cut[~zeroed.unsqueeze(1).expand_as(cut)], plain[~zeroed.unsqueeze(1).expand_as(plain)])


def test_channels_last_output_and_bad_input():
    x, _ = next(iter(_loader(_images(), channels_last=True)))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(UnitgradError, match="uint8 NHWC"):
        _loader(_images().astype(np.float32))
    with pytest.raises(UnitgradError, match="labels"):
        DeviceLoader(_images(4), np.arange(3), 2, "cpu", MEAN, STD)


def test_balanced_subset_takes_per_class_sorted_and_deterministic():
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 30))
    idx = balanced_subset(labels, 7, seed=3)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx]).tolist() == [7] * 10
    np.testing.assert_array_equal(idx, balanced_subset(labels, 7, seed=3))
    assert not np.array_equal(idx, balanced_subset(labels, 7, seed=4))
    with pytest.raises(UnitgradError, match=r"^cannot take 31 examples per class: the smallest class has 30$"):
        balanced_subset(labels, 31, seed=0)  # each caller names its key (tests/test_train.py)


def test_flipped_and_plain_crops_match_a_per_sample_reference():
    """Every batch equals torchvision-style crop-then-flip of the padded image, drawn from the epoch generator."""
    from unitgrad.data.loader import _epoch_generator

    images = _images(9)
    loader = _loader(images, drop_last=False, batch_size=4, crop_padding=3)
    loader.set_epoch(5)
    gen = _epoch_generator(0, 5)
    order, crop = torch.randperm(9, generator=gen), torch.randint(49, (9,), generator=gen)
    flipped = torch.rand(9, generator=gen) < 0.5
    padded = torch.nn.functional.pad(torch.from_numpy(images).permute(0, 3, 1, 2), (3, 3, 3, 3))
    crops = [padded[i, :, r : r + 32, c : c + 32] for i, r, c in zip(order, crop // 7, crop % 7)]
    expected = torch.stack([x.flip(-1) if f else x for x, f in zip(crops, flipped)])
    got = torch.cat([x for x, _ in loader])
    assert torch.equal(torch.from_numpy(_pixels(got)).permute(0, 3, 1, 2), expected)
