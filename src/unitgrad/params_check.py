"""`unitgrad params check [FILE]`: validate a params file and print what `dvc repro` will run with it.
`unitgrad params docs`: the reference of every key (README's Configuration section).

Exit 0 when valid; 2 with the one-line error naming the file and the key otherwise. Run it before
launching hundreds of GPU-hours: it shows the runs per stage, their epochs and the device they get.
"""

from __future__ import annotations

import argparse

from unitgrad import params_docs
from unitgrad.config import load_params
from unitgrad.device import resolve_device
from unitgrad.errors import UnitgradError
from unitgrad.provenance import device_name
from unitgrad.schema import Params

CLASSES = {"cifar10": 10, "cifar100": 100}


def plan(params: Params) -> list[tuple[str, int, str]]:
    """(stage, runs, what they run) for every stage of dvc.yaml, from the matrices it expands."""
    grid, noise, optim, epochs = params.grid, params.noise, params.optim, params.train.epochs

    def epochs_of(names: list[str]) -> str:
        return ", ".join(f"{name} {round(epochs * optim[name].epochs_factor)}" for name in names)

    clean = len(grid.datasets) * len(grid.models) * len(grid.optimizers) * len(grid.seeds)
    noisy = len(noise.optimizers) * len(noise.rates) * len(noise.seeds)
    datasets = ", ".join(grid.datasets)
    per_class = params.data.loader.train_per_class
    images = {d: per_class * CLASSES[d] if per_class else "all" for d in grid.datasets}
    corruption = "CIFAR-C: " + ("generated" if params.data.corruptions.source == "generate" else "official files")
    return [
        ("prepare", len(grid.datasets), datasets),
        ("corrupt", len(grid.datasets), f"{datasets} ({corruption})"),
        (
            "train",
            clean,
            f"{', '.join(grid.models)}; epochs: {epochs_of(grid.optimizers)}; "
            f"training images: {', '.join(f'{d} {n}' for d, n in images.items())}",
        ),
        (
            "train_noise",
            noisy,
            f"{noise.model} on {noise.dataset}, {noise.kind} {'/'.join(map(str, noise.rates))} %; "
            f"epochs: {epochs_of(noise.optimizers)}",
        ),
        ("evaluate", clean, "clean test set" + (" + corruptions" if params.evaluate.corruptions else "")),
        ("evaluate_noise", noisy, "clean test set"),
        ("toy", 1, f"{len(params.toy.optimizers)} paths × {params.toy.steps} steps"),
        ("report", 4, "aggregate, figures, tables, claims"),
    ]


def describe(params: Params, source: str) -> str:
    """The report `unitgrad params check` prints for the valid `params` read from `source`."""
    rows = plan(params)
    width = max(len(stage) for stage, _, _ in rows)
    lines = [f"{source}: valid ({params.scale} scale)"]
    lines += [f"  {stage:<{width}}  {runs:>4}  {what}" for stage, runs, what in rows]
    try:
        device = resolve_device(params.train.device)
        name, amp = device_name(device), params.train.amp if device.type == "cuda" else "none (CPU)"
    except UnitgradError as exc:
        name, amp = f"none ({exc})", params.train.amp
    lines.append(f"device (train.device {params.train.device}): {name}; amp {amp}; compile {params.train.compile}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="unitgrad params", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate FILE and print the runs it selects")
    check.add_argument("file", nargs="?", default="params.yaml", help="the params file (default: %(default)s)")
    commands.add_parser("docs", help="print README's Configuration reference (every key, from the schema)")
    args = parser.parse_args(argv)
    print(describe(load_params(args.file), args.file) if args.command == "check" else params_docs.reference())
    return 0
