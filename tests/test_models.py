"""CIFAR architectures in timm's registry (published sizes, shapes) and `create_model`."""

import pytest
import timm
import torch

from unitgrad.errors import UnitgradError
from unitgrad.models import cifar_model_names, create_model

# Parameters for 10 classes. Published: ResNet-20/32/56 0.27/0.46/0.85 M (He et al. 2016, Table 6),
# WRN-28-10 36.5 M and WRN-16-8 11.0 M (Zagoruyko & Komodakis 2016), CIFAR ResNet-18 11.2 M,
# PyramidNet-110 α=270 28.3 M and PyramidNet-272 α=200 (bottleneck) 26.0 M (Han et al. 2017, Table 4; widths
# rounded here, truncated there: +0.16 M). UPANets: the paper's counts could not be read (see upanets.py).
PUBLISHED_PARAMS = {
    "cifar_resnet20": 0.27e6,
    "cifar_resnet32": 0.46e6,
    "cifar_resnet56": 0.85e6,
    "cifar_resnet18": 11.2e6,
    "cifar_wrn28_10": 36.5e6,
    "cifar_wrn16_8": 11.0e6,
    "cifar_pyramidnet110_a270": 28.3e6,
    "cifar_pyramidnet272_a200": 26.0e6,
}
# Exact counts of this implementation: a change to any architecture shows up here.
EXACT_PARAMS = {
    "cifar_resnet8": 75_290,
    "cifar_resnet20": 269_722,
    "cifar_resnet32": 464_154,
    "cifar_resnet56": 853_018,
    "cifar_resnet18": 11_173_962,
    "cifar_wrn28_2": 1_467_610,
    "cifar_wrn16_8": 10_961_370,
    "cifar_wrn28_10": 36_479_194,
    "cifar_pyramidnet110_a270": 28_485_477,
    "cifar_pyramidnet272_a200": 26_210_842,
    "cifar_upanets16": 1_512_431,
}
SMALL = ["cifar_resnet8", "cifar_resnet20", "cifar_wrn28_2"]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_cifar_model_is_registered_in_timm():
    assert sorted(cifar_model_names()) == sorted(EXACT_PARAMS)


@pytest.mark.parametrize("name", sorted(EXACT_PARAMS))
def test_parameter_counts(name):
    count = n_params(timm.create_model(name, num_classes=10))
    assert count == EXACT_PARAMS[name]
    if name in PUBLISHED_PARAMS:
        assert count == pytest.approx(PUBLISHED_PARAMS[name], rel=0.01)


def test_classifier_size_follows_num_classes():
    # Only the final linear layer depends on the class count: 64 features × 90 more classes + 90 biases.
    assert n_params(timm.create_model("cifar_resnet32", num_classes=100)) - EXACT_PARAMS["cifar_resnet32"] == 65 * 90


@pytest.mark.parametrize("name", SMALL)
def test_forward_shape_and_gradients(name):
    model = create_model(name, num_classes=7)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_resnet18_forward_shape():
    with torch.inference_mode():
        assert create_model("cifar_resnet18", num_classes=7).eval()(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_timm_classifier_interface():
    model = timm.create_model("cifar_resnet8", num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (2, 64, 8, 8)
    assert torch.equal(model.forward_head(features), model(x))
    assert model.forward_head(features, pre_logits=True).shape == (2, 64)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3


def test_option_a_shortcut_has_no_parameters_and_pads_zeros():
    block = timm.create_model("cifar_resnet20").features[6]  # first block of stage 2: 16 → 32, stride 2
    assert sum(p.numel() for p in block.shortcut.parameters()) == 0
    x = torch.randn(1, 16, 8, 8)
    out = block.shortcut(x)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]) and not out[:, 16:].any()


def test_drop_rate_dropout_before_classifier_only_in_training():
    model = create_model("cifar_resnet8", 10, drop_rate=0.5)
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))
    torch.manual_seed(0)
    model.train()
    features = model.forward_features(x)
    assert (model.forward_head(features, pre_logits=True) == 0).any()


def test_pretrained_cifar_model_is_a_clear_error():
    with pytest.raises(UnitgradError, match="no pretrained weights for 'cifar_resnet8'"):
        timm.create_model("cifar_resnet8", pretrained=True)


@pytest.mark.parametrize("name", ["resnet18", "resnet26d"])
def test_timm_resnet_gets_a_cifar_stem(name):
    model = create_model(name, num_classes=10)
    assert isinstance(model.maxpool, torch.nn.Identity)
    first = next(m for m in model.conv1.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.kernel_size == (3, 3) and first.stride == (1, 1)
    # Stem stride 1 + no max-pool: the last stage of a 32×32 image is 4×4, as in the CIFAR ResNet-18.
    assert model.forward_features(torch.randn(1, 3, 32, 32)).shape[-2:] == (4, 4)


def test_imagenet_stem_is_kept_without_cifar_stem():
    model = create_model("resnet18", num_classes=10, cifar_stem=False).eval()
    assert model.conv1.kernel_size == (7, 7) and isinstance(model.maxpool, torch.nn.MaxPool2d)
    assert model.forward_features(torch.randn(1, 3, 32, 32)).shape[-2:] == (1, 1)


def test_other_cnn_families_get_a_stride_1_stem():
    model = create_model("mobilenetv3_small_050", num_classes=10)
    assert model.conv_stem.stride == (1, 1) and model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vit_uses_32px_images_in_4px_patches():
    model = create_model("vit_tiny_patch16_224", num_classes=10)
    assert model.patch_embed.patch_size == (4, 4) and model.patch_embed.num_patches == 64
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_model_names_the_fix():
    with pytest.raises(UnitgradError, match=r"unknown model 'resnet_9000': use a timm model name .*cifar_resnet8"):
        create_model("resnet_9000", 10)


def test_unsupported_stem_adaptation_names_the_fix():
    with pytest.raises(UnitgradError, match=r"set model\.cifar_stem: false"):
        create_model("ghostnet_050", 10)


def _upanets_params_by_hand(f: int, classes: int, img: int = 32) -> int:
    """UPANets' size from its description (upanets.py's docstring), layer by layer."""
    cpa = lambda i, o: i * o + o + 2 * o  # 1×1 conv with bias, BN
    convs = lambda i, o: 9 * i * 2 * o + 2 * 2 * o + 9 * 2 * o * o + 2 * o  # conv3×3-BN ×2
    block = lambda i, o, dense: convs(i, o) + cpa(i, o) * (1 if dense else 2)
    total = block(3, f, dense=False) + (img * img + 1)  # stem + its spatial attention
    size = img
    for stage in range(4):
        planes = f * 2**stage
        total += block(planes, planes, dense=False)  # head: stage 0's input is the stem's f = planes
        total += sum(block(planes + k * planes // 4, planes // 4, dense=True) for k in range(4))
        size //= 1 if stage == 0 else 2
        total += size * size + 1
    return total + 2 * 31 * f + 31 * f * classes + classes  # BN of the 31f features, classifier


@pytest.mark.parametrize("classes", [10, 100])
def test_upanets16_size_follows_its_description(classes):
    assert n_params(timm.create_model("cifar_upanets16", num_classes=classes)) == _upanets_params_by_hand(16, classes)


@pytest.mark.slow
def test_upanets16_stages_and_timm_interface():
    model = timm.create_model("cifar_upanets16", num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    shapes, out = [], model.stem(x)
    for stage in model.stages:
        out = stage(out)
        shapes.append(tuple(out.shape[1:]))
    assert shapes == [(32, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4)]  # every stage doubles its width P
    features = model.forward_features(x)
    assert features.shape == (2, 496, 1, 1) and model.num_features == 16 * 31
    assert torch.equal(model.forward_head(features), model(x))
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_pyramidnet272_is_the_bottleneck_network():
    model = timm.create_model("cifar_pyramidnet272_a200", num_classes=10)
    blocks = [m for m in model.features if hasattr(m, "residual")]
    assert len(blocks) == 90  # (272 - 2) / 9 per stage, 3 stages
    assert model.num_features == 4 * (16 + 200)
    with torch.inference_mode():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
