"""Models: any timm model, plus CIFAR architectures registered in timm's registry on import.

`timm.create_model("cifar_wrn28_10", num_classes=10)` works once `unitgrad.models` is imported.
"""

from unitgrad.models import cifar_resnet, pyramidnet, upanets, wide_resnet  # noqa: F401  (registers cifar_*)
from unitgrad.models.factory import cifar_model_names, create_model

__all__ = ["cifar_model_names", "create_model"]
