"""The images and labels one run trains and monitors on: a class-balanced subset, label noise, a monitor set."""

from __future__ import annotations

import dataclasses

import numpy as np

from unitgrad.data import balanced_subset, load_cifar, noisy_labels, source_of
from unitgrad.errors import UnitgradError
from unitgrad.run_config import RunConfig


@dataclasses.dataclass
class TrainData:
    train_x: np.ndarray
    train_y: np.ndarray  # the labels trained on (noisy when noise > 0)
    monitor_x: np.ndarray  # the learning curves' images: test images, or training images the subset leaves out
    monitor_y: np.ndarray
    num_classes: int
    train_indices: np.ndarray
    clean_y: np.ndarray
    monitor_indices: np.ndarray  # indices into the training set of a holdout monitor set; empty for test
    source: dict[str, str | None]  # the data.sources candidate the cache was prepared from, and its md5


def load_data(cfg: RunConfig) -> TrainData:
    """The run's data. Both subsets are drawn with `subset_seed`, not the run seed, so runs that differ in
    seed or optimizer see the same images; with label noise, which labels flip is drawn with the run seed.
    A holdout monitor set is drawn from the training images the subset leaves out, with their true labels."""
    loader = cfg.loader
    x_tr, y_tr, x_te, y_te, classes = load_cifar(cfg.dataset, cfg.data_root)
    indices = np.arange(len(y_tr), dtype=np.int64)
    if loader.train_per_class is not None:
        indices = _subset(y_tr, loader.train_per_class, loader.subset_seed, "data.loader.train_per_class", "training")
    clean = y_tr[indices].astype(np.int64)
    labels = clean
    if cfg.noise > 0:
        labels = noisy_labels(clean, len(classes), cfg.noise, kind=cfg.noise_kind, seed=cfg.seed)
    monitor_indices = np.zeros(0, dtype=np.int64)
    if cfg.train.monitor == "holdout":
        left_out = np.setdiff1d(np.arange(len(y_tr)), indices)
        if left_out.size == 0:
            raise UnitgradError(
                "train.monitor is holdout but the subset uses every training image: set data.loader."
                "train_per_class or train.monitor: test"
            )
        per_class = cfg.train.monitor_per_class
        chosen = (
            np.arange(left_out.size)
            if per_class is None
            else _subset(y_tr[left_out], per_class, loader.subset_seed, "train.monitor_per_class", "left-out training")
        )
        monitor_indices = left_out[chosen]
        x_mon, y_mon = x_tr[monitor_indices], y_tr[monitor_indices]
    elif cfg.train.monitor_per_class is not None:  # `unitgrad evaluate` scores the whole test set
        monitored = _subset(y_te, cfg.train.monitor_per_class, loader.subset_seed, "train.monitor_per_class", "test")
        x_mon, y_mon = x_te[monitored], y_te[monitored]
    else:
        x_mon, y_mon = x_te, y_te
    source = source_of(cfg.dataset, cfg.data_root)
    return TrainData(x_tr[indices], labels, x_mon, y_mon, len(classes), indices, clean, monitor_indices, source)


def _subset(labels: np.ndarray, per_class: int, seed: int, key: str, split: str) -> np.ndarray:
    fewest = int(np.bincount(labels).min())
    if per_class > fewest:
        raise UnitgradError(
            f"{key} is {per_class}, more than the {split} set has per class ({fewest}): lower it or set null"
        )
    return balanced_subset(labels, per_class, seed=seed)
