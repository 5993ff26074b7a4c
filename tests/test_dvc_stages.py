"""dvc.yaml against the code: each stage's `params:` are the keys its command declares it reads (and the
command reads params only through that declaration), and every run path is RunId's layout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo
from pydantic import BaseModel

from unitgrad import evaluate, toy, train
from unitgrad.config import load_params
from unitgrad.data import cli as data_cli
from unitgrad.report import cli as report_cli
from unitgrad.runs import RunId
from unitgrad.schema import Optim, Params
from unitgrad.studies import selected_runs

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
STUDIES = yaml.safe_load((ROOT / "params.yaml").read_text())["studies"]
CORRUPTION_STUDIES = {"main"}  # the studies whose evaluation includes CIFAR-C (dvc.yaml's evaluate commands)
READS = {
    "prepare": data_cli.prepare_reads("${item.dataset}"),
    "corrupt": data_cli.CORRUPT_READS,
    **{f"train_{study}": train.reads(study, "${item.optimizer}") for study in STUDIES},
    **{f"evaluate_{study}": evaluate.reads(corruptions=study in CORRUPTION_STUDIES) for study in STUDIES},
    "toy": toy.READS,
    **{f"report_{step}": keys for step, keys in report_cli.READS.items()},
    "paper": (),
}
ITEM = ("${item.dataset}", "${item.model}", "${item.optimizer}", "${item.noise}", "${item.seed}")
RUNS = {f"{kind}_{study}": RunId(study, *ITEM) for study in STUDIES for kind in ("train", "evaluate")}


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


def test_dvc_expands_exactly_the_runs_the_studies_select():
    """What `dvc repro` trains (DVC's own expansion of the matrices) is what the report reads."""
    with Repo(str(ROOT)) as repo:
        trained = {
            RunId.from_path(Path(str(out.fs_path)).parents[1])
            for stage in repo.index.stages
            if stage.name.startswith("train_")
            for out in stage.outs
            if Path(str(out.fs_path)).name == "model.pt"
        }
    assert trained == set(selected_runs(load_params(ROOT / "params.yaml")))
