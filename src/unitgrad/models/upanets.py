"""UPANets (Tseng et al., arXiv 2103.08640) for CIFAR, as the official PUGD code builds them.

The official PUGD code (hanktseng131415go/PUGD, main.py) trains only `UPANets(filters=16, blocks=1)` on
32×32 images; `cifar_upanets16` is that network. Structure, from the paper's description, the constructor
arguments the official code passes (filters f, a block multiplier b, image size 32) and a reading of its
model file:

- Channel pixel attention (CPA): a fully connected layer across the channels of every pixel (a 1×1
  convolution with bias) followed by BatchNorm.
- UPA block (in → out channels): two 3×3 convolutions in → 2·out → out, each followed by BN and ReLU; the
  CPA of the block's input is added and the sum is layer-normalised over (C, H, W) without affine
  parameters. Three kinds: "dense" concatenates the input with that result (in + out channels);
  "same" adds a second CPA of the input; "down" does the same and then 2×2 average-pools (the convolutions
  themselves keep stride 1).
- Stem: a "same" UPA block 3 → f. Four stages with P = f, 2f, 4f, 8f: a head block ("same" in stage 0,
  "down" after it) to P channels, then 4·b dense blocks each adding P/(4b) channels: every stage ends at 2P.
- Extreme connection (head): the stem and every stage output become one vector each, layer-normalised
  (GAP + spatial pixel attention, a linear map of the H·W pixels of each channel to one value); the five are
  concatenated (31f features), batch-normalised and classified by a linear layer.

Weights keep torch's default initialisation, as in the official code. `cifar_upanets16` has 1,512,431
parameters for 10 classes (1,557,161 for 100), the official code's model has the same, and with its weights
loaded it gives the same logits (to 1e-14 in float64; checked once by hand, the official code is not a
dependency). The UPANets paper's parameter counts could not be read offline, so the count is pinned against
this structure (tests/test_models.py), not against a published number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models import register_model
from torch import nn

from unitgrad.models.base import CifarClassifier, entrypoint_kwargs


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[1:])


class ChannelPixelAttention(nn.Sequential):
    """Per-pixel fully connected layer across channels (1×1 convolution with bias), then BatchNorm."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__(nn.Conv2d(in_chs, out_chs, 1), nn.BatchNorm2d(out_chs))


class UPABlock(nn.Module):
    """conv-BN-ReLU ×2 plus the input's CPA, layer-normalised; then `kind` = "dense" | "same" | "down"."""

    def __init__(self, in_chs: int, out_chs: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.convs = nn.Sequential(
            nn.Conv2d(in_chs, 2 * out_chs, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * out_chs),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * out_chs, out_chs, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(inplace=True),
        )
        self.cpa = ChannelPixelAttention(in_chs, out_chs)
        self.shortcut_cpa = ChannelPixelAttention(in_chs, out_chs) if kind != "dense" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _layer_norm(self.convs(x) + self.cpa(x))
        if self.shortcut_cpa is None:
            return torch.cat([x, out], 1)
        out = out + self.shortcut_cpa(x)
        return F.avg_pool2d(out, 2) if self.kind == "down" else out


class SpatialPixelAttention(nn.Module):
    """One value per channel: a linear map of the channel's H·W pixels."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.fc = nn.Linear(size * size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(2)).unsqueeze(-1)  # (B, C, 1, 1)


class UPANet(CifarClassifier):
    """UPANets with `filters` channels in the first stage and `blocks`·4 dense blocks per stage."""

    def __init__(
        self,
        filters: int = 16,
        blocks: int = 1,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int = 32,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        dense = 4 * blocks
        self.stem = UPABlock(in_chans, filters, "same")
        widths, size, taps, stages = [filters], img_size, [SpatialPixelAttention(img_size)], []
        for i in range(4):
            planes = filters * 2**i
            growth = planes // dense
            if i:
                size //= 2
            head = UPABlock(widths[-1], planes, "down" if i else "same")
            stages.append(nn.Sequential(head, *(UPABlock(planes + k * growth, growth, "dense") for k in range(dense))))
            widths.append(planes + dense * growth)
            taps.append(SpatialPixelAttention(size))
        self.stages = nn.ModuleList(stages)
        self.spatial = nn.ModuleList(taps)  # stem, stage 0..3
        num_features = sum(widths)  # 31f: f + 2f + 4f + 8f + 16f
        self.features_norm = nn.BatchNorm2d(num_features)  # on (B, 31f, 1, 1): BatchNorm1d of the vector
        self._finish(num_features, num_classes, drop_rate)

    def _init_weights(self) -> None:
        """torch's default initialisation, as the official code (no He re-initialisation)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The extreme connection's normalised 31f features as (B, 31f, 1, 1)."""
        outputs = [self.stem(x)]
        for stage in self.stages:
            outputs.append(stage(outputs[-1]))
        pooled = [_layer_norm(out.mean((2, 3), keepdim=True) + spa(out)) for out, spa in zip(outputs, self.spatial)]
        return self.features_norm(torch.cat(pooled[::-1], 1))


@register_model
def cifar_upanets16(pretrained: bool = False, **kwargs) -> UPANet:
    """UPANets with 16 filters and block multiplier 1 (the official PUGD code's model): 1.02 M parameters."""
    return UPANet(16, 1, **entrypoint_kwargs("cifar_upanets16", pretrained, kwargs))
