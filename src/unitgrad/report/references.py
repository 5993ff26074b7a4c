"""Published numbers the claims check compares against, each with its study and its source's protocol.

Accuracies are percentages as published (SAM's Table 1 reports error; stored here as 100 − error).
A published row names the **study** whose runs follow its source's protocol, the protocol itself
(field → value, the fields of `PROTOCOL_FIELDS` that the source states; unstated fields are not
checked) and the **metric** its source reported. A run is compared with the number only when its
recorded protocol matches field by field. `STUDIES` says, per study, what matches its source and
what deviates and why; `protocols_markdown` renders that for the README and the paper.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from unitgrad.report.style import dataset_label

PAPER = "Update in Unit Gradient (PUGD), arXiv 2110.00199"
SAM_PAPER = "Foret et al., SAM, arXiv 2010.01412"
ASAM_PAPER = "Kwon et al., ASAM, arXiv 2102.11600"

# Training-set sizes of the full datasets: a source's protocol trains on all of it.
FULL_TRAIN_SIZE = {"cifar10": 50_000, "cifar100": 50_000, "tiny_imagenet": 100_000}
FULL_TEST_SIZE = 10_000  # CIFAR-10/100 test images
PAPER_EPOCHS = 200
# The per-run protocol columns of results/runs.csv that a published protocol may name.
PROTOCOL_FIELDS = (
    "model",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "rho",
    "m",
    "label_smoothing",
    "augmentation",
    "bn_update",
    "asam_rule",
    "train_size",
    "noise_kind",
    "monitor_size",
)
METRIC_LABELS = {
    "clean_acc": "final epoch",
    "best_acc": "best epoch (optimistic: the test set picks the epoch)",
    "mca": "corruption mean accuracy, final epoch",
}


@dataclass(frozen=True)
class PublishedNumber:
    """One published test accuracy (%) and the protocol of the runs that may confirm or refute it.

    `protocols` maps each optimizer run that stands for the published column to its expected
    protocol; with several (SAM's SGD column = the better of sgd and sgd_2x) the better mean counts.
    `study` is None where the artifact cannot run the row at all (`note` says why); a protocol
    `model` of None means no artifact model is known to be the source's architecture (`note` again).
    """

    source: str
    study: str | None
    dataset: str
    model_label: str
    optimizer: str
    value: float
    protocols: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    metric: str = "clean_acc"
    ci: float | None = None
    noise: float = 0.0
    note: str = ""

    @property
    def model(self) -> str | None:
        return next(iter(self.protocols.values()), {}).get("model")

    @property
    def claim(self) -> str:
        noise = f", {round(100 * self.noise)} % label noise" if self.noise else ""
        where = f"{dataset_label(self.dataset)}{noise}"
        return f"{self.model_label} + {self.optimizer.upper()} on {where}: {self.value:.2f} %"


@dataclass(frozen=True)
class DirectionalClaim:
    """`optimizer` beats `reference` on `metric`, paired by seed within `study` (noisy: noise > 0 runs).

    A verdict needs the study's full protocol: ≥ PAPER_EPOCHS epochs, the full training set, the
    `protocol` fields, both optimizers on the same shared settings, and enough paired seeds.
    `reference_protocol` maps a noise rate to fields only the reference's runs must match (SAM's ρ
    per noise rate in Table 4).
    """

    key: str
    claim: str
    source: str
    study: str
    metric: str  # column `metric` of results/paired.csv
    noisy: bool
    protocol: Mapping[str, Any] = field(default_factory=dict)
    reference_protocol: Mapping[float, Mapping[str, Any]] = field(default_factory=dict)
    optimizer: str = "pugd"
    reference: str = "sam"


@dataclass(frozen=True)
class Study:
    """One study of the paper scale: which source's protocol it follows, how closely, and why not more."""

    name: str
    source: str
    matches: str
    deviates: str


_CROP_FLIP = "crop4+flip"
_UNSTATED_PYRAMIDNET = "architecture not stated in the paper"
_PRETRAINED = (
    "fine-tuned from ImageNet-21k pretrained weights; the artifact has no pretrained weights and trains "
    "every model from scratch"
)
_OFFICIAL_PUGD = {
    "batch_size": 100,
    "bn_update": "both_passes",
    "lr": 0.1,
    "weight_decay": 5e-4,
    "augmentation": _CROP_FLIP,
}

STUDIES = {
    study.name: study
    for study in [
        Study(
            "sam_table1",
            f"{SAM_PAPER}, Table 1 (hyper-parameters: Table 6)",
            "WRN-28-10 on CIFAR-10/100, 200 epochs, batch 256, m = 32, LR / WD / ρ per model (WRN: 0.1 / 5e-4 / "
            "0.05 and 0.1; PyramidNet: 0.05 / 5e-4 / 0.05 and 0.2), crop + flip, 5 seeds, final-epoch accuracy (the "
            "paper describes no best-epoch selection); the SGD column is the better of sgd and sgd_2x (400 epochs), "
            "as in the source",
            "m-sharpness: SAM perturbs each of 8 accelerators with its own 32-image sub-batch; here one device splits "
            "the batch into chunks of 32 with the same arithmetic. SAM's PyramidNet: the depth is not stated in the "
            "paper, so that row cannot be matched. Label smoothing and the BN rule are not stated, so not checked",
        ),
        Study(
            "sam_table4",
            f"{SAM_PAPER}, Table 4 (symmetric label noise)",
            "ResNet-32 on CIFAR-10, symmetric noise 20/40/60/80 %, 200 epochs, ρ = 0.1 (0.05 at 80 %), final-epoch "
            "clean test accuracy; sgd and sam against the published rows, pugd and asam for the robustness claim",
            "batch, LR, WD and m are not stated for this table, so not checked; ≥ 3 seeds (the source's count is "
            "not stated)",
        ),
        Study(
            "asam_table",
            f"{ASAM_PAPER}, CIFAR table; recipe from the official SamsungLabs/ASAM example",
            "ResNet-20, ResNet-56, WRN-28-2, WRN-28-10 on CIFAR-10/100, 200 epochs, batch 128, lr 0.1, wd 5e-4, "
            "label smoothing 0.1, crop + flip, ρ: SAM 0.05 / 0.10, ASAM 0.5 / 1.0, η = 0.01, the official rule "
            "(T = |w| + η only on parameters named 'weight'), BN statistics in both passes, best-epoch accuracy",
            "PyramidNet-272 is not in the artifact. The values come from secondary sources, and so does the "
            "best-epoch metric, which is optimistic. η is not a recorded run field, so not checked",
        ),
        Study(
            "pugd_official",
            "the official PUGD code (hanktseng131415go/PUGD, main.py + pugd.py)",
            "UPANets (16 filters, 1 block), batch 100, lr 0.1 for every method, wd 5e-4, cosine per epoch, crop + "
            "flip, BN statistics in both passes; sgd, sam, pugd",
            "200 epochs instead of the code's default 10; seeded runs paired by seed instead of unseeded single "
            "runs. No published number: the closest stand-in for the paper's own CIFAR protocol (its tables are "
            "not reachable), so it yields the directional PUGD-vs-SAM row only, on final-epoch accuracy (the code "
            "reports the best epoch)",
        ),
        Study(
            "main",
            f"{PAPER}, v1 abstract ('even better and more robust than SAM')",
            "every optimizer under one shared protocol on paired seeds: clean accuracy and corruptions (mCA); the "
            "label-noise claim is judged in sam_table4",
            "the paper's own protocol is unknown (its tables are not reachable), so only the direction of its "
            "claims is checked, not a number",
        ),
    ]
}
# The rows no study can run, as one more line of the protocols table.
UNRUNNABLE = ("—", f"{PAPER}, later versions (ViT-B/16, DeiT-B/16)", "—", f"cannot be run here: {_PRETRAINED}")


def _asam_protocols(model: str | None, dataset: str) -> dict[str, dict[str, Any]]:
    common = {
        "model": model,
        "epochs": PAPER_EPOCHS,
        "batch_size": 128,
        "lr": 0.1,
        "weight_decay": 5e-4,
        "label_smoothing": 0.1,
        "augmentation": _CROP_FLIP,
        "train_size": FULL_TRAIN_SIZE[dataset],
        "monitor_size": FULL_TEST_SIZE,
    }  # the best epoch, picked on the whole test set
    two_pass = {"m": 128, "bn_update": "both_passes"}  # the official example: one device, model.train() twice
    rho = {"sam": {"cifar10": 0.05, "cifar100": 0.10}, "asam": {"cifar10": 0.5, "cifar100": 1.0}}
    return {
        "sgd": common,
        "sam": {**common, **two_pass, "rho": rho["sam"][dataset]},
        "asam": {**common, **two_pass, "rho": rho["asam"][dataset], "asam_rule": "official"},
    }


_ASAM_SOURCE = f"{ASAM_PAPER}, CIFAR results (values via secondary sources; recipe from the official code)"
_ASAM_TABLE = {  # model label → (artifact model, {dataset: (SGD, SAM, ASAM)})
    "ResNet-20": ("cifar_resnet20", {"cifar10": (93.18, 93.56, 93.82), "cifar100": (69.76, 71.06, 71.40)}),
    "ResNet-56": ("cifar_resnet56", {"cifar10": (94.58, 95.18, 95.42), "cifar100": (73.12, 75.16, 75.86)}),
    "WRN-28-2": ("cifar_wrn28_2", {"cifar10": (95.13, 95.74, 95.94), "cifar100": (75.28, 77.25, 77.54)}),
    "WRN-28-10": ("cifar_wrn28_10", {"cifar10": (96.34, 96.98, 97.28), "cifar100": (81.56, 83.42, 83.68)}),
    "PyramidNet-272": (None, {"cifar10": (98.44, 98.55, 98.68), "cifar100": (88.91, 89.36, 89.90)}),
}
# model label → (artifact model, lr, {dataset: (ρ, (SGD error, ±), (SAM error, ±))})
_SAM_TABLE1 = {
    "WRN-28-10": (
        "cifar_wrn28_10",
        0.1,
        {"cifar10": (0.05, (3.5, 0.1), (2.7, 0.1)), "cifar100": (0.1, (18.8, 0.2), (16.5, 0.2))},
    ),
    "PyramidNet": (
        None,
        0.05,
        {"cifar10": (0.05, (4.0, 0.1), (2.7, 0.1)), "cifar100": (0.2, (19.7, 0.3), (14.6, 0.4))},
    ),
}
_SAM_TABLE4 = {"sgd": (84.8, 68.8, 48.2, 26.2), "sam": (95.1, 93.4, 90.5, 77.9)}  # noise 20/40/60/80 %
_SAM_TABLE4_RHO = {0.2: 0.1, 0.4: 0.1, 0.6: 0.1, 0.8: 0.05}


def _sam_table1() -> list[PublishedNumber]:
    numbers = []
    for label, (model, lr, by_dataset) in _SAM_TABLE1.items():
        for dataset, (rho, sgd, sam) in by_dataset.items():
            common = {
                "model": model,
                "epochs": PAPER_EPOCHS,
                "batch_size": 256,
                "lr": lr,
                "weight_decay": 5e-4,
                "augmentation": _CROP_FLIP,
                "train_size": FULL_TRAIN_SIZE[dataset],
            }
            columns = {
                "sgd": (sgd, {"sgd": common, "sgd_2x": {**common, "epochs": 2 * PAPER_EPOCHS}}),
                "sam": (sam, {"sam": {**common, "rho": rho, "m": 32}}),
            }
            for optimizer, ((error, ci), protocols) in columns.items():
                numbers.append(
                    PublishedNumber(
                        f"{SAM_PAPER}, Table 1 (100 − error; 5 runs, 95 % CI)",
                        "sam_table1",
                        dataset,
                        label,
                        optimizer,
                        round(100 - error, 2),
                        protocols,
                        ci=ci,
                        note="" if model else _UNSTATED_PYRAMIDNET,
                    )
                )
    return numbers


def _sam_table4() -> list[PublishedNumber]:
    numbers = []
    for optimizer, accs in _SAM_TABLE4.items():
        for noise, acc in zip((0.2, 0.4, 0.6, 0.8), accs):
            protocol = {
                "model": "cifar_resnet32",
                "epochs": PAPER_EPOCHS,
                "noise_kind": "symmetric",
                "train_size": FULL_TRAIN_SIZE["cifar10"],
            }
            if optimizer == "sam":
                protocol["rho"] = _SAM_TABLE4_RHO[noise]
            numbers.append(
                PublishedNumber(
                    f"{SAM_PAPER}, Table 4 (symmetric label noise)",
                    "sam_table4",
                    "cifar10",
                    "ResNet-32",
                    optimizer,
                    acc,
                    {optimizer: protocol},
                    noise=noise,
                )
            )
    return numbers


def _published() -> list[PublishedNumber]:
    later = f"{PAPER}, later versions"
    numbers = [
        PublishedNumber(later, None, dataset, label, "pugd", value, note=_PRETRAINED)
        for dataset, label, value in [
            ("cifar10", "ViT-B/16", 99.13),
            ("cifar100", "ViT-B/16", 93.95),
            ("tiny_imagenet", "DeiT-B/16", 91.02),
            ("tiny_imagenet", "ViT-B/16", 90.74),
        ]
    ]
    numbers += _sam_table1() + _sam_table4()
    for label, (model, by_dataset) in _ASAM_TABLE.items():
        for dataset, accs in by_dataset.items():
            protocols = _asam_protocols(model, dataset)
            for optimizer, acc in zip(("sgd", "sam", "asam"), accs):
                numbers.append(
                    PublishedNumber(
                        _ASAM_SOURCE,
                        "asam_table",
                        dataset,
                        label,
                        optimizer,
                        acc,
                        {optimizer: protocols[optimizer]},
                        metric="best_acc",
                        note="" if model else "PyramidNet-272 is not in the artifact",
                    )
                )
    return numbers


PUBLISHED = _published()

_ABSTRACT = f"{PAPER}, v1 abstract"
DIRECTIONAL = [
    DirectionalClaim(
        "pugd_sam_clean", "PUGD better than SAM: clean test accuracy", _ABSTRACT, "main", "clean_acc", noisy=False
    ),
    DirectionalClaim(
        "pugd_sam_noise",
        "PUGD better than SAM under label noise (clean test accuracy)",
        f"{_ABSTRACT} ('more robust')",
        "sam_table4",
        "clean_acc",
        noisy=True,
        protocol={"model": "cifar_resnet32", "noise_kind": "symmetric"},
        reference_protocol={noise: {"rho": rho} for noise, rho in _SAM_TABLE4_RHO.items()},
    ),
    DirectionalClaim(
        "pugd_sam_corruption",
        "PUGD better than SAM under corruptions (mCA)",
        f"{_ABSTRACT} ('more robust')",
        "main",
        "mca",
        noisy=False,
    ),
    DirectionalClaim(
        "pugd_sam_official",
        "PUGD better than SAM under the official PUGD code's setting",
        f"{_ABSTRACT}; setting of the official code",
        "pugd_official",
        "clean_acc",
        noisy=False,
        protocol=_OFFICIAL_PUGD,
    ),
]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def protocols_markdown() -> str:
    """The "Protocols" table: per study its source, what matches it and what deviates and why."""
    rows = [(s.name, s.source, s.matches, s.deviates) for s in STUDIES.values()] + [UNRUNNABLE]
    lines = ["| study | source | what matches | what deviates and why |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
