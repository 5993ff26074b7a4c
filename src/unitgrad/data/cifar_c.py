"""CIFAR-10-C / CIFAR-100-C in the official release's layout, downloaded or generated.

`root/<dataset>-c/` holds one uint8 `<corruption>.npy` per corruption, (5*n, 32, 32, 3) with
severities 1..5 stacked severity-major, plus `labels.npy` (5*n,) and `source.json`; it appears atomically.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from unitgrad.data import sources
from unitgrad.data.cifar import check_dataset, load_cifar
from unitgrad.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from unitgrad.data.loader import balanced_subset
from unitgrad.errors import UnitgradError
from unitgrad.io import atomic_dir, load_npy, write_json

SOURCES = ("generate", "official")


def prepare_corruptions(dataset: str, source: str, root: str | Path, n_images: int, seed: int) -> Path:
    """Path of `root/<dataset>-c/`, written atomically.

    source "generate": a class-balanced subset of `n_images` prepared test images (fixed by `seed`),
    corrupted here with every corruption at every severity. source "official": the Zenodo release
    (all 10 000 test images), md5-verified and safely extracted; `n_images` and `seed` are unused.
    """
    classes = check_dataset(dataset)
    root = Path(root)
    out = root / f"{dataset}-c"
    if source == "generate":
        if n_images < len(classes) or n_images % len(classes):
            raise UnitgradError(
                f"data.corruptions.n_images = {n_images} must be a positive multiple of {len(classes)} "
                f"(the {dataset} classes) to keep the subset class-balanced"
            )
        _, _, test_x, test_y, _ = load_cifar(dataset, root)
        try:
            index = balanced_subset(test_y, n_images // len(classes), seed)
        except UnitgradError as exc:
            raise UnitgradError(f"data.corruptions.n_images = {n_images}: {exc}; lower it") from exc
        images = test_x[index]
        with atomic_dir(out) as tmp:
            for name in CORRUPTIONS:
                np.save(tmp / f"{name}.npy", np.concatenate([corrupt(images, name, s, seed) for s in SEVERITIES]))
            np.save(tmp / "labels.npy", np.tile(test_y[index], len(SEVERITIES)))
            np.save(tmp / "test_indices.npy", index)
            write_json(tmp / "source.json", {"kind": "generate", "n_images": n_images, "seed": seed})
        return out
    if source == "official":
        archive = sources.CORRUPTION_ARCHIVES[dataset]
        hint = "supply the data instead: set data.corruptions.source to generate in params.yaml"
        path = sources.fetch(archive, root / "downloads", hint)
        with atomic_dir(out) as tmp:  # extracted inside it: a killed run leaves one temporary, removed by the next
            scratch = tmp / ".extract"
            sources.safe_extract(path, scratch)
            found = {p.name: p for p in scratch.rglob("*.npy")}
            missing = sorted(({f"{name}.npy" for name in CORRUPTIONS} | {"labels.npy"}) - set(found))
            if missing:
                raise UnitgradError(
                    f"{path} lacks {', '.join(missing)}: it is not {archive.filename}; delete it and rerun"
                )
            for name in [*CORRUPTIONS, "labels"]:
                shutil.move(found[f"{name}.npy"], tmp / f"{name}.npy")
            shutil.rmtree(scratch)
            write_json(tmp / "source.json", {"kind": "official", "url": archive.url, "md5": archive.md5})
        return out
    raise UnitgradError(
        f"unknown corruption source '{source}': set data.corruptions.source to one of {', '.join(SOURCES)}"
    )


def load_corruptions(dataset: str, root: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (5*n, 32, 32, 3) severity-major, labels int64 (5*n,)) of corruption `name`."""
    check_dataset(dataset)
    if name not in CORRUPTIONS:
        raise UnitgradError(f"unknown corruption '{name}': choose one of {', '.join(CORRUPTIONS)}")
    folder = Path(root) / f"{dataset}-c"
    if not (folder / f"{name}.npy").is_file() or not (folder / "labels.npy").is_file():
        raise UnitgradError(
            f"{folder} is missing or incomplete: run `unitgrad corrupt {dataset}` (or `dvc repro corrupt`)"
        )
    fix = f"rerun `unitgrad corrupt {dataset}` (or `dvc repro corrupt`)"
    images, labels = load_npy(folder / f"{name}.npy", fix), load_npy(folder / "labels.npy", fix).astype(np.int64)
    if len(images) != len(labels):
        raise UnitgradError(f"{folder}: {name}.npy and labels.npy differ in length: rerun `unitgrad corrupt {dataset}`")
    return images, labels
