"""Pieces shared by the CIFAR architectures: the timm-style classifier interface and entrypoint checks."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unitgrad.errors import UnitgradError

# timm.create_model passes these to every entrypoint; the CIFAR models have no pretrained weights.
_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


class CifarClassifier(nn.Module):
    """Base of the CIFAR networks: `features` → global average pool → dropout → linear.

    Gives the timm classifier interface (`num_classes`, `forward_features`, `forward_head`,
    `get_classifier`, `reset_classifier`) so timm utilities and fine-tuning code work unchanged.
    Subclasses build `self.features` (ending in the final activation) and call `_finish`.
    """

    features: nn.Module

    def _finish(self, num_features: int, num_classes: int, drop_rate: float) -> None:
        self.num_features = num_features
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        # He init (fan_out) as in the residual-network papers; BN starts as the identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x).flatten(1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool not in (None, "avg"):
            raise UnitgradError(f"global_pool '{global_pool}' is not supported: CIFAR models use 'avg'")
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def entrypoint_kwargs(name: str, pretrained: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The constructor kwargs of a timm entrypoint call; pretrained weights do not exist for `name`."""
    if pretrained:
        raise UnitgradError(f"no pretrained weights for '{name}': train it from scratch (pretrained=False)")
    return {k: v for k, v in kwargs.items() if k not in _TIMM_ONLY_KWARGS}
