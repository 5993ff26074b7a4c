"""The default `dvc repro` per stage in a clean clone, and `grid_speedup_vs_serial`: the smoke grid's training and
evaluation through `unitgrad grid run` (2 runs x 1 thread) against `dvc repro` (default threads), in one bench run.

Full mode: the serial side is the whole default `dvc repro` of a fresh clone of the committed tree (its total is the
smoke scale's time); its training and evaluation stages are summed. The grid side is a second fresh clone whose
upstream stages (prepare, corrupt) are reproduced untimed first, then `unitgrad grid run --no-finish` is timed,
Ray's start included. `--quick` compares 4 runs only: a check of the path, not judged.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unitgrad import markdown
from unitgrad.errors import UnitgradError
from unitgrad.grid.plan import DEFAULT_PATTERNS

TARGET = 1.3  # issue 13: >= 1.3x on the 2-core CPU machine
QUICK_STAGES = ("train_main@cifar10-cifar_resnet8-sgd-*", "evaluate_main@cifar10-cifar_resnet8-sgd-*")  # 2 + 2 runs


def _clone(repo: Path, dest: Path) -> dict:
    """A fresh clone of `repo` at `dest` beside a link to ../shared (the offline CIFAR images); its environment."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "--quiet", str(repo), str(dest)], check=True)
    if (repo.parent / "shared").exists():
        (dest.parent / "shared").symlink_to(repo.parent / "shared")
    env = dict(os.environ, PYTHONPATH=str(dest / "src"), DVC_NO_ANALYTICS="1", RAY_USAGE_STATS_ENABLED="0")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("OMP_NUM_THREADS", None)  # torch's default threads unless a side sets its own
    return env


def _run(cmd: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise UnitgradError(f"{' '.join(cmd)} failed in {cwd} (exit {done.returncode}): {' | '.join(tail)}")
    return time.perf_counter() - start


def time_pipeline(repo: Path, clone: Path) -> dict:
    """Wall time per stage of the default `dvc repro` in a fresh clone at `clone`.

    A stage's time runs from its "Running stage" line to the next one, so DVC's hashing and caching of its
    outputs count; afterwards `dvc status` must find nothing to do.
    """
    env = _clone(repo, clone)
    start = time.perf_counter()
    stages: list[list] = []
    tail: list[str] = []
    with subprocess.Popen(
        ["dvc", "repro"], cwd=clone, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as proc:
        for line in proc.stdout:
            now = time.perf_counter() - start
            tail = (tail + [line.rstrip()])[-20:]
            match = re.match(r"Running stage '(.+?)'", line)
            if match:
                stages.append([match.group(1), now])
    total = time.perf_counter() - start
    if proc.returncode != 0:
        raise UnitgradError(f"dvc repro failed in a clean clone (exit {proc.returncode}): " + " | ".join(tail[-3:]))
    status = subprocess.run(["dvc", "status"], cwd=clone, env=env, capture_output=True, text=True, check=False)
    ends = [t for _, t in stages[1:]] + [total]
    return {
        "total_s": total,
        "before_first_stage_s": stages[0][1] if stages else total,
        "stages_s": {name: end - begin for (name, begin), end in zip(stages, ends)},
        "status_after": status.stdout.strip(),
        "commit": _head(clone),
    }


def _head(clone: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()


def _is_grid_stage(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in DEFAULT_PATTERNS)


def bench_grid(repo: Path, quick: bool, keep: Path | None = None) -> dict:
    """Wall seconds of serial `dvc repro` and of `unitgrad grid run --cpus-per-run 1` over the same stages.

    `keep`: make both clones under this directory (serial/, grid/) and leave them there for inspection.
    """
    with contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="unitgrad-grid-") as tmp:
        serial, grid = Path(tmp) / "serial" / repo.name, Path(tmp) / "grid" / repo.name
        pipeline = None
        if quick:
            env = _clone(repo, serial)
            _run(["dvc", "repro", "corrupt"], serial, env)  # upstream of both, untimed
            serial_s = _run(["dvc", "repro", "--glob", *QUICK_STAGES], serial, env)
        else:
            pipeline = time_pipeline(repo, serial)
            serial_s = sum(sec for name, sec in pipeline["stages_s"].items() if _is_grid_stage(name))
        grid_env = _clone(repo, grid)
        _run(["dvc", "repro", "corrupt"], grid, grid_env)  # upstream, untimed
        stages = list(QUICK_STAGES if quick else DEFAULT_PATTERNS)
        grid_s = _run(
            ["unitgrad", "grid", "run", *stages, "--cpus-per-run", "1", "--gpus-per-run", "0", "--no-finish"],
            grid,
            grid_env,
        )
    speedup = serial_s / grid_s
    return {
        "stages": stages,
        "serial_dvc_repro_s": serial_s,
        "grid_run_s": grid_s,
        "speedup": speedup,
        "target": TARGET,
        "meets_target": None if quick else speedup >= TARGET,
        "cpus": os.cpu_count(),
        "pipeline": pipeline,
    }


def render(result: dict) -> list[str]:
    verdict = (
        "not judged (--quick subset)"
        if result["meets_target"] is None
        else ("met" if result["meets_target"] else "NOT met")
    )
    serial = "`dvc repro` (default threads)" + ("" if result["pipeline"] is None else ", its stages' sum")
    return [
        "",
        "## `unitgrad grid run` vs serial `dvc repro` (training + evaluation, wall time)",
        "",
        f"Stages: {', '.join(result['stages'])}; {result['cpus']} CPUs; grid: 1 thread per run, Ray start included.",
        "",
        "| what | wall s |",
        "|---|---:|",
        f"| {serial} | {result['serial_dvc_repro_s']:.1f} |",
        f"| `unitgrad grid run --cpus-per-run 1` | {result['grid_run_s']:.1f} |",
        "",
        f"Speed-up **{result['speedup']:.2f}×** (target ≥ {result['target']:g}×: {verdict}).",
    ]


def render_pipeline(pipeline: dict) -> list[str]:
    """The per-stage table of `time_pipeline`'s result."""
    rows = [["(DVC start-up, before the first stage)", f"{pipeline['before_first_stage_s']:.1f}"]]
    rows += [[name, f"{sec:.1f}"] for name, sec in pipeline["stages_s"].items()]
    rows += [["**total**", f"**{pipeline['total_s']:.1f}**"]]
    return [
        "",
        f"## Default `dvc repro` in a clean clone (commit {pipeline['commit'][:7]})",
        "",
        *markdown.table(["stage", "wall s"], rows, align="lr"),
        "",
        f"Then `dvc status`: {pipeline['status_after'] or '(no output)'}",
    ]
