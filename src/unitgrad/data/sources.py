"""Where data comes from: verified downloads and archives read or extracted without escaping the target.

A download lands in a temporary sibling file, is checked against its md5 and only then renamed, so an
interrupted or corrupted transfer never leaves a usable-looking file. Archive members with absolute
paths, `..`, links or device entries are refused before anything is read or written.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from unitgrad.errors import UnitgradError
from unitgrad.io import atomic_path


@dataclass(frozen=True)
class Archive:
    """One published archive: where it lives and the md5 that proves it is the right file."""

    filename: str
    url: str
    md5: str


# The python-format archives and md5 sums torchvision uses; tests swap in a 127.0.0.1 server.
CIFAR_ARCHIVES = {
    "cifar10": Archive(
        "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": Archive(
        "cifar-100-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
}

# Hendrycks & Dietterich's releases on Zenodo (record ids and md5 from the Zenodo records).
CORRUPTION_ARCHIVES = {
    "cifar10": Archive(
        "CIFAR-10-C.tar",
        "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar?download=1",
        "56bf5dcef84df0e2308c6dcbcbbd8499",
    ),
    "cifar100": Archive(
        "CIFAR-100-C.tar",
        "https://zenodo.org/records/3555552/files/CIFAR-100-C.tar?download=1",
        "11f0ed0f1191edbf9fa23466ae6021d3",
    ),
}

_CHUNK = 1 << 20
# Bounds each socket operation (connect, every read), not the whole transfer: an unreachable host fails
# in seconds, so the next data source is tried at once, while a slow but live download keeps going.
DOWNLOAD_TIMEOUT_S = 10.0


def md5sum(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(archive: Archive, dest_dir: str | Path, offline_hint: str = "") -> Path:
    """Path of `archive` in `dest_dir`, downloaded and md5-verified unless a verified copy is there.

    `offline_hint` completes the one-line error when the server cannot be reached
    (it should say how to supply the data instead).
    """
    dest = Path(dest_dir) / archive.filename
    if dest.is_file() and md5sum(dest) == archive.md5:
        return dest
    digest = hashlib.md5()
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(archive.url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as out:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            hint = f"; {offline_hint}" if offline_hint else ""
            raise UnitgradError(f"cannot download {archive.url} ({reason}){hint}") from exc
        if digest.hexdigest() != archive.md5:
            raise UnitgradError(
                f"download of {archive.filename} has md5 {digest.hexdigest()}, expected {archive.md5}: "
                "the file is corrupt or was changed upstream; retry, or supply a verified local copy"
            )
    return dest


def verify_md5(path: Path, archive: Archive) -> None:
    actual = md5sum(path)
    if actual != archive.md5:
        raise UnitgradError(
            f"{path} has md5 {actual}, not the official {archive.filename} ({archive.md5}): "
            "re-download it or point data.sources at an image-folder archive instead"
        )


def check_member(member: tarfile.TarInfo | str, archive: Path) -> PurePosixPath:
    """The member's relative path; refuses anything that could land outside the extraction target."""
    name = member if isinstance(member, str) else member.name
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name.startswith("\\"):
        raise UnitgradError(f"{archive} holds an unsafe member '{name}' (absolute or '..' path): refusing to read it")
    if isinstance(member, tarfile.TarInfo) and not (member.isfile() or member.isdir()):
        raise UnitgradError(f"{archive} holds a link or device member '{name}': refusing to read it")
    return path


_COMPRESSED = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}  # magic bytes: opener


def _unpacked(archive: Path) -> IO[bytes]:
    """The archive's bytes, decompressed by a reader that checks the compressed stream's own checksum at its end
    (tarfile's stream mode decompresses gzip without ever checking its CRC)."""
    with open(archive, "rb") as raw:
        head = raw.read(6)
    opener = next((opener for magic, opener in _COMPRESSED.items() if head.startswith(magic)), open)
    return opener(archive, "rb")


def tar_members(archive: Path) -> Iterator[tuple[PurePosixPath, bytes | None]]:
    """(path, content) for every member of a tar archive in stream order; directories give None.

    Reads straight from the (compressed) stream, so nothing is extracted to disk. tarfile ends its iteration
    quietly at a header it cannot read, as if the archive ended there; so after the last member the rest must
    be the end-of-archive zero blocks and the compressed stream must end with its checksum intact, or the
    archive is corrupt or truncated: an error, never a dataset silently short of images.
    """
    try:
        with _unpacked(archive) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                path = check_member(member, archive)
                if member.isdir():
                    yield path, None
                    continue
                handle = tar.extractfile(member)
                yield path, handle.read() if handle is not None else b""
            stopped, rest = tar.offset, 0  # tarfile has read the block at `stopped`: a zero block at a true end
            while chunk := tar.fileobj.read(_CHUNK):
                if chunk.count(0) != len(chunk):
                    raise UnitgradError(
                        f"{archive} ends early: its tar stream breaks off at byte {stopped} of the unpacked archive "
                        "and more data follows (corrupt): replace it"
                    )
                rest += len(chunk)
            if rest < tarfile.BLOCKSIZE:  # a complete archive ends in two zero blocks
                raise UnitgradError(f"{archive} ends early: it is truncated after byte {stopped}: replace it")
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise UnitgradError(
            f"{archive} is not a readable tar archive ({exc}): it may be truncated or corrupt; replace it"
        ) from exc


def zip_members(archive: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    """(path, content) for every file of a zip archive; links and unsafe paths are refused."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            # The central directory lists every member up front: refuse before reading any.
            for info in bundle.infolist():
                check_member(info.filename, archive)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UnitgradError(f"{archive} holds a link member '{info.filename}': refusing to read it")
            for info in bundle.infolist():
                if not info.is_dir():
                    yield PurePosixPath(info.filename), bundle.read(info)
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
        raise UnitgradError(
            f"{archive} is not a readable zip archive ({exc}): it may be truncated; replace it"
        ) from exc


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive into `dest`, refusing unsafe members before writing anything."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                check_member(member, archive)
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, ValueError, zlib.error) as exc:
        raise UnitgradError(
            f"{archive} is not a readable tar archive ({exc}): it may be truncated; replace it"
        ) from exc
