"""`unitgrad stages [--check]`: dvc.yaml's study stages, written from params.yaml's studies.

Every study has one `train_<study>` and one `evaluate_<study>` stage; both are matrices over the study's runs
(datasets × models × optimizers × noise × seeds, read from `studies.<study>` by DVC itself) and share one
definition: the first study's stages carry it (YAML anchors) and the others merge it with their own matrix.
So adding a study is a params edit followed by `unitgrad stages`; `unitgrad grid run` writes them itself.
Each stage's code dependencies are the unitgrad modules its command imports (`code_deps`), so a change to
any of them makes the stage out of date; each depends on the `check` stage's stamp, so DVC validates params
before it removes a stage's outputs.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from unitgrad.config import PARAMS_STAMP, load_params
from unitgrad.errors import UnitgradError
from unitgrad.io import write_text
from unitgrad.runs import RUNS_ROOT, RunId
from unitgrad.schema import Params

SRC = Path(__file__).resolve().parents[1]  # the folder holding the unitgrad package
BEGIN = "  # >>> study stages: written by `unitgrad stages` from params.yaml's studies; do not edit by hand"
END = "  # <<< study stages"
DIMENSIONS = ("dataset", "model", "optimizer", "noise", "seed")
STUDY_READS = {"train": "unitgrad.train.cli", "evaluate": "unitgrad.evaluate"}  # stage kind: its command module


def _module_file(name: str) -> Path | None:
    """The source file of unitgrad module `name` (a package's __init__.py), or None if it is no module."""
    path = SRC.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imports(file: Path) -> set[str]:
    """The unitgrad modules that `file` imports anywhere in its body, functions included (the package imports
    absolutely)."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return {m for m in found if m.split(".")[0] == "unitgrad" and _module_file(m) is not None}


def code_deps(module: str) -> list[str]:
    """The source files that importing unitgrad `module` executes, as dvc.yaml paths: the transitive closure
    of its unitgrad imports and every enclosing package's __init__.py; a package whose every module is in the
    closure is named as its folder."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b first
        todo += _imports(_module_file(name))
    # unitgrad/__init__.py holds only the version: a release must not make every result out of date
    files = {_module_file(name) for name in seen} - {_module_file("unitgrad")}
    return _folded(files)


def _folded(files: set[Path]) -> list[str]:
    """Files as repository paths, a package folder in place of all of its modules when every one is there."""
    root = SRC.parent
    chosen = set(files)
    for folder in sorted({f.parent for f in files}, key=lambda p: len(p.parts), reverse=True):
        members = set(folder.rglob("*.py"))
        if folder != SRC / "unitgrad" and members <= chosen:
            chosen = (chosen - members) | {folder}
    return sorted(p.relative_to(root).as_posix() for p in chosen)


def _run_dir() -> str:
    return RunId.LAYOUT.format(study="${item.study}", **{d: f"${{item.{d}}}" for d in DIMENSIONS})


def _flow(key: str, items: list[str], indent: int = 4, width: int = 120) -> list[str]:
    """`key: [a, b, ...]` as YAML flow lists wrapped at `width`; items holding `${...}` are quoted."""
    cells = [f'"{item}"' if "{" in item else item for item in items]
    lines, line = [], f"{' ' * indent}{key}: ["
    for i, cell in enumerate(cells):
        piece = cell + ("]" if i == len(cells) - 1 else ",")
        if len(line) + len(piece) + 1 > width and not line.endswith("["):
            lines.append(line)
            line = " " * (indent + 2)
        line += ("" if line.endswith("[") or not line.strip() else " ") + piece
    return [*lines, line]


def _definitions() -> dict[str, list[str]]:
    """The body of the train and evaluate stages (after `matrix:`), one definition each."""
    run = f"{RUNS_ROOT.as_posix()}/{_run_dir()}"
    args = " ".join(f"--{d} ${{item.{d}}}" for d in DIMENSIONS)
    train = [
        "    cmd: unitgrad train --study ${item.study} " + args,
        *_flow("deps", [PARAMS_STAMP.as_posix(), "data/${item.dataset}", *code_deps(STUDY_READS["train"])]),
        *_flow(
            "params",
            ["train", "model", "data.loader", "optim.base", "optim.${item.optimizer}", "studies.${item.study}"],
        ),
        "    outs:",
        *[f"      - {run}/train/{name}" for name in ("model.pt", "model_best.pt", "labels.npz")],
        f"      - {run}/train/run.json: {{cache: false}}",
        f"      - {run}/train/dvclive: {{cache: false}}",
        f"      - {run}/train/checkpoint.pt: {{persist: true, cache: false}}   # resumes an interrupted run",
    ]
    evaluate = [
        f"    cmd: unitgrad evaluate {run}",
        *_flow(
            "deps",
            [
                PARAMS_STAMP.as_posix(),
                *[f"{run}/train/{name}" for name in ("model.pt", "model_best.pt", "labels.npz")],
                "data/${item.dataset}",
                "data/${item.dataset}-c",
                *code_deps(STUDY_READS["evaluate"]),
            ],
        ),
        *_flow(
            "params",
            ["evaluate", "train.device", "train.amp", "train.channels_last", "studies.${item.study}.corruptions"],
        ),
        f'    outs: ["{run}/eval.json": {{cache: false}}]',
    ]
    return {"train": train, "evaluate": evaluate}


def study_stages(params: Params) -> str:
    """dvc.yaml's lines for the train and evaluate stages of every study in `params`, between the markers."""
    lines = [BEGIN]
    definitions = _definitions()
    for i, study in enumerate(params.studies):
        matrix = [f"      study: [{study}]"] + [f"      {d}: ${{studies.{study}.{d}s}}" for d in DIMENSIONS[:3]]
        matrix += [f"      noise: ${{studies.{study}.noise}}", f"      seed: ${{studies.{study}.seeds}}"]
        if i == 0:
            lines += [f"  train_{study}: &train", f"    matrix: &{study}", *matrix, *definitions["train"]]
            lines += [f"  evaluate_{study}: &evaluate", f"    matrix: *{study}", *definitions["evaluate"]]
        else:
            lines += [f"  train_{study}:", "    <<: *train", f"    matrix: &{study}", *matrix]
            lines += [f"  evaluate_{study}:", "    <<: *evaluate", f"    matrix: *{study}"]
    return "\n".join([*lines, END])


def _split(text: str, path: Path) -> tuple[str, str, str]:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise UnitgradError(
            f"{path} lacks the study-stage markers ('{BEGIN.strip()}' ... '{END.strip()}'): restore them"
        )
    head, rest = text.split(BEGIN + "\n", 1)
    body, tail = rest.split(END + "\n", 1)
    return head, BEGIN + "\n" + body + END + "\n", tail


def is_current(params: Params, dvc_yaml: Path) -> bool:
    """Whether `dvc_yaml`'s study stages are those `params` gives."""
    return _split(dvc_yaml.read_text(), dvc_yaml)[1] == study_stages(params) + "\n"


def write(params: Params, dvc_yaml: Path) -> bool:
    """Rewrite `dvc_yaml`'s study stages from `params`; whether anything changed."""
    head, body, tail = _split(dvc_yaml.read_text(), dvc_yaml)
    new = study_stages(params) + "\n"
    if body == new:
        return False
    write_text(dvc_yaml, head + new + tail)
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="unitgrad stages", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="the settings file (default: %(default)s)")
    parser.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"), help="the pipeline (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="only check: exit 2 when they are not current")
    args = parser.parse_args(argv)
    params = load_params(args.params, ("studies",))
    if args.check:
        if not is_current(params, args.dvc_yaml):
            raise UnitgradError(
                f"{args.dvc_yaml}'s study stages are not {args.params}'s studies: run `unitgrad stages`"
            )
        print(f"{args.dvc_yaml}: study stages current for {', '.join(params.studies)}")
        return 0
    changed = write(params, args.dvc_yaml)
    state = "rewrote" if changed else "already current:"
    print(f"{args.dvc_yaml}: {state} study stages for {', '.join(params.studies)}", file=sys.stdout)
    return 0
