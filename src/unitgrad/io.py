"""Atomic writes: a file or directory appears complete or not at all (no half-written outputs).

A write goes to a temporary sibling `.<name>.XXXXXXXX.tmp` that replaces the target only when complete; one
left by a killed process is removed by the next write of the same target. Reads of the arrays and models the
stages exchange turn a truncated or unreadable file into one line naming it and the command that rebuilds it.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from unitgrad.errors import UnitgradError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale(path: Path) -> None:
    """Remove the temporary siblings of `path` that a killed earlier write left (one writer per path: DVC's lock)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.{'?' * 8}.tmp"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get ordinary permissions
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary sibling directory; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o777 & ~_umask())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp_path, path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_torch(path: str | Path, obj: Any) -> None:
    """torch.save `obj` to `path` atomically and byte-for-byte reproducibly: equal tensors give equal bytes, so
    equal weights give equal DVC hashes. Saved to memory first: torch names the zip's root folder after the file
    (here a random temporary name), and a full disk then fails as an OSError naming the path, not a torch error."""
    import torch  # imported here: the report commands use this module and never load torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def load_torch(path: str | Path, fix: str) -> Any:
    """torch.load (weights only, to the CPU) of `path`; UnitgradError naming it and `fix` if missing or damaged."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UnitgradError(f"{path} not found: {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise UnitgradError(f"{path} is damaged or not a torch file ({exc.__class__.__name__}): {fix}") from exc


def load_npy(path: str | Path, fix: str) -> np.ndarray:
    """np.load of `path`; UnitgradError naming it and `fix` if missing, truncated or not an array file."""
    path = Path(path)
    if not path.is_file():
        raise UnitgradError(f"{path} not found: {fix}")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UnitgradError(f"{path} is truncated or not a .npy file ({exc.__class__.__name__}): {fix}") from exc


def check_writable(directory: str | Path, files: tuple[str, ...] = (), dirs: tuple[str, ...] = ()) -> None:
    """UnitgradError naming the path unless `directory` can be created or written, and none of its `files`
    is a directory (nor any of its `dirs` a file). Call before deleting or writing anything."""
    directory = Path(directory)
    for name in files:
        if (directory / name).is_dir():
            raise UnitgradError(f"{directory / name} is a directory where a file must go: remove it")
    for name in dirs:
        if (directory / name).exists() and not (directory / name).is_dir():
            raise UnitgradError(f"{directory / name} is a file where a directory must go: remove it")
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UnitgradError(f"{existing} is a file where a directory must go: remove it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UnitgradError(f"{existing} is not writable: fix its permissions or choose another --out")
