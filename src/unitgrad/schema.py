"""The schema of params.yaml: every key once, with its type, range or choices and a one-line meaning.

pydantic (v2) rather than dataclasses: unknown keys, types, ranges and choices are checked in one pass
with the location of each error, and the field descriptions generate README's Configuration section.
Models are strict (no "1" for 1, no "yes" for true) and frozen. Adding a key is one line in its section.

`optim` holds `base` and one entry per optimizer name: `<method>` or `<method>_<k>x` (e.g. sgd_2x),
validated by the method's model in `METHODS`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

SEED_LIMIT = 2**32  # numpy's seeds are below it; a larger seed would pass here and fail in training


def _distinct(values: list) -> list:
    """A list whose entries select runs or stages: a repeat would count one run twice."""
    repeated = next((value for i, value in enumerate(values) if value in values[:i]), None)
    if repeated is not None:
        raise PydanticCustomError("params", f"lists {repeated!r} twice: keep one".replace("{", "{{").replace("}", "}}"))
    return values


Dataset = Literal["cifar10", "cifar100"]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT)]
Seeds = Annotated[list[Seed], Field(min_length=1), AfterValidator(_distinct)]
Names = Annotated[list[NonEmptyStr], Field(min_length=1), AfterValidator(_distinct)]
Datasets = Annotated[list[Dataset], Field(min_length=1), AfterValidator(_distinct)]
# A source, or candidate sources tried in order.
Source = NonEmptyStr | Annotated[list[NonEmptyStr], Field(min_length=1)]
PerDataset = PositiveFloat | dict[Dataset, PositiveFloat]
# An int stays an int (it enters the run's config hash as written); fractions are allowed.
NonNegativeNumber = Annotated[float, Field(ge=0)] | Annotated[int, Field(ge=0)]
PositiveNumber = Annotated[float, Field(gt=0)] | Annotated[int, Field(gt=0)]
REPEAT = re.compile(r"^(?P<method>[a-z]+)_(?P<k>\d+)x$")  # sgd_2x -> sgd


class Section(BaseModel):
    # No inf or nan anywhere: `.inf` would pass every "> 0" check and train or draw nothing but NaN.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _field(description: str, **constraints: Any) -> Any:
    return Field(description=description, **constraints)


class Corruptions(Section):
    source: Literal["generate", "official"] = _field(
        "generate (CIFAR-C constants, from the prepared test set) or official (Zenodo files)"
    )
    n_images: int = _field("test images corrupted when generating (class-balanced); official uses all", ge=1)
    seed: Seed = _field("seed of the generated corruptions")


class Loader(Section):
    train_per_class: int | None = _field("class-balanced training subset per class; null = the full set", ge=1)
    subset_seed: Seed = _field("which balanced subset: the same for every run, so seeds pair up")
    crop_padding: int = _field("random-crop padding in pixels", ge=0)
    flip: bool = _field("random horizontal flips")
    cutout: int = _field("side of the cutout square in pixels; 0 = off", ge=0)


class SplitSizes(Section):
    train: int = _field("training images of each class", ge=1)
    test: int = _field("test images of each class", ge=1)


class Data(Section):
    datasets: Datasets = _field(
        "datasets prepared and corrupted (dvc.yaml's prepare and corrupt stages); every study's are among them"
    )
    sources: dict[Dataset, Source] = _field(
        "per dataset: official, a path to the official tarball, an image-folder archive or directory, "
        "or a list of such candidates tried in order"
    )
    images_per_class: SplitSizes | None = _field(
        "images of each class a prepared dataset must hold; null = the published counts (CIFAR-10 5 000 train / "
        "1 000 test, CIFAR-100 500 / 100); a smaller image folder states its own"
    )
    corruptions: Corruptions
    loader: Loader


StudyName = Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
Percent = Annotated[int, Field(ge=0, le=100)]


class Rule(Section):
    """Overrides for the runs of a study that match every given field (a field left out matches all)."""

    dataset: Dataset | None = _field("runs on this dataset", default=None)
    model: NonEmptyStr | None = _field("runs of this model", default=None)
    optimizer: NonEmptyStr | None = _field("runs of this optimizer name", default=None)
    noise: Percent | None = _field("runs at this label-noise percent", default=None)
    set: dict[str, Any] = _field("dotted keys (train.*, model.*, data.loader.*, optim.*) and their values")


class Study(Section):
    """One source's protocol: the runs datasets × models × optimizers × noise × seeds, with its overrides."""

    source: NonEmptyStr = _field("whose protocol the study follows")
    datasets: Datasets = _field("datasets trained and evaluated")
    models: Names = _field("timm model names")
    optimizers: Names = _field("names under optim")
    noise: Annotated[list[Percent], Field(min_length=1), AfterValidator(_distinct)] = _field(
        "percent of training labels flipped; 0 = clean"
    )
    noise_kind: Literal["symmetric", "asymmetric"] = _field("how training labels flip (test labels never change)")
    seeds: Seeds = _field("run seeds (initialisation, data order, which labels flip)")
    corruptions: bool = _field("evaluate the runs on data/<dataset>-c as well (mCA)")
    set: dict[str, Any] = _field("dotted keys (train.*, model.*, data.loader.*, optim.*) set for every run")
    when: list[Rule] = _field("further overrides for the matching runs, applied in order after `set`")

    @model_validator(mode="after")
    def _rules_match_runs(self) -> Study:
        # A rule whose value none of the study's runs has would drop its override without a word.
        for i, rule in enumerate(self.when):
            for key, runs in (
                ("dataset", "datasets"),
                ("model", "models"),
                ("optimizer", "optimizers"),
                ("noise", "noise"),
            ):
                value = getattr(rule, key)
                if value is not None and value not in getattr(self, runs):
                    raise _error(
                        ("when", i, key),
                        f"{value!r} is not in this study's {runs} {getattr(self, runs)}, so the rule matches no run: "
                        f"fix it or remove the rule",
                    )
        return self


class Model(Section):
    cifar_stem: bool = _field("timm ImageNet models: 3x3 stride-1 stem, no max-pool, for 32x32 inputs")
    drop_rate: Fraction = _field("dropout before the classifier")


class Train(Section):
    epochs: int = _field("training epochs (sgd_2x-style names multiply them)", ge=1)
    batch_size: int = _field("global batch size (split across DDP processes)", ge=1)
    lr: PositiveFloat = _field("peak learning rate")
    momentum: Fraction = _field("SGD momentum")
    weight_decay: float = _field("weight decay", ge=0)
    nesterov: bool = _field("Nesterov momentum")
    warmup_epochs: NonNegativeNumber = _field("linear LR warmup (fractions allowed), then cosine to 0")
    label_smoothing: Fraction = _field("cross-entropy label smoothing")
    no_weight_decay_bn_bias: bool = _field("no weight decay on 1-D parameters (BatchNorm, biases)")
    bn_update: Literal["first_pass", "both_passes"] = _field(
        "BatchNorm running stats of two-pass methods: first pass only, or both (the official code)"
    )
    device: Literal["auto", "cpu", "cuda"] = _field("where training and evaluation run")
    amp: Literal["auto", "bf16", "none"] = _field(
        "bf16 autocast for training and evaluation; auto: where the device computes bf16 natively"
    )
    channels_last: bool = _field("channels-last memory format of the model and its batches")
    compile: bool = _field("torch.compile the model")
    lr_update: Literal["step", "epoch"] = _field(
        "the warmup-cosine LR changes every optimizer step, or once per epoch (the official PUGD code)"
    )
    eval_every: int = _field("epochs between test evaluations for the learning curves", ge=1)
    monitor: Literal["test", "holdout"] = _field(
        "the curves' images: the test set, or training images the subset leaves out (evaluate scores neither)"
    )
    monitor_per_class: int | None = _field("class-balanced subset of those images; null = all of them", ge=1)

    @model_validator(mode="after")
    def _warmup_within_training(self) -> Train:
        if self.warmup_epochs > self.epochs:
            raise _error(("warmup_epochs",), f"{self.warmup_epochs} exceeds train.epochs ({self.epochs})")
        return self


class Method(Section):
    """Keys every optimizer entry may set."""

    epochs_factor: PositiveNumber = _field("train.epochs multiplier (the equal-compute baseline sgd_2x: 2)", default=1)
    hyperparameters: ClassVar[tuple[str, ...]] = ()  # passed to the optimizer


class SGDMethod(Method):
    pass


class TwoPassMethod(Method):
    m: int | None = _field(
        "m-sharpness: images per perturbation (a divisor of the batch); null = the whole batch", default=None, ge=1
    )


class SAMMethod(TwoPassMethod):
    rho: PerDataset = _field("perturbation radius, or one per dataset")
    hyperparameters = ("rho",)


class ASAMMethod(TwoPassMethod):
    rho: PerDataset = _field("perturbation radius, or one per dataset")
    eta: PerDataset = _field("added to |w| in the scaling T = |w| + eta")
    rule: Literal["paper", "official"] = _field(
        "paper: T for every parameter; official: T only for parameters named *weight* (SamsungLabs/ASAM)",
        default="paper",
    )
    hyperparameters = ("rho", "eta", "rule")


class PUGDMethod(TwoPassMethod):
    rho: PerDataset = _field("the paper's gamma: perturbation radius in unit-gradient space")
    hyperparameters = ("rho",)


class UGDMethod(Method):
    pass


METHODS: dict[str, type[Method]] = {
    "sgd": SGDMethod,
    "sam": SAMMethod,
    "asam": ASAMMethod,
    "pugd": PUGDMethod,
    "ugd": UGDMethod,
}


def method_of(name: str) -> str:
    """The method an optimizer name trains with: `sgd_2x` -> sgd, `pugd` -> pugd."""
    repeat = REPEAT.match(name)
    return repeat["method"] if repeat else name


class Optim(BaseModel):
    """`base` and one `Method` entry per optimizer name (`optim[name]`)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True, allow_inf_nan=False)
    base: Literal["sgd", "adamw"] = _field("base optimizer of every method")
    __pydantic_extra__: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _entries(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        entries = {}
        for name, entry in data.items():
            if name == "base":
                continue
            method = method_of(name)
            if method not in METHODS:
                raise _error((name,), f"unknown method '{method}'{did_you_mean(method, METHODS)}")
            try:
                entries[name] = METHODS[method].model_validate({} if entry is None else entry)
            except ValidationError as exc:
                raise _prefixed(exc, (name,)) from None
        return {**data, **entries}

    def names(self) -> list[str]:
        return list(self.__pydantic_extra__ or {})

    def __getitem__(self, name: str) -> Method:
        return (self.__pydantic_extra__ or {})[name]


class Evaluate(Section):
    batch_size: int = _field("evaluation batch size", ge=1)
    ece_bins: int = _field("bins of the expected calibration error", ge=1)
    train_pool: bool = _field("also score the training images a run never saw (the held-out pool)")


ToyOptimizer = Literal["sgd", "adagrad", "ngd", "sam", "asam", "ugd", "pugd"]


class Toy(Section):
    start: Annotated[list[float], Field(min_length=2, max_length=2)] = _field("start point [x, y]")
    steps: int = _field("optimizer steps", ge=1)
    optimizers: Annotated[list[ToyOptimizer], Field(min_length=1), AfterValidator(_distinct)] = _field(
        "paths drawn (ngd: UGD without momentum)"
    )
    lr: PositiveFloat = _field("learning rate of every path but Adagrad's")
    adagrad_lr: PositiveFloat = _field("Adagrad's learning rate")
    momentum: Fraction = _field("momentum of SGD and the base SGD of SAM, ASAM, UGD, PUGD")
    sam_rho: PositiveFloat = _field("SAM's rho")
    asam_rho: PositiveFloat = _field("ASAM's rho")
    asam_eta: PositiveFloat = _field("ASAM's eta")
    pugd_rho: PositiveFloat = _field("PUGD's rho")


class Report(Section):
    main_study: StudyName = _field("the study whose clean and corruption runs the figures and tables show")
    noise_study: StudyName = _field("the study whose label-noise runs the figures and tables show")
    reference_optimizer: NonEmptyStr = _field("paired comparisons: every optimizer against this one")
    baseline_optimizer: NonEmptyStr = _field("... and against this one")
    min_seeds_for_verdict: int = _field("fewer paired seeds give no verdict", ge=2)
    match_tolerance_pp: float = _field("a published accuracy matches within mean ± max(95 % CI, this)", ge=0)
    memorisation_gate: Fraction = _field("laptop verdict: SGD must fit this share of the flipped labels, or none")
    noninferiority_margin_pp: float = _field("laptop verdict: PUGD's clean accuracy may trail SAM's by this", ge=0)


class Params(Section):
    scale: Literal["smoke", "laptop", "paper"] = _field("which claims apply: smoke runs check no published number")
    data: Data
    studies: Annotated[dict[StudyName, Study], Field(min_length=1)] = _field(
        "named studies, each one source's protocol (dvc.yaml has a train_<study> and evaluate_<study> stage)"
    )
    model: Model
    train: Train
    optim: Optim
    evaluate: Evaluate
    toy: Toy
    report: Report

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        names = self.optim.names()
        for study_name, study in self.studies.items():
            for name in study.optimizers:
                if name not in names:
                    raise _error(
                        ("studies", study_name, "optimizers"),
                        f"'{name}' has no optim.{name} entry{did_you_mean(name, names)}",
                    )
        for key in ("main_study", "noise_study"):
            name = getattr(self.report, key)
            if name not in self.studies:
                raise _error(("report", key), f"'{name}' is not a study{did_you_mean(name, list(self.studies))}")
        for key in ("reference_optimizer", "baseline_optimizer"):
            name = getattr(self.report, key)
            if name not in names:
                raise _error(("report", key), f"'{name}' has no optim.{name} entry{did_you_mean(name, names)}")
        for study_name, study in self.studies.items():
            for dataset in study.datasets:
                if dataset not in self.data.datasets:
                    raise _error(("studies", study_name, "datasets"), f"'{dataset}' is not in data.datasets: add it")
        datasets = self.data.datasets
        for dataset in datasets:
            if dataset not in self.data.sources:
                raise _error(("data", "sources"), f"no source for '{dataset}': add {dataset}: official")
        for name in names:
            entry = self.optim[name]
            scaled = self.train.epochs * entry.epochs_factor
            if scaled != int(scaled):
                raise _error(
                    ("optim", name, "epochs_factor"),
                    f"{entry.epochs_factor} × train.epochs ({self.train.epochs}) is not a whole number of epochs",
                )
            m = getattr(entry, "m", None)
            if m is not None and self.train.batch_size % m:
                raise _error(("optim", name, "m"), f"{m} does not divide train.batch_size ({self.train.batch_size})")
            for key in entry.hyperparameters:
                value = getattr(entry, key)
                missing = [d for d in datasets if isinstance(value, dict) and d not in value]
                if missing:
                    raise _error(("optim", name, key), f"has no value for '{missing[0]}': add {missing[0]}: <value>")
        return self


def _error(loc: tuple[str | int, ...], message: str) -> ValidationError:
    return ValidationError.from_exception_data("Params", [_detail(loc, "params", message, None, None)])


def _detail(loc: tuple[str | int, ...], kind: str, message: str, value: Any, ctx: dict | None) -> dict[str, Any]:
    """An error for ValidationError.from_exception_data: pydantic's own kind, or our message verbatim."""
    if kind == "params":  # braces escaped: pydantic formats the message with the error's context
        kind = PydanticCustomError("params", message.replace("{", "{{").replace("}", "}}"))
    return {"type": kind, "loc": loc, "input": value, **({"ctx": ctx} if ctx else {})}


def _prefixed(exc: ValidationError, prefix: tuple[str | int, ...]) -> ValidationError:
    details = [
        _detail((*prefix, *err["loc"]), err["type"], err["msg"], err["input"], err.get("ctx")) for err in exc.errors()
    ]
    return ValidationError.from_exception_data(exc.title, details)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f": did you mean '{close[0]}'?" if close else f": choose one of {', '.join(choices)}"
