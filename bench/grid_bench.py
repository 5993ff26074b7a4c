"""`grid_speedup_vs_serial`: the smoke grid's training and evaluation through `unitgrad grid run` (2 runs x 1 thread)
against `dvc repro` (default threads), wall time, in one bench run on the same machine.

Both sides start from the same fresh clone of the committed tree with the upstream stages (prepare, corrupt)
already reproduced, so only training and evaluation are timed; the grid's time includes starting Ray.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unitgrad.errors import UnitgradError

TARGET = 1.3  # issue 13: >= 1.3x on the 2-core CPU machine
FULL_STAGES = ("train", "train_noise", "evaluate", "evaluate_noise")
QUICK_STAGES = ("train@cifar10-cifar_resnet8-sgd-*", "evaluate@cifar10-cifar_resnet8-sgd-*")  # 2 + 2 runs


def _run(cmd: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise UnitgradError(f"{' '.join(cmd)} failed (exit {done.returncode}): {' | '.join(tail)}")
    return time.perf_counter() - start


def bench_grid(repo: Path, quick: bool) -> dict:
    """Wall seconds of serial `dvc repro` and of `unitgrad grid run --cpus-per-run 1` over the same stages."""
    stages = QUICK_STAGES if quick else FULL_STAGES
    with tempfile.TemporaryDirectory(prefix="unitgrad-grid-") as tmp:
        serial, grid = Path(tmp) / "serial" / repo.name, Path(tmp) / "grid" / repo.name
        serial.parent.mkdir()
        subprocess.run(["git", "clone", "--quiet", str(repo), str(serial)], check=True)
        env = dict(os.environ, PYTHONPATH=str(serial / "src"), DVC_NO_ANALYTICS="1", RAY_USAGE_STATS_ENABLED="0")
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.pop("OMP_NUM_THREADS", None)  # serial: torch's default threads
        if (repo.parent / "shared").exists():  # ../shared holds the offline CIFAR-10 images
            (serial.parent / "shared").symlink_to(repo.parent / "shared")
        _run(["dvc", "repro", "corrupt"], serial, env)  # upstream of both, untimed
        shutil.copytree(serial, grid, symlinks=True)
        if (repo.parent / "shared").exists():  # ../shared holds the offline CIFAR-10 images
            (grid.parent / "shared").symlink_to(repo.parent / "shared")
        serial_s = _run(["dvc", "repro", "--glob", *stages] if quick else ["dvc", "repro", *stages], serial, env)
        grid_env = dict(env, PYTHONPATH=str(grid / "src"))
        grid_s = _run(
            ["unitgrad", "grid", "run", *stages, "--cpus-per-run", "1", "--gpus-per-run", "0", "--no-finish"],
            grid,
            grid_env,
        )
    speedup = serial_s / grid_s
    return {
        "stages": list(stages),
        "serial_dvc_repro_s": serial_s,
        "grid_run_s": grid_s,
        "speedup": speedup,
        "target": TARGET,
        "meets_target": None if quick else speedup >= TARGET,
        "cpus": os.cpu_count(),
    }


def render(result: dict) -> list[str]:
    verdict = (
        "not judged (--quick subset)"
        if result["meets_target"] is None
        else ("met" if result["meets_target"] else "NOT met")
    )
    return [
        "",
        "## `unitgrad grid run` vs serial `dvc repro` (training + evaluation, wall time)",
        "",
        f"Stages: {', '.join(result['stages'])}; {result['cpus']} CPUs; grid: 1 thread per run, Ray start included.",
        "",
        "| what | wall s |",
        "|---|---:|",
        f"| `dvc repro` (default threads) | {result['serial_dvc_repro_s']:.1f} |",
        f"| `unitgrad grid run --cpus-per-run 1` | {result['grid_run_s']:.1f} |",
        "",
        f"Speed-up **{result['speedup']:.2f}×** (target ≥ {result['target']:g}×: {verdict}).",
    ]
