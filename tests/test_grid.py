"""`unitgrad grid`: the plan from DVC's index, Ray dispatch committed to DVC, failures, resume, GPU packing, SLURM.

The real dvc.yaml runs on a tiny synthetic image folder in a throwaway git+DVC repo (like test_pipeline.py);
the scheduling cases use a few trivial stages in their own tiny DVC project. One local Ray cluster (2 CPUs,
one fake GPU) serves the whole module.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from test_pipeline import ROOT, _image_folder, _tiny_params

from unitgrad.config import load_params
from unitgrad.errors import UnitgradError
from unitgrad.grid import slurm
from unitgrad.grid.cli import main as grid
from unitgrad.grid.plan import make_plan
from unitgrad.grid.ray_backend import configure_ray_env
from unitgrad.grid.stages import open_repo
from unitgrad.studies import selected_runs

ray = pytest.importorskip("ray")
BIN = Path(sys.executable).parent
TRAIN, EVAL = "train_main@main-cifar10-cifar_resnet8-{}-0-0", "evaluate_main@main-cifar10-cifar_resnet8-{}-0-0"
NOISY_TRAIN, NOISY_EVAL = (
    "train_sam_table4@sam_table4-cifar10-cifar_resnet8-sgd-40-0",
    "evaluate_sam_table4@sam_table4-cifar10-cifar_resnet8-sgd-40-0",
)


@pytest.fixture(scope="module")
def cluster():
    configure_ray_env()
    with pytest.MonkeyPatch.context() as mp:  # Ray's workers run the stages with the PATH Ray started with
        mp.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
        for attempt in (1, 2):  # on a loaded 2-core machine Ray's agent can miss its start-up deadline once
            try:
                ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, _temp_dir="/tmp/ray")
                break
            except Exception:
                ray.shutdown()
                if attempt == 2:
                    raise
    yield ray.get_runtime_context().gcs_address  # each `unitgrad grid run` joins it with --address
    ray.shutdown()


@pytest.fixture(autouse=True)
def env(monkeypatch):
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the serial `dvc repro` uses the same threads as a grid run


def _sh(cmd, cwd):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _real_repo(path: Path, source: Path, optimizers=("sgd", "pugd")) -> Path:
    """The project's dvc.yaml and code at tiny params with two studies: main (`optimizers`) and sam_table4 (sgd
    at 40 % noise); `unitgrad stages` writes just their study stages, to keep the grid small."""
    path.mkdir()
    for name in ("src", "paper"):
        shutil.copytree(ROOT / name, path / name)
    studies = {"main": list(optimizers), "sam_table4": ["sgd"]}
    shutil.copy(ROOT / "dvc.yaml", path / "dvc.yaml")
    (path / "params.yaml").write_text(yaml.safe_dump(_tiny_params(source, studies)))
    _sh([str(BIN / "unitgrad"), "stages"], path)
    _sh(["git", "init", "-q"], path)
    _sh(["dvc", "init", "-q"], path)
    return path


def _fake_repo(path: Path, stages: dict) -> Path:
    """A DVC project of trivial stages for the scheduling cases."""
    path.mkdir()
    (path / "input.txt").write_text("x\n")
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    _sh(["git", "init", "-q"], path)
    _sh(["dvc", "init", "-q"], path)
    return path


def _script(repo: Path, name: str, code: str) -> None:
    """A helper script for a one-line stage command (DVC runs each line of a cmd as its own command)."""
    (repo / name).write_text(textwrap.dedent(code))


def _grid(repo: Path, *args: str, address: str | None = None) -> subprocess.CompletedProcess:
    """`unitgrad grid ...` in its own process (as a user runs it), joining the module's Ray cluster."""
    cmd = [sys.executable, "-m", "unitgrad", "grid", *args] + (["--address", address] if address else [])
    return subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=False)


def _status(repo: Path) -> dict:
    return json.loads(_sh(["dvc", "status", "--json"], repo))


def test_plan_of_the_real_dvc_yaml(tmp_path):
    repo = _real_repo(tmp_path / "repo", _image_folder(tmp_path))
    plan = make_plan(open_repo(repo))
    names = [r.stage for r in plan.runs]
    trains = [TRAIN.format("sgd"), TRAIN.format("pugd"), NOISY_TRAIN]
    evals = [EVAL.format("sgd"), EVAL.format("pugd"), NOISY_EVAL]
    assert names == trains + evals
    assert plan.upstream == ("check", "prepare@cifar10", "corrupt@cifar10")
    runs = {r.stage: r for r in plan.runs}
    assert runs[TRAIN.format("pugd")].cmd == (
        "unitgrad train --study main --dataset cifar10 --model cifar_resnet8 --optimizer pugd --noise 0 --seed 0",
    )
    assert runs[EVAL.format("pugd")].after == (TRAIN.format("pugd"),)
    assert runs[NOISY_EVAL].after == (NOISY_TRAIN,)
    assert [r.stage for r in make_plan(open_repo(repo), ("train_sam_table4",)).runs] == [NOISY_TRAIN]


def test_dry_run_of_the_paper_scale_lists_every_training_run(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo)
    shutil.copy(ROOT / "params.paper.yaml", repo / "params.yaml")
    _sh(["git", "init", "-q"], repo)
    _sh(["dvc", "init", "-q"], repo)
    out = _sh([sys.executable, "-m", "unitgrad", "grid", "run", "--dry-run", "train*"], repo)
    params = load_params(ROOT / "params.paper.yaml")
    assert f"\n{len(selected_runs(params))} runs, each 1 CPU" in out  # 218: every study's runs
    for study in params.studies:
        assert f"  train_{study}@" in out
    assert (
        "train_sam_table1@sam_table1-cifar100-cifar_wrn28_10-sgd_2x-0-4: unitgrad train --study sam_table1 "
        "--dataset cifar100 --model cifar_wrn28_10 --optimizer sgd_2x --noise 0 --seed 4"
    ) in out
    assert "train_sam_table4@sam_table4-cifar10-cifar_resnet32-asam-80-2: unitgrad train --study sam_table4" in out


def test_bad_options_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(_fake_repo(tmp_path / "repo", {"train": {"cmd": "true"}}))
    with pytest.raises(UnitgradError, match=r"stage pattern 'nope' matches no stage.*train"):
        grid(["run", "nope", "--dry-run"])
    with pytest.raises(UnitgradError, match=r"--gpus-per-run -0\.5 is negative"):
        grid(["run", "--gpus-per-run", "-0.5"])
    with pytest.raises(UnitgradError, match="SLURM gives whole GPUs"):
        grid(["run", "--backend", "slurm", "--gpus-per-run", "0.5"])
    with pytest.raises(UnitgradError, match="--address joins a Ray cluster: drop it with --backend slurm"):
        grid(["run", "--backend", "slurm", "--address", "auto"])
    with pytest.raises(UnitgradError, match="--max-parallel 0 must be at least 1"):
        grid(["run", "--backend", "slurm", "--max-parallel", "0"])
    # SLURM may signal up to 60 s early: a 1-minute task could get USR2 before submitit's handler, which it kills
    with pytest.raises(UnitgradError, match=r"--time-min 1 with --signal-delay-s 50: .* \(e\.g\. --time-min 3\)"):
        grid(["run", "--backend", "slurm", "--time-min", "1", "--signal-delay-s", "50"])
    grid(["run", "--backend", "slurm", "--time-min", "2", "--signal-delay-s", "30", "--dry-run"])  # 90 s: enough
    with pytest.raises(UnitgradError, match="--signal-delay-s -1 must be 0 or more"):
        grid(["run", "--backend", "slurm", "--signal-delay-s", "-1"])


@pytest.mark.slow
def test_grid_run_equals_serial_dvc_repro(cluster, tmp_path):
    serial = _real_repo(tmp_path / "serial", _image_folder(tmp_path), optimizers=("pugd",))
    _sh(["dvc", "repro", "corrupt"], serial)  # the upstream stages, shared by both sides
    parallel = tmp_path / "grid"
    shutil.copytree(serial, parallel, symlinks=True)
    _sh(["dvc", "repro", "evaluate_main", "evaluate_sam_table4"], serial)
    done = _grid(parallel, "run", "--gpus-per-run", "0", address=cluster)
    assert done.returncode == 0, done.stderr[-3000:]  # the finishing `dvc repro` builds the paper too
    assert _status(parallel) == {}
    assert "Running stage" not in _sh(["dvc", "repro", "report_claims", "report_figures", "toy"], parallel)
    runs = sorted((serial / "results" / "runs").rglob("eval.json"))
    assert len(runs) == 2  # main's pugd and sam_table4's sgd
    for path in runs:
        twin = parallel / path.relative_to(serial)
        assert json.loads(twin.read_text()) == json.loads(path.read_text()), path
    log = (parallel / "results" / "logs" / f"{TRAIN.format('pugd')}.log").read_text()
    assert "attempt 1" in log
    again = _grid(parallel, "run", "--no-finish", address=cluster)
    assert again.returncode == 0 and "every selected stage is up to date" in again.stdout, again.stderr


def test_failed_and_drifted_runs_are_not_committed(cluster, tmp_path):
    repo = _fake_repo(
        tmp_path / "repo",
        {
            "train_ok": {"cmd": "echo ok > ok.txt", "deps": ["input.txt"], "outs": ["ok.txt"]},
            "train_fail": {
                "cmd": "echo try >> tries.log && echo boom && exit 3",
                "deps": ["input.txt"],
                "outs": ["fail.txt"],
            },
            "evaluate_fail": {"cmd": "cp fail.txt eval.txt", "deps": ["fail.txt"], "outs": ["eval.txt"]},
            "train_drift": {
                "cmd": "echo more >> drift_input.txt && echo d > drift.txt",
                "deps": ["drift_input.txt"],
                "outs": ["drift.txt"],
            },
        },
    )
    (repo / "drift_input.txt").write_text("x\n")
    done = _grid(repo, "run", "--no-finish", "--gpus-per-run", "0", "--retries", "1", address=cluster)
    assert done.returncode == 1
    err = done.stderr
    assert "train_fail: exit code 3 after 2 attempts; last log line: 'boom'; log: results/logs/train_fail.log" in err
    assert "evaluate_fail: not run" in err
    assert "train_drift: dependencies changed while it ran: drift_input.txt; not committed" in err
    assert (repo / "tries.log").read_text() == "try\ntry\n"
    status = _status(repo)
    assert "train_ok" not in status and {"train_fail", "evaluate_fail", "train_drift"} <= set(status)


def test_a_killed_run_resumes_from_its_persist_checkpoint(cluster, tmp_path):
    repo = _fake_repo(
        tmp_path / "repo",
        {
            "train": {
                "cmd": "python step.py",
                "deps": ["input.txt"],
                "outs": ["model.txt", {"ckpt.json": {"persist": True, "cache": False}}],
            }
        },
    )
    _script(
        repo,
        "step.py",
        """
        import json, os, pathlib, signal
        ckpt = pathlib.Path("ckpt.json")
        start = json.loads(ckpt.read_text())["epoch"] if ckpt.exists() else 0
        for epoch in range(start, 3):
            ckpt.write_text(json.dumps({"epoch": epoch + 1}))
            if epoch == 1 and pathlib.Path("kill-once").exists():
                pathlib.Path("kill-once").unlink()
                os.kill(os.getpid(), signal.SIGKILL)
        pathlib.Path("model.txt").write_text(f"resumed at {start}")
    """,
    )
    (repo / "kill-once").touch()
    (repo / "model.txt").write_text("stale")  # a non-persist out is removed before dispatch
    assert _grid(repo, "run", "--no-finish", "--gpus-per-run", "0", "--retries", "0", address=cluster).returncode == 1
    assert json.loads((repo / "ckpt.json").read_text()) == {"epoch": 2} and not (repo / "model.txt").exists()
    done = _grid(repo, "run", "--no-finish", "--gpus-per-run", "0", address=cluster)
    assert done.returncode == 0, done.stderr
    assert (repo / "model.txt").read_text() == "resumed at 2"
    assert _status(repo) == {}


def test_fractional_gpus_pack_two_runs_on_one_gpu(cluster, tmp_path):
    repo = _fake_repo(
        tmp_path / "repo",
        {
            f"train_{k}": {"cmd": f"python record.py {k}.json", "deps": ["input.txt"], "outs": [f"{k}.json"]}
            for k in "ab"
        },
    )
    _script(
        repo,
        "record.py",
        """
        import json, os, sys, time
        start = time.time(); time.sleep(3)
        json.dump({"gpu": os.environ["CUDA_VISIBLE_DEVICES"], "threads": os.environ["OMP_NUM_THREADS"],
                   "start": start, "end": time.time()}, open(sys.argv[1], "w"))
    """,
    )
    done = _grid(repo, "run", "--no-finish", "--gpus-per-run", "0.5", "--cpus-per-run", "1", address=cluster)
    assert done.returncode == 0, done.stderr
    a, b = (json.loads((repo / f"{k}.json").read_text()) for k in "ab")
    assert a["gpu"] == b["gpu"] == "0" and a["threads"] == "1"
    assert a["start"] < b["end"] and b["start"] < a["end"]  # at the same time


def test_slurm_array_script_and_local_executor_then_collect(tmp_path):
    import submitit

    repo = _fake_repo(
        tmp_path / "repo",
        {
            "train": {"cmd": "echo w > model.txt", "deps": ["input.txt"], "outs": ["model.txt"]},
            "evaluate": {"cmd": "cp model.txt eval.txt", "deps": ["model.txt"], "outs": ["eval.txt"]},
            "train_other": {"cmd": "echo v > other.txt", "deps": ["input.txt"], "outs": ["other.txt"]},
        },
    )
    plan = make_plan(open_repo(repo))
    assert [[r.stage for r in chain] for chain in slurm.chains(plan)] == [["train", "evaluate"], ["train_other"]]

    args = slurm.argparse.Namespace(time_min=90, cpus_per_run=4, signal_delay_s=120, max_parallel=8, partition="gpu")
    text = slurm.sbatch_text(slurm.executor_parameters(args, gpus=1), tmp_path / "logs", tasks=2)
    for flag in (
        "--array=0-1%2",
        "--gpus-per-task=1",
        "--cpus-per-task=4",
        "--signal=USR2@120",
        "--partition=gpu",
        "--time=90",
    ):
        assert f"#SBATCH {flag}" in text, text

    jobs = slurm.submit_array(
        submitit.LocalExecutor(folder=tmp_path / "submitit"), str(repo), plan, {"OMP_NUM_THREADS": "1"}, retries=0
    )
    assert [[r["returncode"] for r in job.result()] for job in jobs] == [[0, 0], [0]]
    assert set(_status(repo)) == {"train", "evaluate", "train_other"}  # finished, not yet committed
    assert _grid(repo, "collect", "--no-finish").returncode == 0
    assert _status(repo) == {}
    again = _grid(repo, "collect")  # idempotent
    assert again.returncode == 0 and "committed 0 stages" in again.stdout, again.stderr
