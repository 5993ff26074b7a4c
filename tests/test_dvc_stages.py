"""dvc.yaml against the code: each stage's `params:` are the keys its command declares it reads (and the
command reads params only through that declaration), its code deps are the modules its command imports,
every run path is RunId's layout, and the study stages are those `unitgrad stages` writes for params.yaml."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo
from pydantic import BaseModel

from unitgrad import evaluate, params_check, pipeline, run_config, toy
from unitgrad.cli import COMMANDS
from unitgrad.config import load_params
from unitgrad.data import cli as data_cli
from unitgrad.errors import UnitgradError
from unitgrad.report import cli as report_cli
from unitgrad.runs import RunId
from unitgrad.schema import Optim, Params
from unitgrad.studies import selected_runs

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]  # merge keys resolved, as DVC reads them
STUDIES = load_params(ROOT / "params.yaml").studies
READS = {
    "check": params_check.READS,
    "prepare": data_cli.prepare_reads("${item.dataset}"),
    "corrupt": data_cli.CORRUPT_READS,
    **{f"train_{study}": run_config.reads("${item.study}", "${item.optimizer}") for study in STUDIES},
    **{f"evaluate_{study}": evaluate.reads("${item.study}") for study in STUDIES},
    "toy": toy.READS,
    **{f"report_{step}": keys for step, keys in report_cli.READS.items()},
    "paper": (),
}
ITEM = ("${item.dataset}", "${item.model}", "${item.optimizer}", "${item.noise}", "${item.seed}")
RUNS = {f"{kind}_{study}": RunId("${item.study}", *ITEM) for study in STUDIES for kind in ("train", "evaluate")}


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


def command_module(stage: str) -> str:
    """The module that runs stage's command (`unitgrad <command> ...` through unitgrad.cli.COMMANDS)."""
    return COMMANDS[STAGES[stage]["cmd"].split()[1]][0].split(":")[0]


@pytest.mark.parametrize("stage", sorted(READS))
def test_stage_code_deps_are_the_modules_its_command_imports(stage):
    declared = [dep for dep in STAGES[stage]["deps"] if dep.startswith("src/")]
    assert declared == pipeline.code_deps(command_module(stage))


def test_code_deps_follow_imports_inside_functions_and_package_inits():
    """The training command reaches the schema, the studies and the prepared-data reader, which dvc.yaml once
    left out; importing a package runs its __init__.py."""
    deps = pipeline.code_deps("unitgrad.train.cli")
    assert {"src/unitgrad/schema.py", "src/unitgrad/studies.py", "src/unitgrad/data/cifar.py"} <= set(deps)
    assert "src/unitgrad/train" in deps and "src/unitgrad/report" not in deps  # the whole package, folded
    assert "src/unitgrad/evaluate.py" not in deps and "src/unitgrad/evaluate.py" in pipeline.code_deps(
        "unitgrad.evaluate"
    )


def test_dropping_an_import_from_a_stage_fails_the_deps_check():
    stage = next(name for name in STAGES if name.startswith("train_"))
    declared = [dep for dep in STAGES[stage]["deps"] if dep.startswith("src/") and dep != "src/unitgrad/schema.py"]
    assert declared != pipeline.code_deps(command_module(stage))


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


def test_study_stages_are_current_for_params_yaml():
    assert pipeline.is_current(load_params(ROOT / "params.yaml"), ROOT / "dvc.yaml")


def trained_runs(root: Path) -> set[RunId]:
    with Repo(str(root)) as repo:
        return {
            RunId.from_path(Path(str(out.fs_path)).parents[1])
            for stage in repo.index.stages
            if stage.name.startswith("train_")
            for out in stage.outs
            if Path(str(out.fs_path)).name == "model.pt"
        }


def test_dvc_expands_exactly_the_runs_the_studies_select():
    """What `dvc repro` trains (DVC's own expansion of the matrices) is what the report reads."""
    assert trained_runs(ROOT) == set(selected_runs(load_params(ROOT / "params.yaml")))


@pytest.mark.parametrize("scale", ["laptop", "paper"])
def test_unitgrad_stages_writes_the_stages_of_another_params_file(tmp_path, scale):
    """Another scale's studies are a params edit and `unitgrad stages`: DVC then expands exactly its runs."""
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(ROOT / f"params.{scale}.yaml", tmp_path / "params.yaml")
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    params = load_params(tmp_path / "params.yaml")
    was_current = pipeline.is_current(params, tmp_path / "dvc.yaml")
    assert was_current == (list(params.studies) == list(STUDIES))  # the paper scale runs the smoke scale's studies
    assert pipeline.write(params, tmp_path / "dvc.yaml") != was_current and not pipeline.write(
        params, tmp_path / "dvc.yaml"
    )
    assert trained_runs(tmp_path) == set(selected_runs(params))
    head = (ROOT / "dvc.yaml").read_text().split(pipeline.BEGIN)[0]
    assert (tmp_path / "dvc.yaml").read_text().startswith(head)  # the other stages are left as they were


def test_stages_check_names_the_fix_and_a_file_without_markers_is_refused(tmp_path, capsys):
    shutil.copy(ROOT / "params.laptop.yaml", tmp_path / "params.yaml")
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    argv = ["--params", str(tmp_path / "params.yaml"), "--dvc-yaml", str(tmp_path / "dvc.yaml"), "--check"]
    with pytest.raises(UnitgradError, match=r"study stages are not .*params\.yaml's studies: run `unitgrad stages`"):
        pipeline.main(argv)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    with pytest.raises(UnitgradError, match=r"lacks the study-stage markers"):
        pipeline.main(argv[:-1])
    assert (tmp_path / "dvc.yaml").read_text() == "stages: {}\n"
