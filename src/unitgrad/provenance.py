"""Where a result came from: code version, packages, device, Python and timing, stored next to every run."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("torch", "timm", "numpy", "unitgrad", "dvc", "dvclive")


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string with seconds, e.g. 2026-11-26T12:00:00+00:00."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def git_state(path: str | Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git work tree holding `path`; (None, None) outside one or without git.

    `commit` is None before the first commit; `dirty` counts changes to tracked files only (untracked
    results and caches are not code).
    """

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(path), *args], check=False, capture_output=True, text=True, timeout=30)

    try:
        status = git("status", "--porcelain", "--untracked-files=no")
        if status.returncode != 0:
            return None, None
        head = git("rev-parse", "--verify", "--quiet", "HEAD")
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    return (head.stdout.strip() or None if head.returncode == 0 else None), bool(status.stdout.strip())


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution in `names`; None when it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what the platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: torch.device) -> str:
    """A human-readable name of `device`: the GPU model, or the CPU model and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def provenance(
    config: dict[str, Any], device: torch.device, started: str, finished: str, wall_time_s: float, **extra: Any
) -> dict[str, Any]:
    """The run.json record: config, code version (of the unitgrad source that ran), environment, timing."""
    commit, dirty = git_state(Path(__file__).resolve().parent)
    return {
        "config": config,
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": package_versions(),
        "device": device_name(device),
        "python": sys.version.split()[0],
        "started": started,
        "finished": finished,
        "wall_time_s": wall_time_s,
        **extra,
    }
