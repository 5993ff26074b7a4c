"""Build and read the prepared CIFAR cache: uint8 NHWC images, int64 labels, class names.

`prepare` accepts the official python-format tarball (downloaded or on disk, md5-verified) or an
image folder `<root>/{train,test}/<class>/*.{png,jpg}` (a directory, tar or zip archive, optionally with
one wrapping top-level directory). The cache `root/<dataset>/` appears atomically:
train_x.npy, train_y.npy, test_x.npy, test_y.npy, classes.json, source.json; only after `check_splits`
has found in it what the dataset holds (images per split and class, their shape, the label range), so an
archive that lost members or an image folder missing files is never published as the dataset.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from unitgrad.data import sources
from unitgrad.errors import UnitgradError
from unitgrad.io import atomic_dir, load_npy, write_json

# Official label orders (both are alphabetical by class name); fmt: skip keeps the ten classes on one line.
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

# The 20 CIFAR-100 superclasses (official coarse label order) and their 5 fine classes.
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
CIFAR100_CLASSES = tuple(sorted(name for fine in CIFAR100_SUPERCLASSES.values() for name in fine))

CLASSES = {"cifar10": CIFAR10_CLASSES, "cifar100": CIFAR100_CLASSES}
# The published images per class of each split (CIFAR-10: 50 000 / 10 000; CIFAR-100: 50 000 / 10 000).
IMAGES_PER_CLASS = {"cifar10": {"train": 5000, "test": 1000}, "cifar100": {"train": 500, "test": 100}}
SPLITS = ("train", "test")
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
# Official tarball layout: top folder, batch files per split, label key.
_OFFICIAL_LAYOUT = {
    "cifar10": (
        "cifar-10-batches-py",
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        "labels",
    ),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}, "fine_labels"),
}


def check_dataset(dataset: str) -> tuple[str, ...]:
    if dataset not in CLASSES:
        raise UnitgradError(f"unknown dataset '{dataset}': choose one of {', '.join(CLASSES)}")
    return CLASSES[dataset]


def source_candidates(dataset: str, source: str | Path | list) -> list[str]:
    """`data.sources.<dataset>` as the list of candidates to try in order (one string is a list of one)."""
    candidates = source if isinstance(source, list | tuple) else [source]
    if not candidates or not all(isinstance(c, str | Path) and str(c) for c in candidates):
        raise UnitgradError(
            f"data.sources.{dataset} must be a source or a non-empty list of them "
            f"('official', or a path), not {source!r}: fix params.yaml"
        )
    return [str(c) for c in candidates]


def prepare(dataset: str, source: str | Path | list, root: str | Path, per_class: dict[str, int] | None = None) -> Path:
    """Path of the cache `root/<dataset>/`, written atomically from the first source that works.

    `source` is one candidate or a list tried in order: "official" (download, md5-verified), a path to
    the official tarball, or an image-folder archive/directory laid out `[top/]{train,test}/<class>/*.{png,jpg}`.
    A candidate works only if it holds `per_class[split]` images of every class (default: the published
    counts, `IMAGES_PER_CLASS`). source.json records the candidate used, its md5 and why the earlier ones failed.
    """
    classes = check_dataset(dataset)
    candidates = source_candidates(dataset, source)
    per_class = IMAGES_PER_CLASS[dataset] if per_class is None else per_class
    root = Path(root)
    failures = []
    for candidate in candidates:
        try:
            splits, info = _read_source(dataset, candidate, root, classes)
            check_splits(dataset, splits, per_class)
        except UnitgradError as exc:
            failures.append(f"{candidate}: {exc}")
            continue
        out = root / dataset
        with atomic_dir(out) as tmp:
            for split, (x, y) in splits.items():
                np.save(tmp / f"{split}_x.npy", x)
                np.save(tmp / f"{split}_y.npy", y)
            (tmp / "classes.json").write_text(json.dumps(list(classes)) + "\n")
            counts = {f"n_{split}": len(y) for split, (_, y) in splits.items()}
            write_json(tmp / "source.json", info | counts | {"source": candidate, "skipped": failures})
        return out
    tried = "; ".join(f"({i}) {failure}" for i, failure in enumerate(failures, start=1))
    raise UnitgradError(
        f"no data source for {dataset} worked, tried data.sources.{dataset} in order: {tried}. Fix: list a "
        f"reachable source there ('official', a local {sources.CIFAR_ARCHIVES[dataset].filename}, "
        "or an image-folder archive/directory)"
    )


def source_of(dataset: str, root: str | Path) -> dict[str, str | None]:
    """{"source": the data.sources candidate used, "md5": its archive's md5 (None for a directory)}
    of the prepared cache, for a run's provenance."""
    path = Path(root) / dataset / "source.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UnitgradError(f"{path} is missing or unreadable: run `unitgrad prepare {dataset}`") from exc
    return {"source": info.get("source", info.get("url", info.get("path"))), "md5": info.get("md5")}


def _read_source(dataset: str, source: str, root: Path, classes: tuple[str, ...]) -> tuple[dict, dict]:
    """(splits, metadata) of one candidate; a UnitgradError says why it cannot be used."""
    if source == "official":
        archive = sources.CIFAR_ARCHIVES[dataset]
        path = sources.fetch(archive, root / "downloads")
        return _read_official(dataset, path), {"kind": "official", "url": archive.url, "md5": archive.md5}
    path = Path(source)
    if not path.exists():
        raise UnitgradError("not found (a relative path starts at the project root)")
    if path.is_file() and _is_official_tarball(dataset, path):
        sources.verify_md5(path, sources.CIFAR_ARCHIVES[dataset])
        info = {"kind": "official-tarball", "path": str(path), "md5": sources.CIFAR_ARCHIVES[dataset].md5}
        return _read_official(dataset, path), info
    splits = _read_image_folder(dataset, path, classes)
    return splits, {"kind": "image-folder", "path": str(path), "md5": sources.md5sum(path) if path.is_file() else None}


def load_cifar(dataset: str, root: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(train_x, train_y, test_x, test_y, classes) from the prepared cache: uint8 NHWC, int64 labels."""
    check_dataset(dataset)
    cache = Path(root) / dataset
    names = ["train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy", "classes.json"]
    fix = f"run `unitgrad prepare {dataset}` (or `dvc repro prepare`)"
    if not all((cache / name).is_file() for name in names):
        raise UnitgradError(f"{cache} is missing or incomplete: {fix}")
    train_x, train_y, test_x, test_y = (load_npy(cache / name, fix) for name in names[:4])
    try:
        check_splits(dataset, {"train": (train_x, train_y), "test": (test_x, test_y)})
    except UnitgradError as exc:
        raise UnitgradError(f"{cache}: {exc}; {fix}") from None
    return train_x, train_y, test_x, test_y, json.loads((cache / "classes.json").read_text())


def check_splits(
    dataset: str, splits: dict[str, tuple[np.ndarray, np.ndarray]], per_class: dict[str, int] | None = None
) -> None:
    """UnitgradError saying what is wrong unless both splits hold uint8 32x32 RGB images with as many int64
    labels, each a class of `dataset`, and (with `per_class`) exactly `per_class[split]` images of every class."""
    n_classes = len(CLASSES[dataset])
    for split in SPLITS:
        if split not in splits:
            raise UnitgradError(f"it has no {split} split")
        x, y = splits[split]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
            raise UnitgradError(f"its {split} images are {x.dtype} {x.shape}, not uint8 (n, 32, 32, 3)")
        if y.dtype != np.int64 or y.shape != (len(x),):
            raise UnitgradError(f"its {split} labels are {y.dtype} {y.shape}, not int64 ({len(x)},), one per image")
        if len(y) and not 0 <= y.min() <= y.max() < n_classes:
            raise UnitgradError(f"its {split} labels span {y.min()}..{y.max()}, outside the {n_classes} classes")
        if per_class is not None:
            counts = np.bincount(y, minlength=n_classes)
            wrong = np.flatnonzero(counts != per_class[split])
            if wrong.size:
                name = CLASSES[dataset][wrong[0]]
                raise UnitgradError(
                    f"its {split} split has {len(y)} images and {counts[wrong[0]]} of class '{name}', not "
                    f"{per_class[split]} of each of its {n_classes} classes ({len(wrong)} classes differ): it lost "
                    "images or is another dataset; replace it, or set data.images_per_class for a smaller one"
                )


def _is_official_tarball(dataset: str, path: Path) -> bool:
    """True when the archive's first member is the official top folder (the image folders are not)."""
    if not _looks_like_tar(path):
        return False
    with contextlib.closing(sources.tar_members(path)) as members:
        first = next(members, None)
    return first is not None and first[0].parts[0] == _OFFICIAL_LAYOUT[dataset][0]


def _looks_like_tar(path: Path) -> bool:
    return path.name.endswith((".tar", ".tar.gz", ".tgz"))


def _read_official(dataset: str, path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits from the official pickled batches (callers have md5-verified the archive, so the
    pickles are the published ones)."""
    top, batches, label_key = _OFFICIAL_LAYOUT[dataset]
    wanted = {f"{top}/{name}": split for split, names in batches.items() for name in names}
    found: dict[str, dict] = {}
    for member_path, content in sources.tar_members(path):
        if str(member_path) in wanted and content is not None:
            found[str(member_path)] = pickle.loads(content, encoding="latin1")
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise UnitgradError(f"{path} lacks {', '.join(missing)}: it is not the official {dataset} tarball; replace it")
    splits = {}
    for split, names in batches.items():
        parts = [found[f"{top}/{name}"] for name in names]
        x = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts])
        y = np.concatenate([np.asarray(p[label_key], dtype=np.int64) for p in parts])
        splits[split] = (np.ascontiguousarray(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), y)
    return splits


def _image_files(path: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    """(relative posix path, bytes) of every file of an image-folder directory, tar or zip archive."""
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            if file.is_symlink():
                raise UnitgradError(f"{file} is a symbolic link: image folders must hold plain files")
            yield PurePosixPath(file.relative_to(path).as_posix()), file.read_bytes()
    elif _looks_like_tar(path):
        yield from ((p, c) for p, c in sources.tar_members(path) if c is not None)
    elif path.name.endswith(".zip"):
        yield from sources.zip_members(path)
    else:
        raise UnitgradError(f"{path} is neither a directory nor a .tar/.tar.gz/.tgz/.zip archive: supply one of those")


def _read_image_folder(dataset: str, path: Path, classes: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Images decoded straight from the folder or archive stream, ordered by (split, class, file name)."""
    found: dict[tuple[str, str, str], np.ndarray] = {}
    prefixes = set()
    for rel, content in _image_files(path):
        if rel.suffix.lower() not in _IMAGE_SUFFIXES or len(rel.parts) < 3 or rel.parts[-3] not in SPLITS:
            continue
        prefixes.add(rel.parts[:-3])
        found[rel.parts[-3:]] = _decode(content, rel, path)
    if len(prefixes) > 1:
        raise UnitgradError(f"{path} holds several image trees ({sorted('/'.join(p) for p in prefixes)}): keep one")
    if prefixes and len(next(iter(prefixes))) > 1:
        raise UnitgradError(
            f"{path} nests train/ and test/ more than one folder deep: use [top/]{{train,test}}/<class>/"
        )
    splits = {}
    for split in SPLITS:
        keys = sorted(k for k in found if k[0] == split)
        names = {k[1] for k in keys}
        if names != set(classes):
            missing, extra = sorted(set(classes) - names), sorted(names - set(classes))
            raise UnitgradError(
                f"{path}: {split}/ class folders do not match the {dataset} classes "
                f"(missing {missing or 'none'}, unexpected {extra or 'none'}): lay it out as {split}/<class>/*.png|jpg"
            )
        index = {name: i for i, name in enumerate(classes)}
        x = np.stack([found[k] for k in keys])
        y = np.array([index[k[1]] for k in keys], dtype=np.int64)
        splits[split] = (x, y)
    return splits


def _decode(content: bytes, rel: PurePosixPath, archive: Path) -> np.ndarray:
    # Imported here, not at the top: the loader and the labels need only numpy and torch.
    from PIL import Image

    try:
        with Image.open(io.BytesIO(content)) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise UnitgradError(f"{archive}: {rel} is not a readable image ({exc}): remove or replace it") from exc
    if pixels.shape != (32, 32, 3):
        raise UnitgradError(
            f"{archive}: {rel} is {pixels.shape[1]}x{pixels.shape[0]}, not 32x32: resize the images first"
        )
    return pixels
