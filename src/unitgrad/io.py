"""Atomic writes: a file or directory appears complete or not at all (no half-written outputs)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from unitgrad.errors import UnitgradError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
