"""The real dvc.yaml, end to end, on a tiny synthetic image-folder dataset in a throwaway git repo."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        for label, name in enumerate(CLASSES):
            folder = root / "tiny-cifar" / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 64, (32, 32, 3)) + 19 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:04d}.png")
    return root / "tiny-cifar"


# Each study with the optimizers whose code paths it adds: m-sharpness (sam_table1), label noise (sam_table4),
# ASAM's official rule (asam_table), BN in both passes and the per-epoch LR (pugd_official).
TINY_STUDIES = {
    "main": ["sgd", "pugd"],
    "sam_table1": ["sam"],
    "sam_table4": ["sgd"],
    "asam_table": ["asam"],
    "pugd_official": ["pugd"],
}
TINY_SET = {"train.batch_size": 8, "optim.sam.m": 4, "train.epochs": 1}  # 40 training images


def _tiny_params(source: Path, studies: dict[str, list[str]] = TINY_STUDIES) -> dict:
    """params.yaml at a tiny size, with only `studies` (study -> optimizers), one seed each."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["sources"]["cifar10"] = [str(source.parent / "absent.tar.gz"), str(source)]  # falls through
    params["data"]["images_per_class"] = {"train": 6, "test": 3}  # what _image_folder writes
    params["data"]["corruptions"]["n_images"] = 10
    params["data"]["loader"]["train_per_class"] = 4
    params["studies"] = {name: params["studies"][name] for name in studies}
    for name, study in params["studies"].items():
        study.update(optimizers=studies[name], seeds=[0])
        study["set"] = {key: TINY_SET.get(key, value) for key, value in study["set"].items()}
    params["train"].update(epochs=1, batch_size=8, warmup_epochs=0, monitor_per_class=2)
    params["evaluate"]["batch_size"] = 50
    return params


def _run(cmd, cwd):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_dvc_repro_runs_every_stage_then_is_up_to_date(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for path in ("dvc.yaml", "src", "paper"):
        copy = shutil.copytree if (ROOT / path).is_dir() else shutil.copy
        copy(ROOT / path, repo / path)
    (repo / "params.yaml").write_text(yaml.safe_dump(_tiny_params(_image_folder(tmp_path))))
    assert _run(["git", "init", "-q"], repo).returncode == 0
    assert _run([BIN / "dvc", "init", "-q"], repo).returncode == 0

    repro = _run([BIN / "dvc", "repro"], repo)
    assert repro.returncode == 0, (repro.stdout + repro.stderr)[-3000:]  # the paper needs no TeX
    assert json.loads((repo / "data" / "cifar10" / "source.json").read_text())["skipped"][0].startswith(
        str(tmp_path / "absent.tar.gz")
    )

    runs, reported = repo / "results" / "runs", pd.read_csv(repo / "results" / "runs.csv")
    for study, optimizers in TINY_STUDIES.items():
        for optimizer in optimizers:
            noise = 40 if study == "sam_table4" else 0
            run = runs / study / "cifar10" / "cifar_resnet8" / optimizer / f"noise{noise}" / "seed0"
            assert (run / "train" / "model.pt").is_file()
            evaluation = json.loads((run / "eval.json").read_text())
            assert (evaluation["mca"] is None) == (study != "main")  # the study's corruption choice reached it
            row = (reported.study == study) & (reported.optimizer == optimizer) & (reported.metric == "clean_acc")
            assert reported[row].value.tolist() == [evaluation["clean"]["acc"]]  # each run reported, once
    sam = json.loads((runs / "sam_table1/cifar10/cifar_resnet8/sam/noise0/seed0/train/run.json").read_text())
    assert (sam["config"]["m"], sam["config"]["batch_size"]) == (4, 8)  # the study's overrides reached the run
    assert (repo / "results" / "summary.csv").is_file()
    assert (repo / "results" / "claims.md").is_file()
    assert (repo / "results" / "figures" / "toy_trajectories.png").is_file()
    assert (repo / "paper" / "main.pdf").read_bytes()[:4] == b"%PDF"

    status = _run([BIN / "dvc", "status", "--json"], repo)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {}
    assert _run([BIN / "dvc", "metrics", "show"], repo).returncode == 0


@pytest.mark.slow
def test_dvc_repro_with_bad_params_stops_before_removing_any_output(tmp_path):
    """DVC removes a stage's outputs before its command runs, so a command cannot protect them: the `check` stage,
    upstream of every stage, stops `dvc repro` at a bad value first. run.json and dvclive/ (cache: false) would
    otherwise be gone for good."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for path in ("dvc.yaml", "src", "paper"):
        copy = shutil.copytree if (ROOT / path).is_dir() else shutil.copy
        copy(ROOT / path, repo / path)
    params = _tiny_params(_image_folder(tmp_path), {"main": ["sgd"]})
    params["report"]["noise_study"] = "main"
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    assert _run(["git", "init", "-q"], repo).returncode == 0
    assert _run([BIN / "dvc", "init", "-q"], repo).returncode == 0
    assert _run([BIN / "unitgrad", "stages"], repo).returncode == 0
    repro = _run([BIN / "dvc", "repro", "train_main"], repo)
    assert repro.returncode == 0, (repro.stdout + repro.stderr)[-3000:]
    results = repo / "results"
    before = {p: p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()}
    assert any(p.name == "run.json" for p in before) and any(p.parent.name == "dvclive" for p in before)

    text = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(text.replace("  lr: 0.1\n", "  lr: fast\n"))
    bad = _run([BIN / "dvc", "repro", "train_main"], repo)
    assert bad.returncode != 0
    assert "error: params.yaml: train.lr: input should be a valid number, got 'fast'\n" in bad.stderr + bad.stdout
    before.pop(results / "params.ok")  # the check stage's own output, which DVC removes before checking
    assert {p: p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()} == before
