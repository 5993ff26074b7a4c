"""CIFAR ResNets: He et al. 2016 (§4.2) ResNet-8/20/32/56 and the CIFAR ResNet-18.

ResNet-(6n+2): a 3×3 conv with 16 channels, three stages of n basic blocks with 16/32/64 channels
(strides 1, 2, 2), global average pool, linear. Shortcuts are option A of the paper: identity,
and where the shape changes, stride-2 subsampling with zero-padded extra channels (no parameters),
which is what gives the published sizes (ResNet-20 0.27 M, ResNet-32 0.46 M, ResNet-56 0.85 M).

ResNet-18 (CIFAR variant): the ImageNet ResNet-18 body (2-2-2-2 basic blocks, 64-512 channels)
behind a 3×3 stride-1 stem without max-pool; shortcuts are option B (1×1 conv + BN projections),
11.17 M parameters for 10 classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models import register_model
from torch import nn

from unitgrad.models.base import CifarClassifier, entrypoint_kwargs


def conv3x3(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: subsample by `stride`, append zero channels up to `out_chs`."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_chs - in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus shortcut, then ReLU (post-activation, He et al. 2016a)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, projection: bool) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_chs, out_chs, stride)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = conv3x3(out_chs, out_chs)
        self.bn2 = nn.BatchNorm2d(out_chs)
        if stride == 1 and in_chs == out_chs:
            self.shortcut: nn.Module = nn.Identity()
        elif projection:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chs)
            )
        else:
            self.shortcut = ZeroPadShortcut(in_chs, out_chs, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(CifarClassifier):
    """Post-activation ResNet for 32×32 inputs: 3×3 stem, stages of basic blocks, avg-pool, linear."""

    def __init__(
        self,
        blocks_per_stage: tuple[int, ...],
        widths: tuple[int, ...],
        projection: bool,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv3x3(in_chans, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        in_chs = widths[0]
        for stage, (n_blocks, width) in enumerate(zip(blocks_per_stage, widths)):
            for i in range(n_blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(in_chs, width, stride, projection))
                in_chs = width
        self.features = nn.Sequential(*layers)
        self._finish(in_chs, num_classes, drop_rate)


def _he_resnet(name: str, depth: int, pretrained: bool, kwargs: dict) -> CifarResNet:
    n = (depth - 2) // 6
    return CifarResNet((n, n, n), (16, 32, 64), projection=False, **entrypoint_kwargs(name, pretrained, kwargs))


@register_model
def cifar_resnet8(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-8 (one block per stage, 75 k parameters): the smoke-scale model."""
    return _he_resnet("cifar_resnet8", 8, pretrained, kwargs)


@register_model
def cifar_resnet20(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-20, 0.27 M parameters."""
    return _he_resnet("cifar_resnet20", 20, pretrained, kwargs)


@register_model
def cifar_resnet32(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-32, 0.46 M parameters: the SAM paper's label-noise model."""
    return _he_resnet("cifar_resnet32", 32, pretrained, kwargs)


@register_model
def cifar_resnet56(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-56, 0.85 M parameters."""
    return _he_resnet("cifar_resnet56", 56, pretrained, kwargs)


@register_model
def cifar_resnet18(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-18 for CIFAR (3×3 stride-1 stem, no max-pool, projection shortcuts), 11.17 M parameters."""
    kwargs = entrypoint_kwargs("cifar_resnet18", pretrained, kwargs)
    return CifarResNet((2, 2, 2, 2), (64, 128, 256, 512), projection=True, **kwargs)
