"""`unitgrad <command> …`: thin dispatch into the package; every DVC stage is one such call.

Each command module exposes `main(argv: list[str]) -> int` and parses its own arguments.
A `UnitgradError`, or an OSError on a path the command reads or writes, becomes one line on stderr and exit
status 2.
"""

from __future__ import annotations

import errno
import importlib
import importlib.metadata
import sys

from unitgrad.errors import UnitgradError

COMMANDS = {
    "params": ("unitgrad.params_check:main", "check [FILE]: validate params, show what runs; docs: every key"),
    "prepare": ("unitgrad.data.cli:prepare_main", "build the uint8 CIFAR cache from a source"),
    "corrupt": ("unitgrad.data.cli:corrupt_main", "build the CIFAR-C corruption set"),
    "train": ("unitgrad.train.cli:main", "train one run (dataset, model, optimizer, seed, noise)"),
    "evaluate": ("unitgrad.evaluate:main", "clean and corruption metrics of one trained run"),
    "clean": ("unitgrad.report.selection:main", "remove run directories that no study selects"),
    "report": ("unitgrad.report.cli:main", "aggregate runs into CSVs, figures, tables, claims"),
    "snapshot": ("unitgrad.snapshot:main", "copy a finished scale's small results where git keeps them"),
    "paper": ("unitgrad.paper:main", "build paper/main.pdf with Typst (no TeX needed)"),
    "toy": ("unitgrad.toy:main", "optimizer paths on a 2-D loss surface"),
    "stages": ("unitgrad.pipeline:main", "write dvc.yaml's train/evaluate stages from params.yaml's studies"),
    "grid": ("unitgrad.grid.cli:main", "run the training/evaluation stages in parallel (Ray, SLURM), commit to DVC"),
}


# What to do about the OSErrors a path can raise; any other says to check the path.
_OS_FIXES = {
    errno.EACCES: "fix its permissions",
    errno.EPERM: "fix its permissions or attributes (chattr -i)",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.ENOSPC: "free disk space",
    errno.EDQUOT: "free disk space (quota exceeded)",
    errno.ENOTDIR: "a parent of it is a file: remove or rename that file",
    errno.EISDIR: "it is a directory where a file must go: remove it",
    errno.ENOENT: "it does not exist: check the path",
}


def os_error_line(exc: OSError) -> str:
    """One line naming the path an OSError is about (both, for a rename), what failed and the fix."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None) or "a file"
    fix = _OS_FIXES.get(exc.errno, "check the path, its permissions and the free disk space")
    return f"{paths}: {exc.strerror or exc}: {fix}, then rerun"


def version() -> str:
    """The installed distribution's version (pyproject.toml), or "unknown" when run from a bare source tree."""
    try:
        return importlib.metadata.version("unitgrad")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _usage() -> str:
    lines = ["usage: unitgrad <command> [options]   (unitgrad <command> --help; unitgrad --version)", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(f"unitgrad {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command '{name}': choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    try:
        return int(getattr(importlib.import_module(module_name), func_name)(rest) or 0)
    except UnitgradError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # any path read or written: every write is atomic, so earlier outputs are intact
        print(f"error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
