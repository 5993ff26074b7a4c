"""The 19 CIFAR-10-C / CIFAR-100-C corruptions at 5 severities, vectorised over the batch.

Severity constants are those of the benchmark's CIFAR generation script (Hendrycks & Dietterich,
`make_cifar_c.py`); the implementations are this project's own (numpy/scipy, no ImageMagick or
OpenCV). Where the published script relies on a library's behaviour, that behaviour is reproduced
and named in a comment. Randomness comes from one numpy Generator seeded by (seed, name, severity).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from unitgrad.errors import UnitgradError

STANDARD = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
CORRUPTIONS = STANDARD + EXTRA
SEVERITIES = (1, 2, 3, 4, 5)
SIZE = 32

Batch = np.ndarray  # float64 (N, 32, 32, 3) in [0, 1]


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """`images` (uint8 NHWC, 32x32 RGB) with corruption `name` at `severity` 1..5; uint8, same shape."""
    if name not in CORRUPTIONS:
        raise UnitgradError(f"unknown corruption '{name}': choose one of {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise UnitgradError(f"corruption severity {severity!r} must be one of 1..5")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (SIZE, SIZE, 3):
        raise UnitgradError(f"corrupt expects uint8 images of shape (N, 32, 32, 3), got {images.dtype} {images.shape}")
    if len(images) == 0:
        return images.copy()
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), severity])
    # float64 throughout, as the published script: uint8 truncation then lands on the same side.
    out = _CORRUPTIONS[name](images / 255.0, severity - 1, rng)
    # The published arrays come from np.uint8(float pixels): truncation, not rounding.
    return (np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


# ---------------------------------------------------------------- noise


def gaussian_noise(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    scale = (0.04, 0.06, 0.08, 0.09, 0.10)[s]
    return x + rng.normal(scale=scale, size=x.shape)


def shot_noise(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    photons = (500, 250, 100, 75, 50)[s]
    return rng.poisson(x * photons) / photons


def impulse_noise(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[s]
    # Salt-and-pepper on every channel value independently, half salt, half pepper.
    hit = rng.random(x.shape) < amount
    salt = rng.random(x.shape) < 0.5
    return np.where(hit, salt.astype(np.float32), x)


def speckle_noise(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    scale = (0.06, 0.1, 0.12, 0.16, 0.2)[s]
    return x + x * rng.normal(scale=scale, size=x.shape)


# ---------------------------------------------------------------- blur


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """Gaussian blur over the two spatial axes (axes 1, 2) of a batch."""
    sigmas = (0, sigma, sigma) + (0,) * (x.ndim - 3)
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def gaussian_blur(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    return _gaussian(x, (0.4, 0.6, 0.7, 0.8, 1.0)[s])


def glass_blur(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    sigma, delta, iterations = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))[s]
    x = (_gaussian(x, sigma) * 255).astype(np.uint8)
    n = np.arange(len(x))
    positions = range(SIZE - delta, delta, -1)
    # The published script's "swap" assigns through numpy views, so each visited pixel copies its
    # neighbour and the neighbour keeps its value; the released data were made that way.
    shifts = rng.integers(-delta, delta, size=(iterations, len(positions), len(positions), 2, len(x)))
    for it in range(iterations):
        for i, h in enumerate(positions):
            for j, w in enumerate(positions):
                dx, dy = shifts[it, i, j]
                x[:, h, w] = x[n, h + dy, w + dx]
    return _gaussian(x / 255.0, sigma)


def _disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """Anti-aliased disk: a binary disk (on a grid of at least 17x17) smoothed by a 3x3 Gaussian."""
    half = 8 if radius <= 8 else int(np.ceil(radius))
    grid = np.arange(-half, half + 1)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    taps = np.exp(-(np.array([-1.0, 0.0, 1.0]) ** 2) / (2 * alias_blur**2))
    kernel = ndimage.correlate(disk, np.outer(taps, taps) / taps.sum() ** 2, mode="mirror")
    rows, cols = np.nonzero(kernel > 1e-12)
    return kernel[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def defocus_blur(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    radius, alias_blur = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[s]
    kernel = _disk_kernel(radius, alias_blur)
    return ndimage.correlate(x, kernel[None, :, :, None], mode="mirror")


def _motion_blur(x: np.ndarray, radius: int, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick-style motion blur: a one-sided line of 2*radius+1 Gaussian-weighted taps per image.

    Tap i reads the pixel i steps away along `angles` (degrees, per image), edges clamped.
    """
    steps = np.arange(2 * radius + 1)
    weights = np.exp(-(steps**2) / (2 * sigma**2))
    weights /= weights.sum()
    theta = np.deg2rad(angles)[:, None]
    # ceil(v - 0.5): the rounding ImageMagick uses for the tap offsets.
    off_x = np.ceil(steps * np.cos(theta) - 0.5).astype(np.int64)
    off_y = np.ceil(steps * np.sin(theta) - 0.5).astype(np.int64)
    n, ramp = np.arange(len(x))[:, None, None], np.arange(SIZE)
    out = np.zeros_like(x)
    for i, weight in enumerate(weights):
        rows = np.clip(ramp[None, :] + off_y[:, i : i + 1], 0, SIZE - 1)[:, :, None]
        cols = np.clip(ramp[None, :] + off_x[:, i : i + 1], 0, SIZE - 1)[:, None, :]
        out += weight * x[n, rows, cols]
    return out


def motion_blur(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    radius, sigma = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))[s]
    blurred = _motion_blur(x, radius, sigma, rng.uniform(-45, 45, size=len(x)))
    # The published pipeline round-trips through an 8-bit PNG.
    return np.round(blurred * 255) / 255


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre of every image by `factor` (bilinear, as scipy's zoom) and crop back to 32x32."""
    crop = int(np.ceil(SIZE / factor))
    top = (SIZE - crop) // 2
    zoomed = round(crop * factor)
    trim = (zoomed - SIZE) // 2
    # Output pixel i of the zoomed crop samples crop coordinate i * (crop - 1) / (zoomed - 1).
    source = np.arange(trim, trim + SIZE) * (crop - 1) / (zoomed - 1)
    low = np.minimum(np.floor(source).astype(np.int64), crop - 2)
    weights = np.zeros((SIZE, crop))
    weights[np.arange(SIZE), low] = 1 - (source - low)
    weights[np.arange(SIZE), low + 1] = source - low
    window = x[:, top : top + crop, top : top + crop].reshape(len(x), crop, crop, -1)
    # Separable: resample rows, then columns, as batched matrix products (robust to a busy CPU,
    # unlike one large multi-threaded product).
    rows = (weights @ window.reshape(len(x), crop, -1)).reshape(len(x), SIZE, crop, -1)
    out = np.swapaxes(np.swapaxes(rows, 2, 3) @ weights.T, 2, 3)
    return out.reshape((len(x), SIZE, SIZE) + x.shape[3:]).astype(x.dtype)


def zoom_blur(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    factors = np.arange(1, (1.06, 1.11, 1.16, 1.21, 1.26)[s], 0.01)
    total = x.copy()
    for factor in factors:
        total += _clipped_zoom(x, factor)
    return total / (len(factors) + 1)


# ---------------------------------------------------------------- weather


def _grey(x: Batch) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def snow(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    loc, scale, zoom, threshold, radius, sigma, keep = (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    )[s]
    flakes = _clipped_zoom(rng.normal(loc, scale, size=x.shape[:3]), zoom)
    flakes[flakes < threshold] = 0
    flakes = (np.clip(flakes, 0, 1) * 255).astype(np.uint8).astype(np.float32)[..., None]
    flakes = np.round(_motion_blur(flakes, radius, sigma, rng.uniform(-135, -45, size=len(x)))) / 255
    x = keep * x + (1 - keep) * np.maximum(x, _grey(x)[..., None] * 1.5 + 0.5)
    return x + flakes + flakes[:, ::-1, ::-1]


@functools.cache
def _frost_textures() -> tuple[np.ndarray, ...]:
    """The five frost photographs the benchmark samples from, shrunk to 1/5 as in its script.

    They ship as package data of `imagecorruptions-imaug` (read from disk, the package is not imported).
    """
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise UnitgradError(
            "frost needs the frost images of imagecorruptions-imaug: pip install imagecorruptions-imaug"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "frost"
    # The script draws randint(5), so only the first five of the six images are ever used.
    names = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
    return tuple(
        _shrink(np.asarray(Image.open(folder / name).convert("RGB"), dtype=np.float32) / 255) for name in names
    )


def _shrink(image: np.ndarray, factor: float = 0.2) -> np.ndarray:
    """Bilinear resize by `factor` sampling at pixel centres without anti-aliasing (OpenCV INTER_LINEAR)."""

    def coords(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(round(n_in * factor)) + 0.5) / factor - 0.5, 0, n_in - 1)
        low = np.floor(src).astype(np.int64)
        return low, np.minimum(low + 1, n_in - 1), (src - low)[:, None]

    r0, r1, fr = coords(image.shape[0])
    c0, c1, fc = coords(image.shape[1])
    rows = image[r0] * (1 - fr[..., None]) + image[r1] * fr[..., None]
    return (rows[:, c0] * (1 - fc) + rows[:, c1] * fc).astype(np.float32)


def frost(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    keep, amount = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))[s]
    textures = _frost_textures()
    which = rng.integers(len(textures), size=len(x))
    patches = np.empty_like(x)
    for k, texture in enumerate(textures):
        members = np.flatnonzero(which == k)
        tops = rng.integers(0, texture.shape[0] - SIZE, size=len(members))
        lefts = rng.integers(0, texture.shape[1] - SIZE, size=len(members))
        ramp = np.arange(SIZE)
        patches[members] = texture[(tops[:, None] + ramp)[:, :, None], (lefts[:, None] + ramp)[:, None, :]]
    return keep * x + amount * patches


def _plasma(n: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 32, 32) diamond-square fractals in [0, 1] on a periodic grid; noise amplitude wibble**2."""
    grid = np.zeros((n, SIZE, SIZE))
    wibble, step = 100.0, SIZE
    while step >= 2:
        half = step // 2
        corners = grid[:, ::step, ::step]
        # Square step: the centre of each square = mean of its 4 corners + noise.
        around = corners + np.roll(corners, -1, axis=1)
        around = around + np.roll(around, -1, axis=2)
        grid[:, half::step, half::step] = around / 4 + wibble * rng.uniform(-wibble, wibble, around.shape)
        # Diamond step: edge midpoints = mean of the 2 corners and the 2 centres beside them + noise.
        centres = grid[:, half::step, half::step]
        corners = grid[:, ::step, ::step]
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        grid[:, ::step, half::step] = top / 4 + wibble * rng.uniform(-wibble, wibble, top.shape)
        left = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        grid[:, half::step, ::step] = left / 4 + wibble * rng.uniform(-wibble, wibble, left.shape)
        step, wibble = half, wibble / decay
    grid -= grid.min(axis=(1, 2), keepdims=True)
    return grid / grid.max(axis=(1, 2), keepdims=True)


def fog(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    amount, decay = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))[s]
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    x = x + amount * _plasma(len(x), decay, rng)[..., None]
    return x * peak / (peak + amount)


# ---------------------------------------------------------------- digital


def brightness(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    """HSV value + c: at fixed hue and saturation every channel scales with the value."""
    add = (0.05, 0.1, 0.15, 0.2, 0.3)[s]
    value = x.max(axis=3, keepdims=True)
    new_value = np.clip(value + add, 0, 1)
    return np.where(value > 0, x * new_value / np.maximum(value, 1e-12), new_value)


def saturate(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    """HSV saturation * a + b: each channel keeps its relative place between value and minimum."""
    mul, add = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))[s]
    value = x.max(axis=3, keepdims=True)
    sat = np.where(value > 0, (value - x.min(axis=3, keepdims=True)) / np.maximum(value, 1e-12), 0)
    new_sat = np.clip(sat * mul + add, 0, 1)
    scaled = value - (value - x) * new_sat / np.maximum(sat, 1e-12)
    # Grey pixels have hue 0 (red) in skimage's conversion, so added saturation tints them red.
    red = np.concatenate([value, value * (1 - new_sat), value * (1 - new_sat)], axis=3)
    return np.where(sat > 0, scaled, red)


def contrast(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    factor = (0.75, 0.5, 0.4, 0.3, 0.15)[s]
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * factor + means


def _pil_roundtrip(x: Batch, transform: Callable[[Image.Image], Image.Image]) -> Batch:
    pixels = (np.clip(x, 0, 1) * 255).astype(np.uint8)
    return np.stack([np.asarray(transform(Image.fromarray(img))) for img in pixels]) / 255.0


def pixelate(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    side = int(SIZE * (0.95, 0.9, 0.85, 0.75, 0.65)[s])
    return _pil_roundtrip(x, lambda im: im.resize((side, side), Image.BOX).resize((SIZE, SIZE), Image.BOX))


def jpeg_compression(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    quality = (80, 65, 58, 50, 40)[s]

    def roundtrip(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(buffer).convert("RGB")

    return _pil_roundtrip(x, roundtrip)


def _fold(index: np.ndarray, mode: str) -> np.ndarray:
    """Map out-of-range pixel indices back inside: 'mirror' = reflect101 (OpenCV), 'reflect' = symmetric."""
    period = 2 * SIZE - 2 if mode == "mirror" else 2 * SIZE
    index = np.mod(index, period)
    return np.where(index < SIZE, index, period - index - (0 if mode == "mirror" else 1))


def _bilinear(x: Batch, rows: np.ndarray, cols: np.ndarray, mode: str) -> Batch:
    """Sample every image of `x` at per-pixel (rows, cols) of shape (N, 32, 32), bilinearly."""
    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    n = np.arange(len(x))[:, None, None]
    ra, rb, ca, cb = _fold(r0, mode), _fold(r0 + 1, mode), _fold(c0, mode), _fold(c0 + 1, mode)
    top = x[n, ra, ca] * (1 - fc) + x[n, ra, cb] * fc
    bottom = x[n, rb, ca] * (1 - fc) + x[n, rb, cb] * fc
    return top * (1 - fr) + bottom * fr


def elastic_transform(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    """A random affine warp (3 jittered anchor points), then a smooth random displacement field."""
    alpha, sigma, jitter = (
        (SIZE * 0, SIZE * 0, SIZE * 0.08),
        (SIZE * 0.05, SIZE * 0.2, SIZE * 0.07),
        (SIZE * 0.08, SIZE * 0.06, SIZE * 0.06),
        (SIZE * 0.1, SIZE * 0.04, SIZE * 0.05),
        (SIZE * 0.1, SIZE * 0.03, SIZE * 0.03),
    )[s]
    n = len(x)
    centre, half = SIZE // 2, SIZE // 3
    anchors = np.array([[centre + half, centre + half], [centre + half, centre - half], [centre - half] * 2], float)
    moved = anchors + rng.uniform(-jitter, jitter, size=(n, 3, 2))
    # Output pixel p reads the input at A^-1 p, where A maps the anchors onto the moved anchors.
    homogeneous = np.concatenate([moved, np.ones((n, 3, 1))], axis=2)  # (n, 3 points, [x y 1])
    inverse = np.linalg.solve(homogeneous, np.broadcast_to(anchors, (n, 3, 2)))  # (n, 3, 2)
    ys, xs = np.meshgrid(np.arange(SIZE, dtype=float), np.arange(SIZE, dtype=float), indexing="ij")
    grid = np.stack([xs, ys, np.ones_like(xs)], axis=-1)  # (32, 32, 3)
    source = np.einsum("hwk,nkc->nhwc", grid, inverse)
    x = _bilinear(x, source[..., 1], source[..., 0], "mirror")
    if alpha == 0:
        return x
    dx = _gaussian(rng.uniform(-1, 1, size=(n, SIZE, SIZE)), sigma, mode="reflect", truncate=3) * alpha
    dy = _gaussian(rng.uniform(-1, 1, size=(n, SIZE, SIZE)), sigma, mode="reflect", truncate=3) * alpha
    return _bilinear(x, ys + dy, xs + dx, "reflect")


# ---------------------------------------------------------------- spatter


def _canny(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Boolean Canny edges of uint8 (N, H, W) images as OpenCV's Canny finds them (3x3 Sobel with
    replicated border, L1 magnitude, non-maximum suppression in 4 directions, 8-connected hysteresis)."""
    image = image.astype(np.float64)

    # Sobel per image (ndimage.sobel would also smooth across the batch axis).
    def sobel(derivative_axis: int, smoothing_axis: int) -> np.ndarray:
        derivative = ndimage.correlate1d(image, [-1.0, 0.0, 1.0], axis=derivative_axis, mode="nearest")
        return ndimage.correlate1d(derivative, [1.0, 2.0, 1.0], axis=smoothing_axis, mode="nearest")

    gy, gx = sobel(1, 2), sobel(2, 1)
    magnitude = np.abs(gx) + np.abs(gy)
    # Quantise the gradient direction to 0, 45, 90 or 135 degrees and keep local maxima along it.
    angle = np.mod(np.rad2deg(np.arctan2(gy, gx)), 180)
    sector = (np.floor((angle + 22.5) / 45).astype(int)) % 4
    padded = np.pad(magnitude, ((0, 0), (1, 1), (1, 1)))
    h, w = image.shape[1:]
    keep = np.zeros_like(magnitude, dtype=bool)
    for k, (dr, dc) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
        ahead = padded[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        behind = padded[:, 1 - dr : 1 - dr + h, 1 - dc : 1 - dc + w]
        # OpenCV's tie-breaking: on a plateau the upper/left pixel wins; diagonals need a strict maximum.
        not_behind = magnitude > ahead if dr and dc else magnitude >= ahead
        keep |= (sector == k) & (magnitude > behind) & not_behind
    weak = keep & (magnitude > low)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # connect pixels within an image, never across the batch
    components, _ = ndimage.label(weak, structure=structure)
    strong_ids = np.unique(components[weak & (magnitude > high)])
    return np.isin(components, strong_ids[strong_ids > 0])


def _equalise(image: np.ndarray) -> np.ndarray:
    """Per-image histogram equalisation of uint8 (N, H, W) images (OpenCV's equalizeHist mapping)."""
    n = len(image)
    hist = np.bincount((image + 256 * np.arange(n)[:, None, None]).ravel(), minlength=256 * n).reshape(n, 256)
    cdf = hist.cumsum(axis=1)
    first = np.argmax(hist > 0, axis=1)[:, None]
    first_count = np.take_along_axis(hist, first, axis=1)
    total = image[0].size
    scale = 255.0 / np.maximum(total - first_count, 1)
    lut = np.clip(np.round((cdf - first_count) * scale), 0, 255)
    lut[np.arange(256)[None, :] < first] = 0
    # A constant image maps to itself.
    lut = np.where(first_count == total, np.arange(256)[None, :], lut).astype(np.uint8)
    return np.take_along_axis(lut, image.reshape(n, -1).astype(np.int64), axis=1).reshape(image.shape)


def spatter(x: Batch, s: int, rng: np.random.Generator) -> Batch:
    """Water droplets (severities 1-3) or mud splashes (4-5) from a thresholded smoothed noise layer.

    Each step of the published water recipe is reproduced (Canny, distance to the edges capped at 20,
    box blur, histogram equalisation, emboss kernel, box blur), except that the distance is exact
    where OpenCV's 5x5 mask approximates it (<= 0.14 px apart); after equalisation a few pixels differ.
    """
    loc, scale, sigma, threshold, intensity, mud = (
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    )[s]
    liquid = _gaussian(rng.normal(loc, scale, size=x.shape[:3]), sigma)
    liquid[liquid < threshold] = 0
    if mud:
        mask = _gaussian((liquid > threshold).astype(np.float32), intensity)
        mask[mask < 0.8] = 0
        mask = mask[..., None]
        return x * (1 - mask) + mask * np.array([63, 42, 20], dtype=np.float32) / 255
    liquid8 = (np.clip(liquid, 0, 1) * 255).astype(np.uint8)
    edges = _canny(liquid8, 50, 150)
    # Distance to the nearest edge within the same image (the batch axis is made too long to cross).
    distance = ndimage.distance_transform_edt(~edges, sampling=(1e6, 1, 1))
    distance = np.where(edges.any(axis=(1, 2), keepdims=True), np.minimum(distance, 20), 20)
    distance = ndimage.uniform_filter(distance, size=(1, 3, 3), mode="mirror").astype(np.uint8)
    distance = _equalise(distance)
    ridge = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)[None]
    distance = np.clip(np.round(ndimage.correlate(distance.astype(np.float64), ridge, mode="mirror")), 0, 255)
    distance = ndimage.uniform_filter(distance, size=(1, 3, 3), mode="mirror")
    wet = liquid8 * distance
    peak = wet.max(axis=(1, 2), keepdims=True)
    wet = np.where(peak > 0, wet / np.maximum(peak, 1e-12), 0) * intensity
    # Pale turquoise water.
    return x + wet[..., None] * np.array([175, 238, 238], dtype=np.float32) / 255


_CORRUPTIONS: dict[str, Callable[[Batch, int, np.random.Generator], Batch]] = {
    name: globals()[name] for name in CORRUPTIONS
}
