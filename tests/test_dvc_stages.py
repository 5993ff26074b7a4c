"""dvc.yaml against the code: each stage's `params:` are the keys its command declares it reads (and the
command reads params only through that declaration), and every run path is RunId's layout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from unitgrad import evaluate, toy, train
from unitgrad.data import cli as data_cli
from unitgrad.report import cli as report_cli
from unitgrad.runs import RunId
from unitgrad.schema import Optim, Params

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
READS = {
    "prepare": data_cli.prepare_reads("${item.dataset}"),
    "corrupt": data_cli.CORRUPT_READS,
    "train": train.reads("${item.optimizer}", noisy=False),
    "train_noise": train.reads("${item.optimizer}", noisy=True),
    "evaluate": evaluate.reads(corruptions=True),
    "evaluate_noise": evaluate.reads(corruptions=False),
    "toy": toy.READS,
    **{f"report_{step}": keys for step, keys in report_cli.READS.items()},
    "paper": (),
}
RUNS = {  # the run each stage's matrix item names, as dvc.yaml writes it
    "train": RunId("${item.dataset}", "${item.model}", "${item.optimizer}", "0", "${item.seed}"),
    "evaluate": RunId("${item.dataset}", "${item.model}", "${item.optimizer}", "0", "${item.seed}"),
    "train_noise": RunId("${noise.dataset}", "${noise.model}", "${item.optimizer}", "${item.rate}", "${item.seed}"),
    "evaluate_noise": RunId("${noise.dataset}", "${noise.model}", "${item.optimizer}", "${item.rate}", "${item.seed}"),
}


def leaves(keys):
    """Dotted keys with every schema section expanded to its keys (optim entries and templates stay as named)."""
    found = set()
    for key in keys:
        model = Params
        for part in key.split("."):
            field = model.model_fields.get(part) if isinstance(model, type) and model is not Optim else None
            model = field.annotation if field is not None else None
        if isinstance(model, type) and issubclass(model, BaseModel) and model is not Optim:
            found |= leaves(f"{key}.{name}" for name in model.model_fields)
        else:
            found.add(key)
    return found


def test_every_stage_declares_what_it_reads():
    assert set(STAGES) == set(READS)


@pytest.mark.parametrize("stage", sorted(READS))
def test_stage_params_are_the_keys_its_command_reads(stage):
    assert leaves(STAGES[stage].get("params", [])) == leaves(READS[stage])


def _paths(stage):
    spec = STAGES[stage]
    entries = [*spec.get("deps", []), *spec.get("outs", []), *spec.get("metrics", []), *spec.get("plots", [])]
    paths = [next(iter(e)) if isinstance(e, dict) else e for e in entries]
    return [*paths, *re.findall(r"results/runs/\S+", spec["cmd"])]


@pytest.mark.parametrize("stage", sorted(RUNS))
def test_run_paths_in_dvc_yaml_follow_the_run_id_layout(stage):
    run_dir = RunId.to_path(RUNS[stage]).as_posix()
    paths = [p for p in _paths(stage) if p.startswith("results/runs/")]
    assert paths and all(p == run_dir or p.startswith(f"{run_dir}/") for p in paths), paths
