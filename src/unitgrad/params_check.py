"""`unitgrad params check [FILE]`: validate a params file and print what `dvc repro` will run with it.
`unitgrad params docs`: the reference of every key (README's Configuration section).

Exit 0 when valid; 2 with the one-line error naming the file and the key otherwise. Run it before
launching hundreds of GPU-hours: it shows the runs per stage, their epochs and the device they get.
dvc.yaml's `check` stage runs it with `--stamp` upstream of every other stage: DVC removes a stage's outputs
before running its command, so params are validated there, once, before any stage can lose its outputs.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

from unitgrad import params_docs
from unitgrad.config import PARAMS_STAMP, load_params
from unitgrad.device import resolve_amp, resolve_device
from unitgrad.errors import UnitgradError
from unitgrad.io import write_text
from unitgrad.provenance import device_name
from unitgrad.run_config import RunConfig
from unitgrad.schema import Params
from unitgrad.studies import selected_runs

CLASSES = {"cifar10": 10, "cifar100": 100}
READS = tuple(Params.model_fields)  # the whole file
STAMP_TEXT = "params passed `unitgrad params check`\n"


def check_models(params: Params, source: str) -> None:
    """UnitgradError naming the key unless every study's models are timm models (here, not hours into `train`)."""
    import timm  # imported here: torch and timm take seconds, and only this check needs them

    import unitgrad.models  # noqa: F401 - registers the cifar_* architectures in timm

    for name, study in params.studies.items():
        for model in study.models:
            if not timm.is_model(model):
                close = difflib.get_close_matches(model, timm.list_models(), n=1, cutoff=0.8)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise UnitgradError(
                    f"{source}: studies.{name}.models: '{model}' is not a timm model{hint}: fix the name"
                )


def plan(params: Params, source: str = "params.yaml") -> list[tuple[str, int, str]]:
    """(stage, runs, what they run) for every stage of dvc.yaml, from the studies its matrices expand; every
    run's overrides resolved (and so validated) on the way."""
    datasets = ", ".join(params.data.datasets)
    corruption = "CIFAR-C: " + ("generated" if params.data.corruptions.source == "generate" else "official files")
    rows = [("prepare", len(params.data.datasets), datasets), ("corrupt", len(params.data.datasets), corruption)]
    for name, study in params.studies.items():
        runs = selected_runs(params, name)
        configs = [RunConfig.for_run(params, run, source) for run in runs]
        epochs = {cfg.optimizer: cfg.epochs for cfg in configs}
        images = {
            cfg.loader.train_per_class * CLASSES[cfg.dataset] if cfg.loader.train_per_class else "all"
            for cfg in configs
        }
        batches = sorted({cfg.train.batch_size for cfg in configs})
        what = (
            f"{', '.join(study.models)} on {', '.join(study.datasets)}, noise {'/'.join(map(str, study.noise))} %; "
            f"epochs: {', '.join(f'{o} {e}' for o, e in epochs.items())}; batch {'/'.join(map(str, batches))}; "
            f"training images: {'/'.join(map(str, sorted(images, key=str)))}"
        )
        scored = "clean test set" + (" + held-out training images" if params.evaluate.train_pool else "")
        scored += " + CIFAR-C" if study.corruptions else ""
        rows += [(f"train_{name}", len(runs), what), (f"evaluate_{name}", len(runs), scored)]
    rows += [
        ("toy", 1, f"{len(params.toy.optimizers)} paths × {params.toy.steps} steps"),
        ("report", 4, "aggregate, figures, tables, claims"),
    ]
    return rows


def describe(params: Params, source: str) -> str:
    """The report `unitgrad params check` prints for the valid `params` read from `source`."""
    rows = plan(params, source)
    width = max(len(stage) for stage, _, _ in rows)
    lines = [f"{source}: valid ({params.scale} scale)"]
    lines += [f"  {stage:<{width}}  {runs:>4}  {what}" for stage, runs, what in rows]
    try:
        device = resolve_device(params.train.device)
        name, amp = device_name(device), f"{params.train.amp} -> {resolve_amp(device, params.train.amp)}"
    except UnitgradError as exc:
        name, amp = f"none ({exc})", params.train.amp
    lines.append(f"device (train.device {params.train.device}): {name}; amp {amp}; compile {params.train.compile}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="unitgrad params", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate FILE and print the runs it selects")
    check.add_argument("file", nargs="?", default="params.yaml", help="the params file (default: %(default)s)")
    check.add_argument(
        "--stamp", type=Path, help=f"when valid, write this file (dvc.yaml's check stage: {PARAMS_STAMP})"
    )
    commands.add_parser("docs", help="print README's Configuration reference (every key, from the schema)")
    args = parser.parse_args(argv)
    if args.command == "docs":
        print(params_docs.reference())
        return 0
    params = load_params(args.file)
    report = describe(params, args.file)
    check_models(params, args.file)
    print(report)
    if args.stamp is not None:
        write_text(args.stamp, STAMP_TEXT)
    return 0
