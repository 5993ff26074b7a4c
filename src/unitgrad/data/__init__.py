"""CIFAR data: verified sources, the prepared cache, an on-device loader, label noise, corruptions."""

from unitgrad.data.cifar import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CIFAR100_SUPERCLASSES,
    load_cifar,
    prepare,
    source_of,
)
from unitgrad.data.cifar_c import load_corruptions, prepare_corruptions
from unitgrad.data.corruptions import CORRUPTIONS, corrupt
from unitgrad.data.loader import CIFAR_MEAN, CIFAR_STD, DeviceLoader, balanced_subset
from unitgrad.data.noise import noisy_labels

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR100_SUPERCLASSES",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "CORRUPTIONS",
    "DeviceLoader",
    "balanced_subset",
    "corrupt",
    "load_cifar",
    "load_corruptions",
    "noisy_labels",
    "prepare",
    "prepare_corruptions",
    "source_of",
]
