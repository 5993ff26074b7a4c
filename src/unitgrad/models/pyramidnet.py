"""Additive PyramidNets (Han, Kim & Kim 2017) for CIFAR: PyramidNet-110 α = 270 (basic), PyramidNet-272 α = 200.

The width grows linearly by α/N per block over all N blocks, block k having c_k = round(16 + kα/N) channels
(rounded, not truncated, as SAM's code and most implementations; this adds about 0.2 M parameters to the
bottleneck network). Basic block (N = 3·(depth-2)/6): BN-conv3×3-BN-ReLU-conv3×3-BN, c_k output channels.
Bottleneck block (N = 3·(depth-2)/9): BN-conv1×1-BN-ReLU-conv3×3-BN-ReLU-conv1×1-BN, c_k → 4·c_k channels.
No ReLU after the addition. Shortcut: 2×2 average pooling where the stride is 2, zero-padding for the extra
channels (no parameters). Published sizes (the paper's Table 4): PyramidNet-110 α = 270 28.3 M, PyramidNet-272
α = 200 (bottleneck) 26.0 M.

PyramidNet-272 α = 200 is the only PyramidNet in SAM's code (google-research/sam, `Pyramid_ShakeDrop`:
pyramid_depth 272, pyramid_alpha 200, bottleneck blocks, rounded widths) and ASAM's "PyramidNet-272" row.
That code always adds ShakeDrop (parameter-free); `cifar_pyramidnet272_a200` here has none, so it is the
"PyramidNet" without ShakeDrop, whose depth and α SAM's paper does not state.
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


class BottleneckPyramidBlock(nn.Module):
    def __init__(self, in_chs: int, width: int, stride: int) -> None:
        super().__init__()
        out_chs = 4 * width
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_chs),
            nn.Conv2d(in_chs, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_chs, 1, bias=False),
            nn.BatchNorm2d(out_chs),
        )
        self.pool = nn.AvgPool2d(2, ceil_mode=True) if stride > 1 else nn.Identity()
        self.extra = out_chs - in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + F.pad(self.pool(x), (0, 0, 0, 0, 0, self.extra))


class PyramidNet(CifarClassifier):
    """Additive PyramidNet-`depth` with widening factor `alpha`, basic or `bottleneck` blocks."""

    def __init__(
        self,
        depth: int,
        alpha: float,
        bottleneck: bool = False,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        layers_per_block = 9 if bottleneck else 6
        if (depth - 2) % layers_per_block:
            raise ValueError(f"PyramidNet depth must be {layers_per_block}n+2 for these blocks, got {depth}")
        n = (depth - 2) // layers_per_block
        total = 3 * n
        block = BottleneckPyramidBlock if bottleneck else PyramidBlock
        layers: list[nn.Module] = [nn.Conv2d(in_chans, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)]
        in_chs = 16
        for k in range(1, total + 1):
            width = round(16 + alpha * k / total)
            stride = 2 if k in (n + 1, 2 * n + 1) else 1
            layers.append(block(in_chs, width, stride))
            in_chs = 4 * width if bottleneck else width
        layers += [nn.BatchNorm2d(in_chs), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self._finish(in_chs, num_classes, drop_rate)


@register_model
def cifar_pyramidnet110_a270(pretrained: bool = False, **kwargs) -> PyramidNet:
    """PyramidNet-110, α = 270, basic blocks: 28.5 M parameters (the paper's Table 4: 28.3 M)."""
    return PyramidNet(110, 270, **entrypoint_kwargs("cifar_pyramidnet110_a270", pretrained, kwargs))


@register_model
def cifar_pyramidnet272_a200(pretrained: bool = False, **kwargs) -> PyramidNet:
    """PyramidNet-272, α = 200, bottleneck blocks, no ShakeDrop: SAM's and ASAM's PyramidNet, 26.2 M parameters."""
    kwargs = entrypoint_kwargs("cifar_pyramidnet272_a200", pretrained, kwargs)
    return PyramidNet(272, 200, bottleneck=True, **kwargs)
