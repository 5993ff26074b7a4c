"""RunConfig: everything that determines one run, resolved from the validated params and the CLI selection.

Free of torch, so that the report and `unitgrad params check` read it without loading the training stack.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from unitgrad.config import DATA_ROOT, view
from unitgrad.errors import UnitgradError
from unitgrad.runs import RunId
from unitgrad.schema import Loader, Method, Model, Params, Train, method_of
from unitgrad.studies import resolve, study_of

# train.* keys the base optimizer takes: the record keeps them in optimizer_kwargs, once
_BASE_OPTIMIZER_KEYS = {"lr", "weight_decay", "momentum", "nesterov"}


def reads(study: str, optimizer: str) -> tuple[str, ...]:
    """The params keys one training run reads (dvc.yaml's train_<study> stage declares the same)."""
    return ("train", "model", "data.loader", "optim.base", f"optim.{optimizer}", f"studies.{study}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One run: its identity (`noise` is the fraction of training labels flipped) and the params sections that
    train it, with its study's overrides applied: `train`, `net` (params' `model` section), `loader`
    (`data.loader`), and `entry`, the `optim.<optimizer>` entry over the `base` optimizer."""

    dataset: str
    model: str
    optimizer: str
    seed: int
    noise: float
    noise_kind: str | None
    train: Train
    net: Model
    loader: Loader
    entry: Method
    base: str
    data_root: str = str(DATA_ROOT)

    @classmethod
    def for_run(cls, params: Params, run: RunId, source: str | Path = "params.yaml") -> RunConfig:
        """The settings of `run`: `params` with its study's overrides (validated), read through the keys
        `reads` declares."""
        study = study_of(params, run, source)
        resolved = view(resolve(params, run, source), reads(run.study, run.optimizer))
        run_id = {"dataset": run.dataset, "model": run.model, "optimizer": run.optimizer, "seed": run.seed}
        return cls.from_params(resolved, **run_id, noise=run.noise_rate, noise_kind=study.noise_kind)

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
        cfg = cls(
            dataset=dataset,
            model=model,
            optimizer=optimizer,
            seed=seed,
            noise=float(noise),
            noise_kind=noise_kind if noise > 0 else None,  # clean runs do not depend on it
            train=params.train,
            net=params.model,
            loader=params.data.loader,
            entry=params.optim[optimizer],
            base=params.optim.base,
        )
        cfg.optimizer_kwargs  # noqa: B018 - a per-dataset value missing for `dataset` fails here, before training
        return cfg

    @property
    def method(self) -> str:
        return method_of(self.optimizer)

    @property
    def epochs(self) -> int:
        """train.epochs × the entry's epochs_factor (sgd_2x: 2); whole: checked by the schema."""
        return int(self.train.epochs * self.entry.epochs_factor)

    @property
    def m(self) -> int | None:
        """m-sharpness: images per perturbation; None for the whole batch (and for one-pass methods)."""
        return getattr(self.entry, "m", None)

    @property
    def optimizer_kwargs(self) -> dict[str, Any]:
        """The base optimizer's settings and the method's own (rho resolved for the dataset, eta, rule)."""
        kwargs = {"lr": self.train.lr, "weight_decay": self.train.weight_decay}
        if self.base == "sgd":  # momentum and Nesterov are SGD's
            kwargs.update(momentum=self.train.momentum, nesterov=self.train.nesterov)
        for key in self.entry.hyperparameters:
            kwargs[key] = _for_dataset(getattr(self.entry, key), self.dataset, f"optim.{self.optimizer}.{key}")
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        """The record run.json keeps and the hash covers: the run, then every setting under its own key."""
        return {
            "dataset": self.dataset,
            "model": self.model,
            "optimizer": self.optimizer,
            "seed": self.seed,
            "noise": self.noise,
            "noise_kind": self.noise_kind,
            **self.loader.model_dump(),
            **self.net.model_dump(),
            **self.train.model_dump(exclude=_BASE_OPTIMIZER_KEYS),
            "method": self.method,
            "base": self.base,
            "optimizer_kwargs": self.optimizer_kwargs,
            "m": self.m,
            "epochs": self.epochs,
            "data_root": self.data_root,
        }

    def hash(self) -> str:
        """sha256 of the record's canonical JSON, less `data_root` (where the data lives is not what it is).

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
