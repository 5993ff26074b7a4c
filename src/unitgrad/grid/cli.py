"""`unitgrad grid run|collect`: the out-of-date training and evaluation stages of dvc.yaml, in parallel.

    unitgrad grid run [STAGE_PATTERN ...] [--backend ray|slurm] [--address auto|HOST:PORT]
                      [--gpus-per-run F] [--cpus-per-run N] [--retries N] [--no-finish] [--dry-run]
    unitgrad grid collect [STAGE_PATTERN ...] [--no-finish]

`run` brings the upstream stages up to date with DVC, dispatches the selected stages' commands, commits each
finished one to dvc.lock and the cache, and ends with `dvc repro` for what is left. `collect` commits the runs
that finished (e.g. a SLURM array's) and ends the same way; it is idempotent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unitgrad import pipeline
from unitgrad.config import load_params
from unitgrad.errors import UnitgradError
from unitgrad.grid import plan as planning
from unitgrad.grid import stages
from unitgrad.grid.progress import Progress


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unitgrad grid", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="dispatch the out-of-date stages, commit them, finish with dvc repro")
    collect = sub.add_parser("collect", help="commit the finished runs' stages, finish with dvc repro")
    for p in (run, collect):
        p.add_argument(
            "patterns",
            nargs="*",
            metavar="STAGE_PATTERN",
            help="stage names or globs, matched on the name before '@' or the full name "
            f"(default: {' '.join(planning.DEFAULT_PATTERNS)})",
        )
        p.add_argument("--no-finish", action="store_true", help="skip the final `dvc repro` (report, paper)")
    run.add_argument("--backend", choices=("ray", "slurm"), default="ray")
    run.add_argument("--address", help="Ray cluster to join (auto | HOST:PORT); default: start a local one")
    run.add_argument(
        "--gpus-per-run",
        type=float,
        help="GPUs per run, fractional packs runs on one GPU (default: 1 if the cluster has GPUs, else 0)",
    )
    run.add_argument("--cpus-per-run", type=int, default=1, help="CPUs per run; its torch threads (default 1)")
    run.add_argument("--retries", type=int, default=1, help="retries of a failed run before reporting it")
    run.add_argument("--dry-run", action="store_true", help="print the plan in order and exit")
    from unitgrad.grid import slurm

    slurm.add_options(run)
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.gpus_per_run is not None and args.gpus_per_run < 0:
        raise UnitgradError(f"--gpus-per-run {args.gpus_per_run} is negative: give 0 (CPU) or a fraction like 0.25")
    if args.cpus_per_run < 1:
        raise UnitgradError(f"--cpus-per-run {args.cpus_per_run} must be at least 1")
    if args.retries < 0:
        raise UnitgradError(f"--retries {args.retries} must be 0 or more")
    if args.backend == "slurm":
        from unitgrad.grid import slurm

        slurm.check(args)


def _report(committed: list[str], failures: list) -> int:
    print(f"committed {len(committed)} stages to dvc.lock", flush=True)
    for f in failures:
        print(f"error: {f.stage}: {f.reason}; last log line: {f.last_line!r}; log: {f.log}", file=sys.stderr)
    return 1 if failures else 0


def _finish(repo, args, status: int) -> int:
    """`dvc repro` for what is left (report, paper), unless a grid stage is still out of date: DVC would then
    train it here, one at a time."""
    if status != 0 or args.no_finish:
        return status
    left = planning.make_plan(repo).runs
    if left:
        print(
            f"not finishing: {len(left)} training/evaluation stages are still out of date (e.g. {left[0].stage}); "
            "run them with `unitgrad grid run`, then the final `dvc repro` follows",
            flush=True,
        )
        return 1
    stages.reproduce(repo, None)
    return 0


def run(args: argparse.Namespace) -> int:
    from unitgrad.grid import ray_backend, slurm

    _check(args)
    # another scale's studies; a DVC project without params.yaml has no study stages to write
    if Path("params.yaml").exists() and pipeline.write(load_params("params.yaml", ("studies",)), Path("dvc.yaml")):
        print("grid: wrote dvc.yaml's study stages for params.yaml's studies", flush=True)
    repo = stages.open_repo(".")
    plan = planning.make_plan(repo, tuple(args.patterns))
    gpus = "auto" if args.gpus_per_run is None else f"{args.gpus_per_run:g}"
    if args.dry_run:
        print(planning.format_plan(plan, f"{args.cpus_per_run} CPU, {gpus} GPU ({args.backend})"))
        return 0
    if args.backend == "slurm":
        return slurm.submit(repo, plan, args)
    if plan.upstream:
        stages.reproduce(repo, plan.upstream)
        plan = planning.make_plan(repo, tuple(args.patterns))  # upstream outputs may change what is out of date
    if not plan.runs:
        print("grid: every selected stage is up to date", flush=True)
        return _finish(repo, args, 0)
    started = ray_backend.connect(args.address)
    try:
        gpus_per_run = args.gpus_per_run if args.gpus_per_run is not None else min(1.0, ray_backend.cluster_gpus())
        resources = ray_backend.Resources(args.cpus_per_run, gpus_per_run)
        progress = Progress(len(plan.runs))
        try:
            committed, failures = ray_backend.run(repo, plan, resources, args.retries, progress)
        finally:
            progress.close()
    finally:
        if started:
            import ray

            ray.shutdown()
    return _finish(repo, args, _report(committed, failures))


def collect(args: argparse.Namespace) -> int:
    """Commit every selected stage that is out of date and whose run left a record; report the others."""
    repo = stages.open_repo(".")
    with stages.locked(repo):
        names = [s.name for s in planning.select(repo.index.graph, tuple(args.patterns)) if s.changed()]
        records = stages.read_records(repo.root_dir, names)
        committed, refused = stages.commit(repo, records)
    for name in sorted(set(names) - {r["stage"] for r in records}):
        refused[name] = "not run: no record (a stage before it failed, its job was cancelled, or it is still running)"
    failures = [stages.Failure.of(repo.root_dir, name, why + "; not committed") for name, why in refused.items()]
    return _finish(repo, args, _report(committed, failures))


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return run(args) if args.action == "run" else collect(args)
