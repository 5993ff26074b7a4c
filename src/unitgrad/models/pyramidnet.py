"""Additive PyramidNet (Han, Kim & Kim 2017) for CIFAR: PyramidNet-110 with α = 270, basic blocks.

The width grows linearly by α/N per block over all N = 3·(depth-2)/6 blocks, block k having
round(16 + kα/N) channels. Block: BN-conv3×3-BN-ReLU-conv3×3-BN (no ReLU after the addition).
Shortcut: 2×2 average pooling where the stride is 2, zero-padding for the extra channels (no
parameters). The paper's Table 4 lists PyramidNet-110 (α = 270, basic) at 28.3 M parameters;
the bottleneck PyramidNet-272 (α = 200) that SAM/ASAM use is a different model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models import register_model
from torch import nn

from unitgrad.models.base import CifarClassifier, entrypoint_kwargs


class PyramidBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.pool = nn.AvgPool2d(2, ceil_mode=True) if stride > 1 else nn.Identity()
        self.extra = out_chs - in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(F.relu(self.bn2(self.conv1(self.bn1(x))))))
        return out + F.pad(self.pool(x), (0, 0, 0, 0, 0, self.extra))


class PyramidNet(CifarClassifier):
    """Additive PyramidNet-`depth` with widening factor `alpha` (basic blocks)."""

    def __init__(
        self, depth: int, alpha: float, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"PyramidNet depth with basic blocks must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        total = 3 * n
        layers: list[nn.Module] = [nn.Conv2d(in_chans, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)]
        in_chs = 16
        for k in range(1, total + 1):
            width = round(16 + alpha * k / total)
            stride = 2 if k in (n + 1, 2 * n + 1) else 1
            layers.append(PyramidBlock(in_chs, width, stride))
            in_chs = width
        layers += [nn.BatchNorm2d(in_chs), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self._finish(in_chs, num_classes, drop_rate)


@register_model
def cifar_pyramidnet110_a270(pretrained: bool = False, **kwargs) -> PyramidNet:
    """PyramidNet-110, α = 270, basic blocks: 28.5 M parameters (the paper's Table 4: 28.3 M)."""
    return PyramidNet(110, 270, **entrypoint_kwargs("cifar_pyramidnet110_a270", pretrained, kwargs))
