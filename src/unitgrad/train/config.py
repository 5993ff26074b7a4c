"""RunConfig: everything that determines one run, resolved from the validated params and the CLI selection."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from unitgrad.config import DATA_ROOT, view
from unitgrad.errors import UnitgradError
from unitgrad.runs import RunId
from unitgrad.schema import Params, method_of
from unitgrad.studies import resolve, study_of


def reads(study: str, optimizer: str) -> tuple[str, ...]:
    """The params keys one training run reads (dvc.yaml's train_<study> stage declares the same)."""
    return ("train", "model", "data.loader", "optim.base", f"optim.{optimizer}", f"studies.{study}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One run's settings. `epochs` already includes an `epochs_factor` (sgd_2x); `optimizer_kwargs` holds
    the base optimizer's settings and the method's own (rho resolved for the dataset, eta). `noise` is the
    fraction of training labels flipped."""

    dataset: str
    model: str
    optimizer: str
    seed: int
    noise: float
    noise_kind: str | None
    train_per_class: int | None
    subset_seed: int
    crop_padding: int
    flip: bool
    cutout: int
    cifar_stem: bool
    drop_rate: float
    method: str
    base: str
    optimizer_kwargs: dict[str, Any]
    m: int | None
    epochs: int
    batch_size: int
    warmup_epochs: float
    lr_update: str
    label_smoothing: float
    no_weight_decay_bn_bias: bool
    bn_update: str
    device: str
    amp: str
    channels_last: bool
    compile: bool
    eval_every: int
    monitor: str
    monitor_per_class: int | None
    data_root: str = str(DATA_ROOT)

    @classmethod
    def for_run(cls, params: Params, run: RunId, source: str | Path = "params.yaml") -> RunConfig:
        """The settings of `run`: `params` with its study's overrides (validated), read through the keys
        `reads` declares."""
        study = study_of(params, run, source)
        resolved = view(resolve(params, run, source), reads(run.study, run.optimizer))
        return cls.from_params(
            resolved,
            dataset=run.dataset,
            model=run.model,
            optimizer=run.optimizer,
            seed=run.seed,
            noise=run.noise_rate,
            noise_kind=study.noise_kind,
        )  # fmt: skip - the run's identity on one line

    @classmethod
    def from_params(
        cls,
        params: Params,
        *,
        dataset: str,
        model: str,
        optimizer: str,
        seed: int,
        noise: float,
        noise_kind: str = "symmetric",
    ) -> RunConfig:
        """The run `optimizer` × `seed` × `noise` (a fraction of `noise_kind` flips) on `dataset`/`model`, with
        settings from `params` (overrides already applied)."""
        if not 0.0 <= noise <= 1.0:
            raise UnitgradError(
                f"label-noise rate {noise} must lie in [0, 1]: fix --noise (percent) or studies.<name>.noise"
            )
        entry, train, loader = params.optim[optimizer], params.train, params.data.loader
        own = {
            key: _for_dataset(getattr(entry, key), dataset, f"optim.{optimizer}.{key}") for key in entry.hyperparameters
        }
        kwargs = {"lr": train.lr, "weight_decay": train.weight_decay}
        if params.optim.base == "sgd":  # momentum and Nesterov are SGD's
            kwargs.update(momentum=train.momentum, nesterov=train.nesterov)
        return cls(
            dataset=dataset,
            model=model,
            optimizer=optimizer,
            seed=seed,
            noise=float(noise),
            noise_kind=noise_kind if noise > 0 else None,  # clean runs do not depend on it
            train_per_class=loader.train_per_class,
            subset_seed=loader.subset_seed,
            crop_padding=loader.crop_padding,
            flip=loader.flip,
            cutout=loader.cutout,
            cifar_stem=params.model.cifar_stem,
            drop_rate=params.model.drop_rate,
            method=method_of(optimizer),
            base=params.optim.base,
            optimizer_kwargs={**kwargs, **own},
            m=getattr(entry, "m", None),
            epochs=int(train.epochs * entry.epochs_factor),  # whole: checked by the schema
            batch_size=train.batch_size,
            warmup_epochs=train.warmup_epochs,
            lr_update=train.lr_update,
            label_smoothing=train.label_smoothing,
            no_weight_decay_bn_bias=train.no_weight_decay_bn_bias,
            bn_update=train.bn_update,
            device=train.device,
            amp=train.amp,
            channels_last=train.channels_last,
            compile=train.compile,
            eval_every=train.eval_every,
            monitor=train.monitor,
            monitor_per_class=train.monitor_per_class,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """sha256 of the config's canonical JSON, less `data_root` (where the data lives is not what it is).

        A checkpoint is reused only under the same hash.
        """
        identity = {k: v for k, v in self.to_dict().items() if k != "data_root"}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _for_dataset(value: float | dict[str, float], dataset: str, key: str) -> float:
    """A hyper-parameter given once or per dataset (rho: {cifar10: 0.05, cifar100: 0.1}), for `dataset`."""
    if not isinstance(value, dict):
        return value
    if dataset not in value:
        raise UnitgradError(f"{key} has no value for '{dataset}': add {dataset}: <value>")
    return value[dataset]
