"""`create_model`: any timm model for CIFAR, with ImageNet stems adapted to 32×32 inputs."""

from __future__ import annotations

import timm
from timm.models.convnext import ConvNeXt
from timm.models.efficientnet import EfficientNet
from timm.models.mobilenetv3 import MobileNetV3
from timm.models.regnet import RegNet
from timm.models.resnet import ResNet
from torch import nn

from unitgrad.errors import UnitgradError

# Where each ImageNet CNN family keeps its downsampling stem: (stem attribute, max-pool attribute).
# The first conv of the stem becomes 3×3 stride 1 and the max-pool is removed, so the first stage
# sees the full 32×32 image, as in the CIFAR ResNets.
_CNN_STEMS: dict[type[nn.Module], tuple[str, str | None]] = {
    ResNet: ("conv1", "maxpool"),
    EfficientNet: ("conv_stem", None),
    MobileNetV3: ("conv_stem", None),
    ConvNeXt: ("stem", None),
    RegNet: ("stem", None),
}
# Vision transformers take the input size as constructor arguments: 32×32 images in 4×4 patches.
_VIT_MODULES = ("vision_transformer", "deit")
_VIT_CIFAR_KWARGS = {"img_size": 32, "patch_size": 4}


def cifar_model_names() -> list[str]:
    """The CIFAR architectures this package registers in timm."""
    return timm.list_models("cifar_*")


def create_model(name: str, num_classes: int, cifar_stem: bool = True, drop_rate: float = 0.0) -> nn.Module:
    """A randomly initialised timm model `name` with a `num_classes`-way classifier.

    `cifar_stem` adapts ImageNet models to 32×32 inputs: CNNs (ResNet family, EfficientNet,
    MobileNetV3, ConvNeXt, RegNet) get a 3×3 stride-1 first conv and no max-pool; ViT/DeiT models
    get img_size=32 and 4×4 patches. The registered `cifar_*` models are CIFAR-shaped already.
    `drop_rate` is timm's dropout before the classifier.
    """
    if not timm.is_model(name):
        raise UnitgradError(
            f"unknown model '{name}': use a timm model name (timm.list_models()) or one of "
            + ", ".join(cifar_model_names())
        )
    arch = name.split(".")[0]
    kwargs = {"num_classes": num_classes, "drop_rate": drop_rate}
    adapt = cifar_stem and not arch.startswith("cifar_")
    is_vit = arch in timm.list_models(module=_VIT_MODULES)
    if adapt and is_vit:
        kwargs.update(_VIT_CIFAR_KWARGS)
    model = timm.create_model(name, **kwargs)
    if adapt and not is_vit:
        _adapt_cnn_stem(model, name)
    return model


def _adapt_cnn_stem(model: nn.Module, name: str) -> None:
    family = next((cls for cls in _CNN_STEMS if isinstance(model, cls)), None)
    if family is None:
        raise UnitgradError(
            f"no 32x32 stem adaptation for '{name}' ({type(model).__name__}): "
            "set model.cifar_stem: false or use a ResNet, EfficientNet, MobileNetV3, ConvNeXt, RegNet or ViT"
        )
    stem_attr, pool_attr = _CNN_STEMS[family]
    stem = getattr(model, stem_attr)
    if isinstance(stem, nn.Conv2d):
        setattr(model, stem_attr, _cifar_conv(stem))
    else:
        path, conv = next((p, m) for p, m in stem.named_modules() if isinstance(m, nn.Conv2d))
        parent_path, _, child = path.rpartition(".")
        setattr(stem.get_submodule(parent_path), child, _cifar_conv(conv))
    if pool_attr is not None:
        setattr(model, pool_attr, nn.Identity())


def _cifar_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A 3×3 stride-1 'same' conv with the channels of `conv`, freshly initialised like timm's stems."""
    new = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=conv.bias is not None)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new
