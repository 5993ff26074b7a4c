"""Studies: which runs params.yaml selects, and the settings each run trains with.

A study is one source's protocol (`studies.<name>` in params.yaml): the runs datasets × models × optimizers
× noise × seeds, trained with the top-level sections (train, model, data.loader, optim) changed by the
study's `set` and then by each `when` rule that matches the run. `resolve` applies them and validates the
result with the schema, so an override is held to the same types and ranges as the key it changes.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from unitgrad.config import parse_params
from unitgrad.errors import UnitgradError
from unitgrad.runs import RunId
from unitgrad.schema import Params, Study

OVERRIDABLE = ("train.", "model.", "data.loader.", "optim.")  # what a study may change: how a run trains


def selected_runs(params: Params, study: str | None = None) -> list[RunId]:
    """Every run the studies select (or one study's), in params order: dvc.yaml's matrices expand the same."""
    names = list(params.studies) if study is None else [study]
    return [run for name in names for run in _runs(name, params.studies[name])]


def _runs(name: str, study: Study) -> Iterator[RunId]:
    for dataset, model, optimizer, noise, seed in itertools.product(
        study.datasets, study.models, study.optimizers, study.noise, study.seeds
    ):
        yield RunId(name, dataset, model, optimizer, noise, seed)


def study_of(params: Params, run: RunId, source: str | Path = "params.yaml") -> Study:
    """The study `run` belongs to; UnitgradError naming the key when params has no such study."""
    if run.study not in params.studies:
        known = ", ".join(params.studies)
        raise UnitgradError(f"{source}: studies.{run.study}: no such study (known: {known}): add it or fix --study")
    return params.studies[run.study]


def overrides(study: Study, run: RunId) -> dict[str, Any]:
    """The dotted keys `study` sets for `run`: its `set`, then each matching `when` rule's `set`, in order."""
    chosen = dict(study.set)
    for rule in study.when:
        fields = {"dataset": rule.dataset, "model": rule.model, "optimizer": rule.optimizer, "noise": rule.noise}
        if all(value is None or getattr(run, name) == value for name, value in fields.items()):
            chosen.update(rule.set)
    return chosen


def resolve(params: Params, run: RunId, source: str | Path = "params.yaml") -> Params:
    """`params` with the overrides of `run`'s study applied and validated; `params` itself when there are none."""
    chosen = overrides(study_of(params, run, source), run)
    if not chosen:
        return params
    data = params.model_dump()
    for key, value in chosen.items():
        _assign(data, key, value, f"{source}: studies.{run.study}")
    return parse_params(data, f"{source} with the overrides of studies.{run.study} for {run.relative()}")


def _assign(data: dict[str, Any], key: str, value: Any, where: str) -> None:
    if not key.startswith(OVERRIDABLE):
        raise UnitgradError(f"{where}: cannot set '{key}': a study sets only {', '.join(p + '*' for p in OVERRIDABLE)}")
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            break
    if not isinstance(node, dict) or leaf not in node:
        raise UnitgradError(f"{where}: cannot set '{key}': params.yaml has no such key (see README, Configuration)")
    node[leaf] = copy.deepcopy(value)


def check_studies(params: Params, source: str | Path = "params.yaml") -> None:
    """Resolve every selected run once, so a bad override fails before anything runs (one line, exit 2)."""
    for run in selected_runs(params):
        resolve(params, run, source)
