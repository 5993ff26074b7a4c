"""The grid on SLURM through submitit: one array job of the selected stages and a dependent `grid collect` job.

Each array task runs one chain of dependent stages (a training, then its evaluations) in order. SLURM sends
the task USR2 `--signal-delay-s` before its time limit; submitit then requeues it, and the training resumes from
its `persist` checkpoint, which removing outputs keeps. A requeue, preemption or `scancel` sends SIGTERM instead:
the task stops there, and a requeued one resumes the same way. The login node only reads the index and submits.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import submitit

from unitgrad.errors import UnitgradError
from unitgrad.grid import stages
from unitgrad.grid.plan import LOG_DIR, Plan, Run

# sbatch(1): the --signal "may be sent up to 60 seconds earlier than specified" (slurmctld checks about every 30 s);
# 30 s more lets the task start and install submitit's handler, before which USR2 kills it instead of requeueing it
SIGNAL_MARGIN_S = 90


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--backend slurm")
    group.add_argument("--partition", help="SLURM partition of the array and collect jobs")
    group.add_argument("--time-min", type=int, default=24 * 60, help="time limit per array task in minutes")
    group.add_argument(
        "--signal-delay-s",
        type=int,
        default=120,
        help="seconds before the limit at which a task is signalled to checkpoint and requeue",
    )
    group.add_argument("--max-parallel", type=int, default=256, help="array tasks running at once")


def check(args: argparse.Namespace) -> None:
    """One-line errors for options SLURM cannot honour, would reject late, or that would signal a task too early."""
    if args.gpus_per_run is not None and args.gpus_per_run != int(args.gpus_per_run):
        raise UnitgradError(f"--gpus-per-run {args.gpus_per_run}: SLURM gives whole GPUs; use --backend ray to pack")
    if args.address:
        raise UnitgradError("--address joins a Ray cluster: drop it with --backend slurm")
    if args.max_parallel < 1:
        raise UnitgradError(f"--max-parallel {args.max_parallel} must be at least 1")
    if args.signal_delay_s < 0:
        raise UnitgradError(f"--signal-delay-s {args.signal_delay_s} must be 0 or more")
    if args.time_min * 60 - args.signal_delay_s < SIGNAL_MARGIN_S:
        raise UnitgradError(
            f"--time-min {args.time_min} with --signal-delay-s {args.signal_delay_s}: SLURM may send the requeue "
            f"signal up to 60 s early, before the task has started; leave {SIGNAL_MARGIN_S} s between them "
            f"(e.g. --time-min {-(-(args.signal_delay_s + SIGNAL_MARGIN_S) // 60)})"
        )


def chains(plan: Plan) -> list[list[Run]]:
    """The plan's runs grouped into chains of dependent runs, each in plan (dependency) order."""
    group_of: dict[str, int] = {}
    groups: list[list[Run]] = []
    for run in plan.runs:
        joined = sorted({group_of[a] for a in run.after if a in group_of})
        if not joined:
            groups.append([])
            joined = [len(groups) - 1]
        target = joined[0]
        for other in joined[1:]:  # a run that waits for two chains merges them
            groups[target] += groups[other]
            groups[other] = []
            group_of.update({r.stage: target for r in groups[target]})
        groups[target].append(run)
        group_of[run.stage] = target
    return [g for g in groups if g]


class ChainTask(submitit.helpers.Checkpointable):
    """One array task: run each stage of a chain that has no successful record yet, stop at the first failure.

    Being `Checkpointable`, it is requeued with the same arguments when SLURM signals it.
    """

    # SIGTERM is SLURM stopping the whole task (requeue, preemption, scancel): retrying in it would only restart
    # the command until SIGKILL, KillWait later; its record (this exit code) tells `collect` it did not finish.
    STOPPED = -signal.SIGTERM

    def __call__(self, root: str, chain: list[tuple[str, tuple[str, ...]]], env: dict, retries: int) -> list[dict]:
        results = []
        for name, cmd in chain:
            done = stages.read_records(root, [name])
            if done and done[0]["returncode"] == 0:
                results.append(done[0])
                continue
            for attempt in range(1, retries + 2):
                print(f"{name}: attempt {attempt}", flush=True)  # which task runs which stage, in its SLURM log
                deps = stages.prepare(stages.open_repo(root), [name])[name]
                result = stages.execute(root, name, cmd, deps, env, attempt)
                print(f"{name}: exit code {stages.exit_code(result['returncode'])}", flush=True)
                if result["returncode"] in (0, self.STOPPED):
                    break
            results.append(result)
            if result["returncode"] != 0:
                break
        return results


def executor_parameters(args: argparse.Namespace, gpus: int) -> dict:
    """SlurmExecutor parameters of the array job: time, CPUs, GPUs per task, the requeue signal, parallelism."""
    params = {
        "time": args.time_min,
        "cpus_per_task": args.cpus_per_run,
        "signal_delay_s": args.signal_delay_s,
        "array_parallelism": args.max_parallel,
        "job_name": "unitgrad-grid",
    }
    if gpus:
        params["gpus_per_task"] = gpus
    if args.partition:
        params["partition"] = args.partition
    return params


def sbatch_text(params: dict, folder: Path, tasks: int) -> str:
    """The sbatch script submitit writes for an array of `tasks` with these parameters (inspectable offline)."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = {k: v for k, v in params.items() if k != "array_parallelism"}
    return _make_sbatch_string(
        command="<submitit command>", folder=str(folder), map_count=tasks, array_parallelism=min(tasks, 256), **params
    )


def submit_array(executor, root: str, plan: Plan, env: dict, retries: int) -> list:
    """Submit one array task per chain; clears the chains' old logs and records first."""
    for run in plan.runs:
        for path in (Path(root) / run.log, Path(root) / run.record):
            path.unlink(missing_ok=True)
    groups = [[(run.stage, run.cmd) for run in chain] for chain in chains(plan)]
    n = len(groups)
    return executor.map_array(ChainTask(), [root] * n, groups, [env] * n, [retries] * n)


def submit(repo, plan: Plan, args: argparse.Namespace) -> int:
    """Submit the upstream `dvc repro` (if needed), the array, and `grid collect` after it; print their ids.

    Jobs whose dependency can no longer be met (the upstream job failed) are cancelled by SLURM rather than left
    pending forever, so `collect` still runs after the array and reports the stages that did not run.
    """
    root = repo.root_dir
    folder = Path(root) / LOG_DIR / "slurm"
    gpus = 1 if args.gpus_per_run is None else int(args.gpus_per_run)
    base = {
        "time": args.time_min,
        "job_name": "unitgrad-grid",
        "cpus_per_task": args.cpus_per_run,  # what one run gets, so it fits wherever the array's tasks fit
        "additional_parameters": {"kill-on-invalid-dep": "yes"},
        **({"partition": args.partition} if args.partition else {}),
    }

    def executor(**params):  # one per job: update_parameters merges, and the array's GPUs must not carry over
        job = submitit.SlurmExecutor(folder=folder)
        job.update_parameters(**params)
        return job

    after = {}
    with stages.locked(repo):
        stale = [name for name in plan.upstream if stages.stages_by_name(repo)[name].changed()]
    if stale:
        # this interpreter's DVC: `dvc` need not be on the job's PATH (e.g. a venv used without activating it)
        command = [sys.executable, "-m", "dvc", "repro", *stale]
        upstream = executor(**base).submit(submitit.helpers.CommandFunction(command, cwd=root))
        after = {"dependency": f"afterok:{upstream.job_id}"}
        print(f"submitted upstream dvc repro {' '.join(stale)}: job {upstream.job_id}", flush=True)
    if not plan.runs:
        print("grid: every selected stage is up to date", flush=True)
        return 0
    threads = {"OMP_NUM_THREADS": str(args.cpus_per_run), "MKL_NUM_THREADS": str(args.cpus_per_run)}
    array = executor(**(base | executor_parameters(args, gpus) | after))
    jobs = submit_array(array, root, plan, threads, args.retries)
    array_id = jobs[0].job_id.split("_")[0]
    command = [sys.executable, "-m", "unitgrad", "grid", "collect", *args.patterns] + (
        ["--no-finish"] if args.no_finish else []
    )
    collect = executor(**base, dependency=f"afterany:{array_id}")
    final = collect.submit(submitit.helpers.CommandFunction(command, cwd=root))
    print(
        f"submitted array job {array_id} ({len(jobs)} tasks, {len(plan.runs)} stages) and "
        f"`unitgrad grid collect` job {final.job_id} after it; logs in {LOG_DIR}",
        flush=True,
    )
    return 0
