"""`unitgrad grid run --backend slurm` on a real one-node SLURM (scripts/slurm_localhost.sh): the upstream job, the
array and the dependent `collect`; a requeue mid-training, a time-limit signal, failures, scancel, collect twice.

The cluster needs root (and apt-get if SLURM is not installed); elsewhere these tests skip, except in CI, which
sets UNITGRAD_REQUIRE_CLUSTERS so that they fail instead.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from fixtures import slurm
from test_pipeline import ROOT, _image_folder, _tiny_params

BIN = Path(sys.executable).parent
MAIN_RUN = Path("results/runs/main/cifar10/cifar_resnet8/pugd/noise0/seed0")
EPOCHS = 12  # about 0.5 s each: the requeue lands mid-training


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with slurm.local_slurm(tmp_path_factory.mktemp("slurm")) as state:
        yield state


@pytest.fixture(autouse=True)
def env(monkeypatch):
    # the jobs inherit this environment (sbatch exports it): this venv's tools, no analytics, 1 thread per run
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _sh(cmd, cwd, ok=True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    assert not ok or done.returncode == 0, done.stdout + done.stderr
    return done


def _grid(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return _sh([sys.executable, "-m", "unitgrad", "grid", *args], repo, ok=False)


def _submit(repo: Path, *args: str) -> dict[str, str]:
    done = _grid(repo, "run", "--backend", "slurm", "--gpus-per-run", "0", "--cpus-per-run", "1", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return slurm.job_ids(done.stdout)


def _job_log(repo: Path, job: str) -> str:
    """What submitit's job wrote (stdout and stderr; for a CommandFunction, the command's output)."""
    folder = repo / "results" / "logs" / "slurm"
    return "".join(p.read_text() for p in sorted(folder.glob(f"{job}_*_log.*")))


def _status(repo: Path) -> dict:
    return json.loads(_sh(["dvc", "status", "--json"], repo).stdout)


def _init(repo: Path) -> Path:
    _sh(["git", "init", "-q"], repo)
    _sh(["dvc", "init", "-q"], repo)
    return repo


def _real_repo(path: Path, source: Path) -> Path:
    """The project's dvc.yaml and code at tiny params: main (pugd, EPOCHS epochs) and sam_table4 (sgd, 40 % noise),
    the noise study the report needs; `unitgrad grid run` writes their stages into dvc.yaml."""
    path.mkdir()
    for name in ("src", "paper"):
        shutil.copytree(ROOT / name, path / name)
    shutil.copy(ROOT / "dvc.yaml", path)
    params = _tiny_params(source, {"main": ["pugd"], "sam_table4": ["sgd"]})
    params["train"]["epochs"] = EPOCHS
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    return _init(path)


def _fake_repo(path: Path, stages: dict, scripts: dict[str, str] = {}) -> Path:  # noqa: B006 (read only)
    path.mkdir()
    (path / "input.txt").write_text("x\n")
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    for name, code in scripts.items():
        (path / name).write_text(textwrap.dedent(code))
    return _init(path)


# Counts "epochs" into a persist checkpoint; the first time (marker `slow-once`) it stalls after epoch 2, longer
# than any task's time limit here, until SLURM's time-limit signal or scancel finds it.
STEP = """
    import json, pathlib, sys, time
    ckpt, out = pathlib.Path(sys.argv[1] + ".ckpt"), pathlib.Path(sys.argv[1])
    start = json.loads(ckpt.read_text())["epoch"] if ckpt.exists() else 0
    print(f"starting at epoch {start}", flush=True)
    for epoch in range(start, 4):
        ckpt.write_text(json.dumps({"epoch": epoch + 1}))
        if epoch == 1 and pathlib.Path("slow-once").exists():
            pathlib.Path("slow-once").unlink()
            time.sleep(600)
    out.write_text(f"4 epochs, resumed at {start}")
"""


def _step_stage(name: str, **extra) -> dict:
    return {
        "cmd": f"python step.py {name}.txt",
        "deps": ["input.txt", "step.py"],
        "outs": [f"{name}.txt", {f"{name}.txt.ckpt": {"persist": True, "cache": False}}],
        **extra,
    }


@pytest.mark.slow
def test_upstream_array_and_collect_equal_serial_with_a_requeue_mid_training(cluster, tmp_path):
    started = time.monotonic()
    grid = _real_repo(tmp_path / "grid", _image_folder(tmp_path))
    serial = tmp_path / "serial"
    shutil.copytree(grid, serial, symlinks=True)
    _sh([sys.executable, "-m", "unitgrad", "stages"], serial)
    _sh(["dvc", "repro", "evaluate_main", "evaluate_sam_table4"], serial)
    serial_s = time.monotonic() - started

    ids = _submit(grid, "--time-min", "10")
    assert set(ids) == {"upstream", "array", "collect"}
    main_task = f"{ids['array']}_0"  # the plan's first chain: main's training, then its evaluation
    slurm.wait_for(grid / MAIN_RUN / "train" / "checkpoint.pt", timeout=600)  # written after each epoch
    _sh(["scontrol", "requeue", main_task], grid)
    assert slurm.wait(ids["collect"], timeout=600) == "COMPLETED", _job_log(grid, ids["collect"])
    print(f"serial {serial_s:.0f} s, SLURM {time.monotonic() - started - serial_s:.0f} s")

    assert slurm.states(ids["upstream"], ids["array"]) == {
        ids["upstream"]: "COMPLETED",
        main_task: "COMPLETED",
        f"{ids['array']}_1": "COMPLETED",
    }
    assert slurm.restarts(main_task) == 1
    train_log = next((grid / "results" / "logs").glob("train_main@*.log")).read_text()
    resumed = json.loads((grid / MAIN_RUN / "train" / "run.json").read_text())["resumed_from_epoch"]
    assert 1 <= resumed < EPOCHS and f"after epoch {resumed}/{EPOCHS}" in train_log, train_log
    assert _status(grid) == {}  # the collect job also ran the final `dvc repro` (report, paper)

    # the same weights, labels and evaluations, byte for byte (run.json, checkpoint.pt and dvclive/ record times)
    outs = {}
    for side in (serial, grid):
        stages = yaml.safe_load((side / "dvc.lock").read_text())["stages"]
        outs[side] = {
            o["path"]: o["md5"]
            for name, stage in stages.items()
            if name.startswith(("train_", "evaluate_"))
            for o in stage["outs"]
            if o["path"].endswith(("model.pt", "model_best.pt", "labels.npz", "eval.json"))
        }
    assert outs[grid] == outs[serial] and str(MAIN_RUN / "train" / "model.pt") in outs[grid]

    again = _grid(grid, "collect")  # by hand, after the collect job: nothing left to commit
    assert again.returncode == 0 and "committed 0 stages" in again.stdout, again.stderr


@pytest.mark.slow
def test_a_task_past_its_time_limit_is_signalled_requeued_and_resumes(cluster, tmp_path):
    repo = _fake_repo(tmp_path / "repo", {"train": _step_stage("model")}, {"step.py": STEP})
    (repo / "slow-once").touch()
    started = time.monotonic()
    # USR2 30 s before the 2-minute limit; slurmctld sends it up to 60 s early (here: 60-90 s in), not before the
    # stage stalls after epoch 2 (a few seconds in), which only the signal ends
    ids = _submit(repo, "--no-finish", "--time-min", "2", "--signal-delay-s", "30")
    assert slurm.wait(ids["collect"], timeout=240) == "COMPLETED", _job_log(repo, ids["collect"])
    print(f"time-limit requeue {time.monotonic() - started:.0f} s")
    task = ids["array"]  # submitit submits an array of one task as a plain job
    assert slurm.restarts(task) >= 1
    assert "Caught signal SIGUSR2" in _job_log(repo, task) and "Requeued job" in _job_log(repo, task)
    assert (repo / "model.txt").read_text() == "4 epochs, resumed at 2"
    assert _status(repo) == {}


@pytest.mark.slow
def test_failures_and_scancel_are_reported_by_collect_and_not_committed(cluster, tmp_path):
    repo = _fake_repo(
        tmp_path / "repo",
        {
            "train_ok": {"cmd": "echo ok > ok.txt", "deps": ["input.txt"], "outs": ["ok.txt"]},
            "train_fail": {
                "cmd": "echo try >> tries.log && echo partial > fail.txt && echo boom && exit 3",
                "deps": ["input.txt"],
                "outs": ["fail.txt"],
            },
            "evaluate_fail": {"cmd": "cp fail.txt eval.txt", "deps": ["fail.txt"], "outs": ["eval.txt"]},
            "train_cancelled": _step_stage("cancelled"),
        },
        {"step.py": STEP},
    )
    (repo / "slow-once").touch()
    started = time.monotonic()
    ids = _submit(repo, "--no-finish", "--retries", "1")
    slurm.wait_for(repo / "cancelled.txt.ckpt", timeout=120)
    time.sleep(1)  # into its stall after epoch 2
    cancelled = next(t for t in slurm.states(ids["array"]) if "train_cancelled: attempt 1" in _job_log(repo, t))
    _sh(["scancel", cancelled], repo)
    assert slurm.wait(ids["collect"], timeout=180) == "FAILED"
    print(f"failures and scancel {time.monotonic() - started:.0f} s")
    assert slurm.states(cancelled)[cancelled] == "CANCELLED"

    report = _job_log(repo, ids["collect"])
    assert "committed 1 stages to dvc.lock" in report, report
    assert (
        "train_fail: exit code 3 after 2 attempts; not committed; last log line: 'boom'; "
        "log: results/logs/train_fail.log"
    ) in report
    assert "evaluate_fail: not run: no record" in report
    assert "train_cancelled: exit code -15 (SIGTERM) after 1 attempts; not committed" in report
    assert (repo / "tries.log").read_text() == "try\ntry\n"
    assert set(_status(repo)) == {"train_fail", "evaluate_fail", "train_cancelled"}
    locked = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(locked) == {"train_ok"}  # nothing the failed or cancelled stages wrote

    again = _grid(repo, "collect", "--no-finish")  # a second collect: the same report, nothing committed
    assert again.returncode == 1 and "committed 0 stages" in again.stdout
    assert "train_fail: exit code 3 after 2 attempts" in again.stderr
    rerun = _submit(repo, "--no-finish")  # the cancelled training resumes from its checkpoint
    assert slurm.wait(rerun["collect"], timeout=180) == "FAILED"  # train_fail fails again
    assert (repo / "cancelled.txt").read_text() == "4 epochs, resumed at 2"
    assert "train_cancelled" not in _status(repo)


@pytest.mark.slow
def test_a_failed_upstream_job_cancels_the_array_and_collect_reports_it(cluster, tmp_path):
    repo = _fake_repo(
        tmp_path / "repo",
        {
            "prepare": {"cmd": "echo broken && exit 2", "deps": ["input.txt"], "outs": ["data.txt"]},
            "train": {"cmd": "cp data.txt model.txt", "deps": ["data.txt"], "outs": ["model.txt"]},
        },
    )
    started = time.monotonic()
    ids = _submit(repo, "--no-finish")
    assert slurm.wait(ids["collect"], timeout=180) == "FAILED"  # rather than all pending forever
    print(f"failed upstream {time.monotonic() - started:.0f} s")
    assert slurm.states(ids["upstream"], ids["array"]) == {ids["upstream"]: "FAILED", ids["array"]: "CANCELLED"}
    assert "train: not run: no record" in _job_log(repo, ids["collect"])
