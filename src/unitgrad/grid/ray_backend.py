"""The grid on Ray: each run is a Ray task with the CPUs and (fractional) GPUs it asked for.

Ray schedules the tasks and sets each one's CUDA_VISIBLE_DEVICES; this driver only submits a run once the runs
it depends on succeeded, commits every finished run to DVC, and retries failed ones.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from unitgrad.grid import stages
from unitgrad.grid.plan import Plan, Run
from unitgrad.grid.progress import Progress


@dataclasses.dataclass(frozen=True)
class Resources:
    """What each run asks Ray for; the run's torch threads follow `cpus`."""

    cpus: int
    gpus: float

    def env(self) -> dict:
        # torch reads OMP_NUM_THREADS at start for its intra-op pool
        return {"OMP_NUM_THREADS": str(self.cpus), "MKL_NUM_THREADS": str(self.cpus)}


def connect(address: str | None) -> bool:
    """Join the Ray cluster at `address`, or start a local one; True if this call started Ray."""
    configure_ray_env()
    import ray

    if ray.is_initialized():
        return False
    # AF_UNIX socket paths are limited to ~107 bytes: a long TMPDIR would break Ray's session dir
    temp = {} if address or "RAY_TMPDIR" in os.environ else {"_temp_dir": "/tmp/ray"}
    ray.init(address=address, include_dashboard=False, log_to_driver=False, **temp)
    return True


def configure_ray_env() -> None:
    """No usage reports home; start-up timeouts long enough for a loaded machine's first (cold) Ray start; the
    runs at the priority the grid was started with (Ray's workers default to nice 15, which lets any other work
    on the machine take their cores)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_worker_niceness", "0")
    os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")


def cluster_gpus() -> float:
    import ray

    return ray.cluster_resources().get("GPU", 0.0)


def run(
    repo, plan: Plan, resources: Resources, retries: int, progress: Progress
) -> tuple[list[str], list[stages.Failure]]:
    """Dispatch the plan's runs on the connected Ray cluster; returns the committed stages and the failures."""
    import ray

    root = repo.root_dir
    task = ray.remote(stages.execute).options(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=0)
    queued: list[Run] = list(plan.runs)
    inflight: dict = {}  # object ref -> (run, attempt, submitted at)
    attempts: dict[str, int] = {}
    succeeded: set[str] = set()
    committed: list[str] = []
    failures: list[stages.Failure] = []

    def submit(runs: list[Run]) -> None:
        for run_ in runs:
            attempts[run_.stage] = attempts.get(run_.stage, 0) + 1
            if attempts[run_.stage] == 1:
                for path in (Path(root) / run_.log, Path(root) / run_.record):
                    path.unlink(missing_ok=True)
        deps = stages.prepare(repo, [run_.stage for run_ in runs])  # one DVC read for all of them
        for run_ in runs:
            attempt = attempts[run_.stage]
            ref = task.remote(root, run_.stage, run_.cmd, deps[run_.stage], resources.env(), attempt)
            inflight[ref] = (run_, attempt, time.time())

    def fail(run_: Run, reason: str) -> None:
        failures.append(stages.Failure.of(root, run_.stage, reason))
        progress.event(f"FAILED {run_.stage}: {reason} (log {run_.log})", failed=1)

    while queued or inflight:
        failed_names = {f.stage for f in failures}
        runnable = []
        for run_ in list(queued):
            if any(a in failed_names for a in run_.after):
                queued.remove(run_)
                fail(run_, "not run: a stage it depends on failed")
            elif all(a in succeeded for a in run_.after):
                queued.remove(run_)
                runnable.append(run_)
        if runnable:  # together: the driver's DVC work takes CPU from the runs
            submit(runnable)
        if not inflight:
            continue
        ready, rest = ray.wait(list(inflight), num_returns=1, timeout=2.0)
        if ready and rest:  # and whatever else has finished meanwhile, to commit them together
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        progress.update(sum(1 for r, _, t in inflight.values() if _started(Path(root) / r.log, t)))
        finished = []
        for ref in ready:
            run_, attempt, _ = inflight.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker died: a failed attempt like any other
                result = {"stage": run_.stage, "returncode": -1, "error": str(exc).splitlines()[0]}
            if result["returncode"] != 0:
                if attempt <= retries:
                    progress.event(f"retrying {run_.stage} (exit {result['returncode']}, attempt {attempt})")
                    queued.append(run_)  # submitted with the next batch
                else:
                    fail(run_, f"exit code {result['returncode']} after {attempt} attempts")
                continue
            finished.append((run_, result))
        if not finished:
            continue
        done, refused = stages.commit(repo, [result for _, result in finished])
        committed += done
        for run_, result in finished:
            if run_.stage in refused:
                fail(run_, refused[run_.stage] + "; not committed")
            else:
                succeeded.add(run_.stage)
                progress.event(f"committed {run_.stage} ({result['seconds']:.0f} s)", done=1)
    return committed, failures


def _started(log: Path, submitted: float) -> bool:
    """A run has started once its task wrote its log line for this attempt."""
    try:
        return log.stat().st_mtime >= submitted
    except FileNotFoundError:
        return False
