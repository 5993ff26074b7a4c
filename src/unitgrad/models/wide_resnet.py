"""Wide ResNets (Zagoruyko & Komodakis 2016) for CIFAR: WRN-28-10, WRN-28-2, WRN-16-8.

WRN-d-k: a 3×3 conv with 16 channels, three groups of (d-4)/6 pre-activation basic blocks with
16k/32k/64k channels (strides 1, 2, 2), BN-ReLU, global average pool, linear. Where a block changes
the shape its shortcut is a 1×1 conv on the pre-activated input, as in the authors' code.
WRN-28-10 has 36.48 M parameters for 10 classes (the paper: 36.5 M).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models import register_model
from torch import nn

from unitgrad.models.base import CifarClassifier, entrypoint_kwargs


class PreActBlock(nn.Module):
    """BN-ReLU-conv3×3-BN-ReLU-conv3×3 plus shortcut (He et al. 2016b ordering)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.projection = (
            nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False) if stride != 1 or in_chs != out_chs else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.projection is None else self.projection(pre))


class WideResNet(CifarClassifier):
    """WRN-`depth`-`widen` for 32×32 inputs."""

    def __init__(
        self, depth: int, widen: int, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        layers: list[nn.Module] = [nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)]
        in_chs = 16
        for group, width in enumerate((16 * widen, 32 * widen, 64 * widen)):
            for i in range(n):
                layers.append(PreActBlock(in_chs, width, 2 if group > 0 and i == 0 else 1))
                in_chs = width
        layers += [nn.BatchNorm2d(in_chs), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self._finish(in_chs, num_classes, drop_rate)


@register_model
def cifar_wrn28_10(pretrained: bool = False, **kwargs) -> WideResNet:
    """WRN-28-10, 36.5 M parameters: the SAM paper's main CIFAR model."""
    return WideResNet(28, 10, **entrypoint_kwargs("cifar_wrn28_10", pretrained, kwargs))


@register_model
def cifar_wrn28_2(pretrained: bool = False, **kwargs) -> WideResNet:
    """WRN-28-2, 1.47 M parameters."""
    return WideResNet(28, 2, **entrypoint_kwargs("cifar_wrn28_2", pretrained, kwargs))


@register_model
def cifar_wrn16_8(pretrained: bool = False, **kwargs) -> WideResNet:
    """WRN-16-8, 11.0 M parameters."""
    return WideResNet(16, 8, **entrypoint_kwargs("cifar_wrn16_8", pretrained, kwargs))
