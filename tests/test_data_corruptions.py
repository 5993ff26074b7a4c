"""Corruptions: shape and dtype kept, deterministic per seed, stronger at higher severity, exact pieces."""

import numpy as np
import pytest

from unitgrad.data import CORRUPTIONS, corrupt
from unitgrad.data import corruptions as C
from unitgrad.errors import UnitgradError

RANDOM = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
    "spatter",
}


@pytest.fixture(scope="module")
def images():
    """Four structured 32x32 images: gradients, a disc, stripes, a checkerboard with colour."""
    ramp = np.linspace(0, 1, 32)
    yy, xx = np.meshgrid(ramp, ramp, indexing="ij")
    disc = ((yy - 0.5) ** 2 + (xx - 0.4) ** 2 < 0.08).astype(float)
    stripes = (np.sin(xx * 20) > 0).astype(float)
    checker = ((np.arange(32)[:, None] // 4 + np.arange(32)[None, :] // 4) % 2).astype(float)
    channels = [
        np.stack([yy, xx, 1 - yy], -1),
        np.stack([disc, 0.3 + 0.5 * disc, 0.8 - 0.6 * disc], -1),
        np.stack([stripes * 0.9, 0.2 + 0.6 * yy, stripes * xx], -1),
        np.stack([checker * 0.7 + 0.1, 0.5 * np.ones_like(xx), 1 - checker * 0.8], -1),
    ]
    return (np.stack(channels) * 255).round().astype(np.uint8)


def test_the_list_is_the_15_standard_then_the_4_extra():
    assert len(CORRUPTIONS) == 19 and len(set(CORRUPTIONS)) == 19
    assert CORRUPTIONS[:3] == ("gaussian_noise", "shot_noise", "impulse_noise")
    assert CORRUPTIONS[15:] == ("speckle_noise", "gaussian_blur", "spatter", "saturate")


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_shape_dtype_and_determinism(images, name):
    for severity in (1, 5):
        out = corrupt(images, name, severity, seed=0)
        assert out.shape == images.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, corrupt(images, name, severity, seed=0))
    if name in RANDOM:
        assert not np.array_equal(corrupt(images, name, 3, seed=0), corrupt(images, name, 3, seed=1))
    # A batch is corrupted image by image: the first image does not depend on its batch mates for
    # deterministic corruptions.
    if name not in RANDOM:
        np.testing.assert_array_equal(corrupt(images[:1], name, 3), corrupt(images, name, 3)[:1])


# The published elastic constants give severity 1 the largest affine jitter (2.56 px vs 0.96 px at 5),
# so its pixel change is not monotone in severity; the other standard ones are.
@pytest.mark.parametrize("name", [n for n in CORRUPTIONS[:15] if n != "elastic_transform"])
def test_severity_5_changes_the_image_more_than_severity_1(images, name):
    def change(severity):
        return np.abs(corrupt(images, name, severity).astype(float) - images).mean()

    assert change(5) > change(1)


def test_elastic_transform_moves_pixels_at_every_severity(images):
    for severity in range(1, 6):
        assert np.abs(corrupt(images, "elastic_transform", severity).astype(float) - images).mean() > 1


def test_contrast_is_the_published_formula(images):
    x = images.astype(np.float64) / 255
    means = x.mean(axis=(1, 2), keepdims=True)
    expected = (np.clip((x - means) * 0.4 + means, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(corrupt(images, "contrast", 3), expected)


@pytest.mark.parametrize(
    "name, channel, change",
    [("brightness", 2, lambda v: np.clip(v + 0.15, 0, 1)), ("saturate", 1, lambda s: np.clip(s * 2.5 + 0.2, 0, 1))],
)
def test_hsv_corruptions_match_an_hsv_round_trip(images, name, channel, change):
    color = pytest.importorskip("skimage.color")
    severity = 3 if name == "brightness" else 5
    hsv = color.rgb2hsv(images / 255.0)
    hsv[..., channel] = change(hsv[..., channel])
    expected = (np.clip(color.hsv2rgb(hsv), 0, 1) * 255).astype(np.uint8)
    # Both truncate to uint8; float rounding may put a value on either side of an integer.
    assert np.abs(corrupt(images, name, severity).astype(int) - expected).max() <= 1


def test_clipped_zoom_matches_scipy_zoom_of_the_centre():
    from scipy import ndimage

    x = np.random.default_rng(0).random((2, 32, 32, 3))
    for factor in (1.0, 1.07, 1.25, 2.25):
        crop = int(np.ceil(32 / factor))
        top = (32 - crop) // 2
        zoomed = ndimage.zoom(x[:, top : top + crop, top : top + crop], (1, factor, factor, 1), order=1)
        trim = (zoomed.shape[1] - 32) // 2
        np.testing.assert_allclose(C._clipped_zoom(x, factor), zoomed[:, trim : trim + 32, trim : trim + 32], atol=1e-9)


def test_motion_blur_is_a_one_sided_gaussian_line():
    x = np.zeros((1, 32, 32, 1))
    x[0, 10, 20] = 1.0
    out = C._motion_blur(x, radius=3, sigma=1.0, angles=np.array([0.0]))
    weights = np.exp(-(np.arange(7) ** 2) / 2)
    # Output pixel (10, c) reads (10, c + i): the impulse spreads to the left, weight i at c = 20 - i.
    np.testing.assert_allclose(out[0, 10, 14:21, 0], (weights / weights.sum())[::-1])
    assert out.sum() == pytest.approx(1.0) and out[0, 9].sum() == 0


def test_defocus_kernel_is_a_normalised_symmetric_disc():
    for radius, alias in ((0.3, 0.4), (1.5, 0.1)):
        kernel = C._disk_kernel(radius, alias)
        assert kernel.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(kernel, kernel.T)
        np.testing.assert_allclose(kernel, kernel[::-1, ::-1])


def test_glass_blur_copies_neighbours_without_moving_pixels_far(images):
    out = corrupt(images, "glass_blur", 1).astype(int)
    # Severity 1 blurs with sigma 0.05 (almost nothing); each pixel comes from within 2 px.
    padded = np.pad(images.astype(int), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    nearest = np.min(
        [
            np.abs(out - padded[:, 2 + dy : 34 + dy, 2 + dx : 34 + dx]).sum(-1)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        ],
        axis=0,
    )
    assert np.median(nearest) <= 3


def test_bad_arguments_are_errors(images):
    with pytest.raises(UnitgradError, match="unknown corruption"):
        corrupt(images, "rain", 1)
    with pytest.raises(UnitgradError, match="severity"):
        corrupt(images, "fog", 6)
    with pytest.raises(UnitgradError, match="uint8"):
        corrupt(images.astype(np.float32), "fog", 1)
    with pytest.raises(UnitgradError, match=r"\(N, 32, 32, 3\)"):
        corrupt(images[0], "fog", 1)


def test_pixelating_a_flat_image_changes_nothing():
    flat = np.full((2, 32, 32, 3), 137, dtype=np.uint8)
    for severity in range(1, 6):
        np.testing.assert_array_equal(corrupt(flat, "pixelate", severity), flat)


def test_spatter_edges_are_found_per_image():
    square = np.zeros((1, 32, 32), dtype=np.uint8)
    square[0, 8:20, 10:25] = 200
    noise = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32), dtype=np.uint8)
    edges = C._canny(np.concatenate([square, noise]), 50, 150)
    np.testing.assert_array_equal(edges[:1], C._canny(square, 50, 150))  # batch mates change nothing
    # Sobel gives both pixels of a step the same magnitude; as in OpenCV the upper/left one wins, so the
    # top and left sides lie just outside the bright block (rows 8-19, cols 10-24), bottom and right inside.
    outline = edges[0]
    assert outline[7, 11:24].all() and outline[9:18, 9].all() and outline[19, 10:25].all() and outline[8:19, 24].all()
    assert outline.sum() == 50
