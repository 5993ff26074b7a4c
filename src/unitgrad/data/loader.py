"""Batches straight from device memory: the whole (sub)set lives on the device, augmented in batch.

Per epoch, one CPU generator seeded by (seed, epoch) draws the shuffle and every augmentation
parameter, so a run is identical on CPU and GPU and across restarts. Random crop (zero padding, as
torchvision's RandomCrop) and horizontal flip are one indexing of a view of every crop window per
batch; no per-sample Python work.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from unitgrad.errors import UnitgradError

# Per-channel pixel statistics of the training sets (pixels scaled to [0, 1]).
CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}


def balanced_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted int64 indices of `per_class` examples of every class, drawn without replacement."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    if per_class < 1 or counts.min() < per_class:
        raise UnitgradError(f"cannot take {per_class} examples per class: the smallest class has {counts.min()}")
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in range(counts.size)]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class DeviceLoader:
    """Iterates (x, y): x float32 normalised NCHW on `device`, y int64 on `device`.

    train=True shuffles and augments; train=False keeps the order and the images as they are.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        device: str | torch.device,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool = True,
        seed: int = 0,
        crop_padding: int = 4,
        flip: bool = True,
        cutout: int = 0,
        drop_last: bool = True,
        channels_last: bool = False,
    ) -> None:
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise UnitgradError(f"images must be uint8 NHWC with 3 channels, got {images.dtype} {images.shape}")
        if len(labels) != len(images):
            raise UnitgradError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1 or crop_padding < 0 or cutout < 0:
            raise UnitgradError("batch_size must be >= 1 and crop_padding, cutout >= 0")
        self.device = torch.device(device)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.crop_padding, self.flip, self.cutout = crop_padding, flip, cutout
        self.drop_last, self.channels_last = drop_last, channels_last
        self.epoch = 0
        pad = crop_padding if train else 0
        # Stored uint8 (4x less memory traffic per gather than float); normalised per batch.
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2)
        x = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        # With flips, mirrored copies follow the originals (twice the memory): a flipped crop is a crop of one.
        if train and flip:
            x = torch.cat([x, x.flip(-1)])
        self.images = x.contiguous()
        self.labels = torch.from_numpy(labels.astype(np.int64)).to(self.device)
        self.scale = (1.0 / (255.0 * torch.tensor(std, dtype=torch.float32))).view(1, 3, 1, 1).to(self.device)
        self.shift = (-torch.tensor(mean, dtype=torch.float32) / torch.tensor(std)).view(1, 3, 1, 1).to(self.device)
        self.size = images.shape[1]
        self.windows = self._crop_windows() if train else None

    def _crop_windows(self) -> torch.Tensor:
        """(images, span, span, 3, size, size) view: [i, row, col] is the crop of image i at (row, col).

        Indexing it gathers a batch of crops without building per-pixel offsets (`torch.take` with
        them measured 2x slower on CPU, four broadcast index tensors slower still).
        """
        span, padded = 2 * self.crop_padding + 1, self.images.shape[-1]
        size, image_stride = self.size, self.images.stride(0)
        shape = (len(self.images), span, span, 3, size, size)
        return self.images.as_strided(shape, (image_stride, padded, 1, padded * padded, padded, 1))

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle and augmentations of `epoch` (same (seed, epoch) -> same batches)."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, size = len(self.labels), self.size
        if self.train:
            gen = _epoch_generator(self.seed, self.epoch)
            order = torch.randperm(n, generator=gen)
            span = 2 * self.crop_padding + 1
            crop = torch.randint(span * span, (n,), generator=gen)
            rows, cols = crop // span, crop % span
            if self.flip:
                flipped = torch.rand(n, generator=gen) < 0.5
                # A flipped crop at column c reads the mirror of the image at column span - 1 - c.
                source = order + n * flipped
                cols = torch.where(flipped, span - 1 - cols, cols)
            else:
                source = order
            centres = torch.randint(size, (n, 2), generator=gen)
            order, source, rows, cols, centres = (t.to(self.device) for t in (order, source, rows, cols, centres))
        ramp = torch.arange(size, device=self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = slice(start, start + self.batch_size)
            if self.train:
                idx = order[batch]
                x = self.windows[source[batch], rows[batch], cols[batch]]
            else:
                idx = batch
                x = self.images[idx]
            x = x.float().mul_(self.scale).add_(self.shift)
            if self.train and self.cutout:
                x.mul_(self._cutout_keep(centres[batch], ramp))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]

    def _cutout_keep(self, centres: torch.Tensor, ramp: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) mask, 0 inside a `cutout`-sided square (clipped at the border) around each centre."""
        lo = centres - self.cutout // 2
        inside_y = (ramp >= lo[:, :1]) & (ramp < lo[:, :1] + self.cutout)
        inside_x = (ramp >= lo[:, 1:]) & (ramp < lo[:, 1:] + self.cutout)
        return (~(inside_y[:, :, None] & inside_x[:, None, :])).unsqueeze(1).float()
