"""Bad inputs through the real CLI on a tiny prepared project: one line, exit 2, every earlier output byte-identical.

One class of failure per test group: outputs destroyed before the inputs were known good, tracebacks instead of one
line (every OSError on a path becomes one), reports that hide missing runs or runs whose params changed under them,
and the record's own reproducibility (equal weights give an equal model.pt).
"""

from __future__ import annotations

import errno
import hashlib
import os
import pathlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures.params import project_params
from PIL import Image

from unitgrad import cli
from unitgrad.data import CIFAR10_CLASSES
from unitgrad.train import cli as train_cli

RUN = Path("results/runs/main/cifar10/cifar_resnet8/sgd/noise0/seed0")
TRAIN = ["train", "--study", "main", "--dataset", "cifar10", "--model", "cifar_resnet8", "--optimizer", "sgd"]


def _params() -> dict:
    """params.yaml at a tiny size: study main with sgd × seeds 0, 1 on 4 + 2 images per class."""
    params = project_params()
    params["data"].update(sources={"cifar10": "tree"}, images_per_class={"train": 4, "test": 2})
    params["data"]["corruptions"]["n_images"] = 10
    params["data"]["loader"]["train_per_class"] = 4
    params["studies"] = {"main": {**params["studies"]["main"], "optimizers": ["sgd"], "seeds": [0, 1]}}
    params["report"].update(noise_study="main")
    params["train"].update(epochs=1, batch_size=8, warmup_epochs=0, device="cpu", monitor_per_class=None)
    params["evaluate"]["batch_size"] = 50
    return params


def _tree(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("test", 2)):
        for label, name in enumerate(CIFAR10_CLASSES):
            (root / split / name).mkdir(parents=True)
            for k in range(count):
                pixels = rng.integers(0, 64, (32, 32, 3)) + 19 * label
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{k}.png")


def _files(root: Path) -> dict[str, bytes]:
    """Every file under `root` (hidden temporaries included) and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _fails(capsys, argv: list[str], *parts: str) -> str:
    """`unitgrad argv` exits 2 with one line on stderr holding every one of `parts`; that line."""
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and all(part in err for part in parts), err
    return err


@pytest.fixture
def project(tmp_path, monkeypatch, capsys):
    """tmp_path as a project: params.yaml, data prepared and corrupted, run seed0 trained and evaluated."""
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    _tree(tmp_path / "tree")
    Path("params.yaml").write_text(yaml.safe_dump(_params()))
    for argv in (["prepare", "cifar10"], ["corrupt", "cifar10"], [*TRAIN, "--seed", "0"], ["evaluate", str(RUN)]):
        assert cli.main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    return tmp_path


# ---------------------------------------------------------------- outputs destroyed before the inputs are known good


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-64]), "train_x.npy is truncated or not a .npy file"),
        (lambda p: p.unlink(), "data/cifar10 is missing or incomplete"),
    ],
    ids=["truncated-train_x", "missing-train_x"],
)
def test_retraining_with_damaged_data_keeps_the_finished_run(project, capsys, damage, message):
    before = _files(project / "results")
    damage(project / "data" / "cifar10" / "train_x.npy")
    _fails(capsys, [*TRAIN, "--seed", "0"], message, "unitgrad prepare cifar10")
    assert _files(project / "results") == before


def test_a_missing_test_split_keeps_the_finished_run(project, capsys):
    before = _files(project / "results")
    (project / "data" / "cifar10" / "test_y.npy").unlink()
    _fails(capsys, [*TRAIN, "--seed", "0"], "data/cifar10 is missing or incomplete: run `unitgrad prepare cifar10`")
    assert _files(project / "results") == before


# ---------------------------------------------------------------- one line, never a traceback


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-1"], "--seed -1: a run seed must lie in 0..4294967295"),
        (["--seed", str(2**32)], "--seed 4294967296: a run seed must lie in 0..4294967295"),
        (["--seed", "0", "--noise", "101"], "--noise 101: a percent of flipped labels must lie in 0..100"),
    ],
)
def test_a_seed_out_of_range_is_one_line(project, capsys, args, message):
    before = _files(project / "results")
    _fails(capsys, [*TRAIN, *args], message)
    assert _files(project / "results") == before


def test_a_results_folder_under_a_file_is_one_line(project, capsys):
    (project / "blocked").write_text("a file")
    _fails(capsys, [*TRAIN, "--seed", "1", "--out", "blocked/runs"], "blocked is a file where a directory must go")


def test_an_eval_json_that_is_a_directory_is_one_line_naming_it(project, capsys):
    eval_json = project / RUN / "eval.json"
    eval_json.unlink()
    (eval_json / "keep").mkdir(parents=True)
    _fails(capsys, ["evaluate", str(RUN)], str(RUN / "eval.json"), "it is a directory where a file must go: remove it")
    assert [p.name for p in (project / RUN).iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_leaves_no_temporary(project, capsys, monkeypatch):
    before = _files(project / "results")
    write_bytes = pathlib.Path.write_bytes

    def full(self, data):
        if ".checkpoint.pt." in self.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return write_bytes(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    _fails(capsys, [*TRAIN, "--seed", "1"], ".checkpoint.pt.", "No space left on device: free disk space, then rerun")
    after = _files(project / "results")
    assert {name: after[name] for name in before} == before
    assert not any(Path(name).name.startswith(".") for name in after)


def test_a_truncated_corruption_file_during_evaluate_is_one_line(project, capsys):
    before = _files(project / "results")
    fog = project / "data" / "cifar10-c" / "fog.npy"
    fog.write_bytes(fog.read_bytes()[:-100])
    _fails(capsys, ["evaluate", str(RUN)], f"{Path('data/cifar10-c/fog.npy')} is truncated", "unitgrad corrupt cifar10")
    assert _files(project / "results") == before


def test_clean_removes_a_symlinked_stale_run_folder_as_its_dry_run_said(project, capsys, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "model.pt").write_bytes(b"not ours")
    stale = project / "results/runs/main/cifar10/cifar_resnet8/sgd/noise0/seed9"
    stale.symlink_to(elsewhere, target_is_directory=True)
    assert cli.main(["clean", "--dry-run"]) == 0
    assert capsys.readouterr().out == f"would remove {stale.relative_to(project)}\n"
    assert cli.main(["clean"]) == 0
    assert capsys.readouterr().out == f"removed {stale.relative_to(project)}\n"
    assert not stale.is_symlink() and (elsewhere / "model.pt").read_bytes() == b"not ours"


# ---------------------------------------------------------------- reports and records that hide what happened


def test_params_changed_while_training_fail_the_run_so_dvc_does_not_record_it(project, capsys, monkeypatch):
    train_run = train_cli.train_run

    def edited_meanwhile(cfg, out_dir):
        result = train_run(cfg, out_dir)
        Path("params.yaml").write_text(Path("params.yaml").read_text().replace("lr: 0.1", "lr: 0.2"))
        return result

    monkeypatch.setattr(train_cli, "train_run", edited_meanwhile)
    _fails(capsys, [*TRAIN, "--seed", "1"], "params.yaml changed while", "seed1/train trained", "rerun it")


def test_a_report_over_some_runs_names_the_missing_ones(project, capsys):
    """Smoke scale: a warning naming seed1 (selected, never run); laptop or paper scale: an error, as a verdict would
    rest on the other runs, and the earlier CSVs stay as they were."""
    assert cli.main(["report", "aggregate"]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 of the 2 runs params.yaml selects have no eval.json under results/runs" in err
    assert "main/cifar10/cifar_resnet8/sgd/noise0/seed1" in err
    before = _files(project / "results")
    Path("params.yaml").write_text(yaml.safe_dump({**_params(), "scale": "paper"}))
    _fails(capsys, ["report", "aggregate"], "1 of the 2 runs", "seed1", "run them first")
    assert _files(project / "results") == before


# ---------------------------------------------------------------- the record's reproducibility


def test_rerunning_a_finished_run_gives_the_same_model_pt(project, capsys):
    md5 = {name: hashlib.md5((project / RUN / "train" / name).read_bytes()).hexdigest() for name in ("model.pt",)}
    assert cli.main([*TRAIN, "--seed", "0", "--out", "again"]) == 0
    again = project / "again" / RUN.relative_to("results/runs") / "train"
    assert {name: hashlib.md5((again / name).read_bytes()).hexdigest() for name in md5} == md5
    assert (again / "model_best.pt").read_bytes() == (project / RUN / "train" / "model_best.pt").read_bytes()
