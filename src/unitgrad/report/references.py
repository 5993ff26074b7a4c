"""Published numbers the claims check compares against, copied as data with their sources.

Accuracies are percentages as published (SAM's Table 1 reports error; stored here as 100 − error).
`model` is the name of the artifact's equivalent architecture, or None where the artifact has no
such model (the claim can then never be comparable). Recipe facts (official defaults, CIFAR-C
layout) are inputs to the setup, not claims, and live in params.yaml and the data module.
"""

from __future__ import annotations

from dataclasses import dataclass

from unitgrad.report.style import dataset_label

PAPER = "Update in Unit Gradient (PUGD), arXiv 2110.00199"
SAM_PAPER = "Foret et al., SAM, arXiv 2010.01412"
ASAM_PAPER = "Kwon et al., ASAM, arXiv 2102.11600"

# Training-set sizes of the full datasets: paper-scale runs train on all of it.
FULL_TRAIN_SIZE = {"cifar10": 50_000, "cifar100": 50_000, "tiny_imagenet": 100_000}
PAPER_EPOCHS = 200


@dataclass(frozen=True)
class PublishedNumber:
    """One published test accuracy (%) of one optimizer on one dataset/architecture."""

    source: str
    dataset: str
    model_label: str
    model: str | None
    optimizer: str
    value: float
    ci: float | None = None
    noise: float = 0.0
    epochs: int = PAPER_EPOCHS
    note: str = ""

    @property
    def claim(self) -> str:
        noise = f", {round(100 * self.noise)} % label noise" if self.noise else ""
        where = f"{dataset_label(self.dataset)}{noise}"
        return f"{self.model_label} + {self.optimizer.upper()} on {where}: {self.value:.2f} %"


@dataclass(frozen=True)
class DirectionalClaim:
    """`optimizer` beats `reference` on `metric` in a paired comparison of the same configurations."""

    key: str
    claim: str
    source: str
    metric: str  # column of results/paired.csv
    noisy: bool  # judged on label-noise runs (noise > 0) instead of clean runs
    optimizer: str = "pugd"
    reference: str = "sam"


DIRECTIONAL = [
    DirectionalClaim("pugd_sam_clean", "PUGD better than SAM: clean test accuracy", f"{PAPER}, v1 abstract",
                     "clean_acc", noisy=False),
    DirectionalClaim("pugd_sam_noise", "PUGD better than SAM under label noise (clean test accuracy)",
                     f"{PAPER}, v1 abstract ('more robust')", "clean_acc", noisy=True),
    DirectionalClaim("pugd_sam_corruption", "PUGD better than SAM under corruptions (mCA)",
                     f"{PAPER}, v1 abstract ('more robust')", "mca", noisy=False),
]

_PRETRAINED = "fine-tuned from ImageNet-21k weights; the artifact trains from scratch"
_ASAM_SOURCE = f"{ASAM_PAPER}, CIFAR results (values via secondary sources; recipe from the official code)"
_ASAM_TABLE = {  # model label → (artifact model, {dataset: (SGD, SAM, ASAM)})
    "ResNet-20": ("cifar_resnet20", {"cifar10": (93.18, 93.56, 93.82), "cifar100": (69.76, 71.06, 71.40)}),
    "ResNet-56": ("cifar_resnet56", {"cifar10": (94.58, 95.18, 95.42), "cifar100": (73.12, 75.16, 75.86)}),
    "WRN-28-2": ("cifar_wrn28_2", {"cifar10": (95.13, 95.74, 95.94), "cifar100": (75.28, 77.25, 77.54)}),
    "WRN-28-10": ("cifar_wrn28_10", {"cifar10": (96.34, 96.98, 97.28), "cifar100": (81.56, 83.42, 83.68)}),
    "PyramidNet-272": (None, {"cifar10": (98.44, 98.55, 98.68), "cifar100": (88.91, 89.36, 89.90)}),
}
_SAM_TABLE1 = {  # model label → (artifact model, {dataset: ((SGD error, ±), (SAM error, ±))})
    "WRN-28-10": ("cifar_wrn28_10", {"cifar10": ((3.5, 0.1), (2.7, 0.1)), "cifar100": ((18.8, 0.2), (16.5, 0.2))}),
    "PyramidNet": (None, {"cifar10": ((4.0, None), (2.7, None)), "cifar100": ((19.7, None), (14.6, None))}),
}
_SAM_TABLE4 = {"sgd": (84.8, 68.8, 48.2, 26.2), "sam": (95.1, 93.4, 90.5, 77.9)}  # noise 20/40/60/80 %


def _published() -> list[PublishedNumber]:
    numbers = [
        PublishedNumber(f"{PAPER}, later versions", "cifar10", "ViT-B/16", None, "pugd", 99.13, note=_PRETRAINED),
        PublishedNumber(f"{PAPER}, later versions", "cifar100", "ViT-B/16", None, "pugd", 93.95, note=_PRETRAINED),
        PublishedNumber(f"{PAPER}, later versions", "tiny_imagenet", "DeiT-B/16", None, "pugd", 91.02,
                        note=_PRETRAINED),
        PublishedNumber(f"{PAPER}, later versions", "tiny_imagenet", "ViT-B/16", None, "pugd", 90.74,
                        note=_PRETRAINED),
    ]
    for label, (model, by_dataset) in _SAM_TABLE1.items():
        for dataset, errors in by_dataset.items():
            for optimizer, (error, ci) in zip(("sgd", "sam"), errors):
                numbers.append(PublishedNumber(
                    f"{SAM_PAPER}, Table 1 (100 − error; 5 runs, 95 % CI)", dataset, label, model, optimizer,
                    round(100 - error, 2), ci,
                    note="" if model else "PyramidNet-272 is not in the artifact (it has cifar_pyramidnet110_a270)"))
    for optimizer, accs in _SAM_TABLE4.items():
        for noise, acc in zip((0.2, 0.4, 0.6, 0.8), accs):
            numbers.append(PublishedNumber(
                f"{SAM_PAPER}, Table 4 (symmetric label noise)", "cifar10", "ResNet-32", "cifar_resnet32", optimizer,
                acc, noise=noise, note="SAM used rho = 0.1 (0.05 at 80 %)" if optimizer == "sam" else ""))
    for label, (model, by_dataset) in _ASAM_TABLE.items():
        for dataset, accs in by_dataset.items():
            for optimizer, acc in zip(("sgd", "sam", "asam"), accs):
                numbers.append(PublishedNumber(
                    _ASAM_SOURCE, dataset, label, model, optimizer, acc,
                    note="label smoothing 0.1 in the recipe" if model else "PyramidNet-272 is not in the artifact"))
    return numbers


PUBLISHED = _published()
