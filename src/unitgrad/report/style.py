"""The one plotting style: Okabe–Ito colours fixed per optimizer, a marker each, readable sizes.

Okabe & Ito's palette stays distinguishable under the common colour-vision deficiencies; the
markers keep optimizers apart in greyscale print too. An optimizer keeps its colour in every figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

# Known optimizers first, in the order the paper discusses them; unknown names follow alphabetically.
OPTIMIZER_ORDER = ["sgd", "sgd_2x", "sam", "asam", "pugd", "ugd"]
OPTIMIZER_LABELS = {
    "sgd": "SGD",
    "sgd_2x": "SGD (2× epochs)",
    "sam": "SAM",
    "asam": "ASAM",
    "pugd": "PUGD",
    "ugd": "UGD",
    "adagrad": "Adagrad",
    "ngd": "normalised GD",
}
_COLOURS = {
    "sgd": OKABE_ITO["black"],
    "sgd_2x": OKABE_ITO["orange"],
    "sam": OKABE_ITO["blue"],
    "asam": OKABE_ITO["sky_blue"],
    "pugd": OKABE_ITO["vermillion"],
    "ugd": OKABE_ITO["reddish_purple"],
    "adagrad": OKABE_ITO["bluish_green"],
    "ngd": OKABE_ITO["orange"],
}  # the last two: toy paths only
_SPARE_COLOURS = [OKABE_ITO["bluish_green"], OKABE_ITO["yellow"]]
_MARKERS = {"sgd": "o", "sgd_2x": "s", "sam": "^", "asam": "v", "pugd": "D", "ugd": "P"}
HEATMAP_CMAP = "cividis"  # perceptually uniform and colour-vision-deficiency safe

RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # embed TrueType so the PDF text stays text
}


def ordered(optimizers) -> list[str]:
    names = set(optimizers)
    known = [o for o in OPTIMIZER_ORDER if o in names]
    return known + sorted(names - set(known))


def colour(optimizer: str) -> str:
    if optimizer in _COLOURS:
        return _COLOURS[optimizer]
    return _SPARE_COLOURS[sum(map(ord, optimizer)) % len(_SPARE_COLOURS)]


def marker(optimizer: str) -> str:
    return _MARKERS.get(optimizer, "X")


def label(optimizer: str) -> str:
    return OPTIMIZER_LABELS.get(optimizer, optimizer.upper())


def dataset_label(dataset: str) -> str:
    return {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tiny_imagenet": "Tiny ImageNet"}.get(dataset, dataset)


def panel_title(dataset: str, model: str) -> str:
    return f"{dataset_label(dataset)} · {model}"


def use() -> None:
    """Apply the style to matplotlib's global settings (call before drawing)."""
    plt.rcParams.update(RC)
