"""Sources, download, safe extraction, the prepared cache, CIFAR-C layout and the data CLI.

Official-format archives are built here and served on 127.0.0.1, so the real urllib download path
runs without the internet.
"""

import functools
import gzip
import hashlib
import http.server
import io
import json
import pickle
import shutil
import socket
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fixtures.params import write_params
from PIL import Image

from unitgrad import cli as unitgrad_cli
from unitgrad.data import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CORRUPTIONS,
    cifar,
    cli,
    load_cifar,
    load_corruptions,
    prepare,
    prepare_corruptions,
    source_of,
    sources,
)
from unitgrad.data.sources import Archive
from unitgrad.errors import UnitgradError

SHARED_ARCHIVE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def few_images(monkeypatch):
    """These tests prepare a few images per class: `prepare` checks their shapes and labels but not the published
    counts, unless a test passes counts itself (data.images_per_class), as the integrity tests below do."""
    monkeypatch.setattr(cifar, "IMAGES_PER_CLASS", {"cifar10": None, "cifar100": None})


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    tar.addfile(info)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _official_cifar10(path: Path, per_batch: int = 3, n_test: int = 4, seed: int = 0):
    """A cifar-10-python.tar.gz with the official layout and pickles; returns (x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 256, size=(5 * per_batch + n_test, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=len(rows)).tolist()
    with tarfile.open(path, "w:gz") as tar:
        _add_dir(tar, "cifar-10-batches-py")
        meta = {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": per_batch, "num_vis": 3072}
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
        for i in range(6):
            name = f"data_batch_{i + 1}" if i < 5 else "test_batch"
            part = slice(i * per_batch, (i + 1) * per_batch) if i < 5 else slice(5 * per_batch, None)
            batch = {
                "batch_label": name,
                "labels": labels[part],
                "data": rows[part],
                "filenames": ["x.png"] * len(rows[part]),
            }
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps(batch, protocol=2))
    nhwc = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    y = np.array(labels)
    return nhwc[: 5 * per_batch], y[: 5 * per_batch], nhwc[5 * per_batch :], y[5 * per_batch :]


def _official_cifar100(path: Path, n_train: int = 5, n_test: int = 3):
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 256, size=(n_train + n_test, 3072), dtype=np.uint8)
    fine = rng.integers(0, 100, size=len(rows)).tolist()
    with tarfile.open(path, "w:gz") as tar:
        _add_dir(tar, "cifar-100-python")
        _add(tar, "cifar-100-python/meta", pickle.dumps({"fine_label_names": list(CIFAR100_CLASSES)}, protocol=2))
        for split, part in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
            batch = {"data": rows[part], "fine_labels": fine[part], "coarse_labels": [0] * len(rows[part])}
            _add(tar, f"cifar-100-python/{split}", pickle.dumps(batch, protocol=2))
    return rows[n_train:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.array(fine[n_train:])


def _image_tree(root: Path, per_class=(2, 1), suffix=".png", classes=CIFAR10_CLASSES, seed=0) -> dict:
    """`root/{train,test}/<class>/NNNN<suffix>`; returns {(split, class, file): pixels}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, count in zip(("train", "test"), per_class):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(count):
                pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{k:04d}{suffix}")
                written[(split, name, f"{k:04d}{suffix}")] = pixels
    return written


@pytest.fixture
def server(tmp_path):
    """(served directory, base URL) of an HTTP server on 127.0.0.1."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# ---------------------------------------------------------------- official download


def test_official_download_prepares_the_official_layout(server, tmp_path, monkeypatch):
    folder, base = server
    x_tr, y_tr, x_te, y_te = _official_cifar10(folder / "cifar-10-python.tar.gz")
    archive = Archive(
        "cifar-10-python.tar.gz", f"{base}/cifar-10-python.tar.gz", _md5(folder / "cifar-10-python.tar.gz")
    )
    monkeypatch.setitem(sources.CIFAR_ARCHIVES, "cifar10", archive)
    root = tmp_path / "data"
    out = prepare("cifar10", "official", root)
    assert out == root / "cifar10"
    got = load_cifar("cifar10", root)
    for actual, expected in zip(got[:4], (x_tr, y_tr, x_te, y_te)):
        np.testing.assert_array_equal(actual, expected)
    assert got[0].dtype == np.uint8 and got[1].dtype == np.int64 and got[0].shape == (15, 32, 32, 3)
    assert got[4] == list(CIFAR10_CLASSES)
    assert json.loads((out / "source.json").read_text())["kind"] == "official"
    assert _md5(root / "downloads" / archive.filename) == archive.md5


def test_official_cifar100_uses_the_fine_labels(server, tmp_path, monkeypatch):
    folder, base = server
    x_te, y_te = _official_cifar100(folder / "c100.tar.gz")
    monkeypatch.setitem(
        sources.CIFAR_ARCHIVES, "cifar100", Archive("c100.tar.gz", f"{base}/c100.tar.gz", _md5(folder / "c100.tar.gz"))
    )
    prepare("cifar100", "official", tmp_path)
    _, _, got_x, got_y, classes = load_cifar("cifar100", tmp_path)
    np.testing.assert_array_equal(got_x, x_te)
    np.testing.assert_array_equal(got_y, y_te)
    assert classes == list(CIFAR100_CLASSES) and classes[0] == "apple" and classes[-1] == "worm"


def test_md5_mismatch_is_one_line_and_leaves_no_files(server, tmp_path, monkeypatch):
    folder, base = server
    _official_cifar10(folder / "cifar-10-python.tar.gz")
    monkeypatch.setitem(
        sources.CIFAR_ARCHIVES, "cifar10", Archive("cifar-10-python.tar.gz", f"{base}/cifar-10-python.tar.gz", "0" * 32)
    )
    with pytest.raises(UnitgradError, match="md5") as info:
        prepare("cifar10", "official", tmp_path / "data")
    assert "\n" not in str(info.value)
    assert _files(tmp_path / "data") == []


def test_offline_error_says_how_to_supply_the_data(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setitem(
        sources.CIFAR_ARCHIVES, "cifar10", Archive("c.tar.gz", f"http://127.0.0.1:{port}/c.tar.gz", "0" * 32)
    )
    with pytest.raises(UnitgradError, match=r"data\.sources\.cifar10") as info:
        prepare("cifar10", "official", tmp_path)
    assert "\n" not in str(info.value)
    assert _files(tmp_path) == []


def test_a_verified_download_is_reused(server, tmp_path, monkeypatch):
    folder, base = server
    _official_cifar10(folder / "c.tar.gz")
    monkeypatch.setitem(
        sources.CIFAR_ARCHIVES, "cifar10", Archive("c.tar.gz", f"{base}/c.tar.gz", _md5(folder / "c.tar.gz"))
    )
    prepare("cifar10", "official", tmp_path)
    (folder / "c.tar.gz").unlink()  # a second download would now fail
    prepare("cifar10", "official", tmp_path)


def _closed_port_url() -> str:
    with socket.socket() as sock:  # bound, then closed: nobody listens, connecting is refused at once
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/c.tar.gz"


def test_unreachable_official_falls_back_to_the_next_candidate(tmp_path, monkeypatch):
    monkeypatch.setitem(sources.CIFAR_ARCHIVES, "cifar10", Archive("c.tar.gz", _closed_port_url(), "0" * 32))
    tree = tmp_path / "tree.tar.gz"
    _image_tree(tmp_path / "images", per_class=(1, 1))
    with tarfile.open(tree, "w:gz") as tar:
        tar.add(tmp_path / "images", arcname="images")
    out = prepare("cifar10", ["official", str(tree)], tmp_path / "data")
    info = json.loads((out / "source.json").read_text())
    assert info["source"] == str(tree) and info["kind"] == "image-folder"
    assert len(info["skipped"]) == 1 and info["skipped"][0].startswith("official: cannot download http://127.0.0.1")
    assert source_of("cifar10", tmp_path / "data") == {"source": str(tree), "md5": _md5(tree)}


def test_reachable_official_is_used_before_a_local_copy(server, tmp_path, monkeypatch):
    folder, base = server
    _official_cifar10(folder / "c.tar.gz")
    archive = Archive("c.tar.gz", f"{base}/c.tar.gz", _md5(folder / "c.tar.gz"))
    monkeypatch.setitem(sources.CIFAR_ARCHIVES, "cifar10", archive)
    _image_tree(tmp_path / "tree", per_class=(1, 1))
    prepare("cifar10", ["official", str(tmp_path / "tree")], tmp_path / "data")
    assert source_of("cifar10", tmp_path / "data") == {"source": "official", "md5": archive.md5}


def test_when_every_candidate_fails_the_error_lists_each(tmp_path, monkeypatch):
    monkeypatch.setitem(sources.CIFAR_ARCHIVES, "cifar10", Archive("c.tar.gz", _closed_port_url(), "0" * 32))
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tar")
    missing = tmp_path / "shared" / "cifar10-jpeg.tar.gz"
    with pytest.raises(UnitgradError) as info:
        prepare("cifar10", ["official", str(missing), str(bad)], tmp_path / "data")
    message = str(info.value)
    assert "\n" not in message
    assert "(1) official: cannot download http://127.0.0.1" in message
    assert f"(2) {missing}: not found" in message
    assert f"(3) {bad}: " in message and "truncated" in message
    assert "Fix: list a reachable source there" in message and "data.sources.cifar10" in message
    assert _files(tmp_path / "data") == []


def test_a_server_that_never_answers_times_out_in_the_set_time(tmp_path, monkeypatch):
    with socket.socket() as sock:  # listening, never accepting: connect succeeds, the response never comes
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/c.tar.gz"
        monkeypatch.setitem(sources.CIFAR_ARCHIVES, "cifar10", Archive("c.tar.gz", url, "0" * 32))
        monkeypatch.setattr(sources, "DOWNLOAD_TIMEOUT_S", 0.2)
        start = time.perf_counter()
        with pytest.raises(UnitgradError, match="timed out"):
            prepare("cifar10", "official", tmp_path)
        assert time.perf_counter() - start < 5  # the timeout, not the OS's minutes-long default
    assert _files(tmp_path) == []


@pytest.mark.parametrize("value", [[], [3], "", None])
def test_malformed_source_list_is_an_error_naming_the_key(tmp_path, value):
    with pytest.raises(UnitgradError, match=r"data\.sources\.cifar10 must be a source"):
        prepare("cifar10", value, tmp_path)


def test_source_of_an_unprepared_cache_says_to_prepare(tmp_path):
    with pytest.raises(UnitgradError, match="unitgrad prepare cifar10"):
        source_of("cifar10", tmp_path)


# ---------------------------------------------------------------- local archives


def test_local_official_tarball_is_md5_verified(tmp_path, monkeypatch):
    path = tmp_path / "cifar-10-python.tar.gz"
    x_tr, *_ = _official_cifar10(path)
    with pytest.raises(UnitgradError, match="md5"):
        prepare("cifar10", path, tmp_path / "a")
    assert not (tmp_path / "a" / "cifar10").exists()
    monkeypatch.setitem(sources.CIFAR_ARCHIVES, "cifar10", Archive(path.name, "unused", _md5(path)))
    prepare("cifar10", path, tmp_path / "b")
    np.testing.assert_array_equal(load_cifar("cifar10", tmp_path / "b")[0], x_tr)


def test_truncated_archive_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "cifar-10-python.tar.gz"
    _official_cifar10(path, per_batch=40)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    monkeypatch.setitem(sources.CIFAR_ARCHIVES, "cifar10", Archive(path.name, "unused", _md5(path)))
    with pytest.raises(UnitgradError, match="truncated"):
        prepare("cifar10", path, tmp_path / "data")
    assert not (tmp_path / "data" / "cifar10").exists()


@pytest.mark.parametrize("kind", ["traversal", "absolute", "symlink", "hardlink", "device"])
def test_unsafe_members_are_refused(tmp_path, kind):
    tree = tmp_path / "tree"
    _image_tree(tree, per_class=(1, 1))
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree, arcname="top")
        bad = tarfile.TarInfo(
            {"traversal": "top/../../escaped.png", "absolute": str(tmp_path / "abs.png")}.get(kind, "top/x.png")
        )
        if kind == "symlink":
            bad.type, bad.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            bad.type, bad.linkname = tarfile.LNKTYPE, "top/train/cat/0000.png"
        elif kind == "device":
            bad.type = tarfile.CHRTYPE
        payload = b"" if kind in ("symlink", "hardlink", "device") else b"x"
        bad.size = len(payload)
        tar.addfile(bad, io.BytesIO(payload))
    with pytest.raises(UnitgradError, match="refusing"):
        prepare("cifar10", path, tmp_path / "data")
    with pytest.raises(UnitgradError, match="refusing"):
        sources.safe_extract(path, tmp_path / "extract")
    assert not (tmp_path / "data" / "cifar10").exists()
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "abs.png").exists()
    assert _files(tmp_path / "extract") == []


# ---------------------------------------------------------------- image folders


@pytest.mark.parametrize("form", ["directory", "tar.gz", "zip"])
def test_image_folder_round_trips_pixels_in_class_order(tmp_path, form):
    tree = tmp_path / "tree" / "cifar10-png"
    written = _image_tree(tree)
    source = tree
    if form == "tar.gz":
        source = tmp_path / "images.tar.gz"
        with tarfile.open(source, "w:gz") as tar:
            tar.add(tree, arcname="cifar10-png")  # one wrapping top-level folder, as the shared archive
    elif form == "zip":
        source = tmp_path / "images.zip"
        with zipfile.ZipFile(source, "w") as bundle:
            for file in tree.rglob("*.png"):
                bundle.write(file, file.relative_to(tree).as_posix())  # no wrapping folder
    prepare("cifar10", source, tmp_path / "data")
    x_tr, y_tr, x_te, y_te, classes = load_cifar("cifar10", tmp_path / "data")
    assert x_tr.shape == (20, 32, 32, 3) and x_te.shape == (10, 32, 32, 3) and classes == list(CIFAR10_CLASSES)
    np.testing.assert_array_equal(y_te, np.arange(10))
    np.testing.assert_array_equal(y_tr, np.repeat(np.arange(10), 2))
    np.testing.assert_array_equal(x_tr[5], written[("train", "bird", "0001.png")])
    np.testing.assert_array_equal(x_te[9], written[("test", "truck", "0000.png")])
    info = json.loads((tmp_path / "data" / "cifar10" / "source.json").read_text())
    assert info["kind"] == "image-folder" and info["n_train"] == 20
    assert (info["md5"] is not None) == (form != "directory")


def test_zip_with_traversal_member_is_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("train/cat/0000.png", b"x")
        bundle.writestr("../escaped.png", b"x")
    with pytest.raises(UnitgradError, match="refusing"):
        prepare("cifar10", path, tmp_path / "data")


def test_image_folder_reads_jpeg(tmp_path):
    written = _image_tree(tmp_path / "tree", per_class=(1, 1), suffix=".jpg")
    prepare("cifar10", tmp_path / "tree", tmp_path / "data")
    x_tr = load_cifar("cifar10", tmp_path / "data")[0]
    # Lossy, but the decoded image is close to what was encoded.
    assert np.abs(x_tr[0].astype(int) - written[("train", "airplane", "0000.jpg")]).mean() < 60


def test_image_folder_with_wrong_classes_names_the_difference(tmp_path):
    _image_tree(tmp_path / "tree", per_class=(1, 1), classes=CIFAR10_CLASSES[:9] + ("lorry",))
    with pytest.raises(UnitgradError, match=r"truck.*lorry"):
        prepare("cifar10", tmp_path / "tree", tmp_path / "data")


def test_image_of_wrong_size_is_refused(tmp_path):
    _image_tree(tmp_path / "tree", per_class=(1, 1))
    Image.new("RGB", (64, 64)).save(tmp_path / "tree" / "train" / "cat" / "big.png")
    with pytest.raises(UnitgradError, match="32x32"):
        prepare("cifar10", tmp_path / "tree", tmp_path / "data")


def test_missing_source_and_cache_name_the_fix(tmp_path):
    with pytest.raises(UnitgradError, match=r"data\.sources\.cifar10"):
        prepare("cifar10", tmp_path / "nope.tar.gz", tmp_path)
    with pytest.raises(UnitgradError, match="unitgrad prepare cifar10"):
        load_cifar("cifar10", tmp_path)
    with pytest.raises(UnitgradError, match="unknown dataset"):
        prepare("mnist", "official", tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(), reason="the shared CIFAR-10 JPEG archive is not on this machine")
def test_shared_jpeg_archive_prepares_full_cifar10(tmp_path):
    prepare("cifar10", SHARED_ARCHIVE, tmp_path)
    x_tr, y_tr, x_te, y_te, _ = load_cifar("cifar10", tmp_path)
    assert x_tr.shape == (50000, 32, 32, 3) and x_te.shape == (10000, 32, 32, 3)
    assert np.bincount(y_tr).tolist() == [5000] * 10 and np.bincount(y_te).tolist() == [1000] * 10


# ---------------------------------------------------------------- CIFAR-C


@pytest.fixture
def tiny_cifar10(tmp_path):
    """A prepared cifar10 cache with 3 test images per class under tmp_path/data."""
    _image_tree(tmp_path / "tree", per_class=(1, 3))
    prepare("cifar10", tmp_path / "tree", tmp_path / "data")
    return tmp_path / "data"


def test_generated_corruptions_have_the_official_layout(tiny_cifar10):
    out = prepare_corruptions("cifar10", "generate", tiny_cifar10, n_images=20, seed=3)
    _, _, x_te, y_te, _ = load_cifar("cifar10", tiny_cifar10)
    index = np.load(out / "test_indices.npy")
    assert np.bincount(y_te[index]).tolist() == [2] * 10
    for name in CORRUPTIONS:
        images, labels = load_corruptions("cifar10", tiny_cifar10, name)
        assert images.shape == (100, 32, 32, 3) and images.dtype == np.uint8
        np.testing.assert_array_equal(labels, np.tile(y_te[index], 5))
    # Severity-major: the first block is severity 1 of the subset, in subset order.
    from unitgrad.data import corrupt

    np.testing.assert_array_equal(
        load_corruptions("cifar10", tiny_cifar10, "fog")[0][20:40], corrupt(x_te[index], "fog", 2, 3)
    )


def test_generate_refuses_unbalanced_sizes_and_unknown_sources(tiny_cifar10):
    with pytest.raises(UnitgradError, match="multiple of 10"):
        prepare_corruptions("cifar10", "generate", tiny_cifar10, n_images=15, seed=0)
    with pytest.raises(UnitgradError, match="generate, official"):
        prepare_corruptions("cifar10", "imagemagick", tiny_cifar10, n_images=10, seed=0)
    with pytest.raises(UnitgradError, match="unitgrad corrupt cifar10"):
        load_corruptions("cifar10", tiny_cifar10, "fog")


def test_official_corruptions_download_verify_and_extract(server, tmp_path, monkeypatch):
    folder, base = server
    rng = np.random.default_rng(0)
    path = folder / "CIFAR-10-C.tar"
    with tarfile.open(path, "w") as tar:
        _add_dir(tar, "CIFAR-10-C")
        for name in [*CORRUPTIONS, "labels"]:
            array = rng.integers(
                0, 10 if name == "labels" else 256, size=(10,) if name == "labels" else (10, 32, 32, 3)
            )
            buffer = io.BytesIO()
            np.save(buffer, array.astype(np.uint8))
            _add(tar, f"CIFAR-10-C/{name}.npy", buffer.getvalue())
    monkeypatch.setitem(
        sources.CORRUPTION_ARCHIVES, "cifar10", Archive(path.name, f"{base}/{path.name}?download=1", _md5(path))
    )
    out = prepare_corruptions("cifar10", "official", tmp_path / "data", n_images=1000, seed=0)
    images, labels = load_corruptions("cifar10", tmp_path / "data", "snow")
    assert images.shape == (10, 32, 32, 3) and labels.dtype == np.int64
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}.npy" for n in [*CORRUPTIONS, "labels"]] + ["source.json"]
    )
    assert not any(p.name.startswith(".extract") for p in (tmp_path / "data").iterdir())


# ---------------------------------------------------------------- CLI


def test_cli_reads_sources_and_corruption_settings_from_params(tmp_path, monkeypatch, capsys):
    _image_tree(tmp_path / "tree", per_class=(1, 1))
    corruptions = {"source": "generate", "n_images": 10, "seed": 0}
    sources = {"cifar10": ["missing.tar.gz", "tree"]}
    params = write_params(tmp_path / "params.yaml", data={"sources": sources, "corruptions": corruptions})
    monkeypatch.chdir(tmp_path)  # relative paths resolve from the current directory
    assert cli.prepare_main(["cifar10", "--params", str(params)]) == 0
    assert "from tree (md5 None)" in capsys.readouterr().out
    assert cli.corrupt_main(["cifar10", "--params", str(params)]) == 0
    assert (tmp_path / "data" / "cifar10" / "train_x.npy").is_file()
    assert load_corruptions("cifar10", tmp_path / "data", "frost")[0].shape == (50, 32, 32, 3)
    write_params(params, data={"sources": {}})
    with pytest.raises(UnitgradError, match=r"params.yaml: data\.sources: no source for 'cifar10'"):
        cli.prepare_main(["cifar10", "--params", str(params)])
    with pytest.raises(SystemExit):
        cli.prepare_main(["mnist", "--params", str(params)])


# ---------------------------------------------------------------- integrity: nothing short, nothing lost


def _prepare_cli(tmp_path, source, capsys) -> tuple[int, str]:
    """`unitgrad prepare cifar10` from `source` in tmp_path, its params stating 4 train / 2 test images per class."""
    params = write_params(
        tmp_path / "params.yaml",
        data={"sources": {"cifar10": str(source)}, "images_per_class": {"train": 4, "test": 2}},
    )
    capsys.readouterr()
    code = unitgrad_cli.main(["prepare", "cifar10", "--params", str(params)])
    return code, capsys.readouterr().err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def prepared(tmp_path, monkeypatch, capsys):
    """tmp_path/data/cifar10 prepared through the CLI from an image-folder tar of 4 + 2 images per class; the tar."""
    monkeypatch.chdir(tmp_path)
    _image_tree(tmp_path / "tree", per_class=(4, 2))
    good = tmp_path / "good.tar"
    with tarfile.open(good, "w", format=tarfile.GNU_FORMAT) as tar:  # as GNU tar writes them
        tar.add(tmp_path / "tree", arcname="tree")
    assert _prepare_cli(tmp_path, good, capsys) == (0, "")
    return _snapshot(tmp_path / "data" / "cifar10"), good.read_bytes()


def _header(raw: bytes, at: float) -> int:
    """The offset of the header of the member at fraction `at` of the archive `raw`'s members."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
    return members[int(len(members) * at)].offset


def _garbled(raw: bytes, at: float) -> bytes:
    """`raw` with 2 000 random bytes written over the header (and more) of the member at fraction `at`."""
    start = _header(raw, at)
    return raw[:start] + np.random.default_rng(0).bytes(2000) + raw[start + 2000 :]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: _garbled(raw, 0.5), "ends early: its tar stream breaks off at byte"),
        (lambda raw: _garbled(raw, 0.02), "ends early: its tar stream breaks off at byte"),
        (lambda raw: raw[: _header(raw, 0.5)], "ends early: it is truncated after byte"),
    ],
    ids=["middle", "start", "cut"],
)
@pytest.mark.parametrize("compressed", [False, True], ids=["tar", "tar.gz"])
def test_a_damaged_archive_is_named_and_the_prepared_data_kept(tmp_path, prepared, capsys, damage, message, compressed):
    """Damage that tarfile reads as an early end of the archive (it stops quietly at a header it cannot read) is
    an error naming the archive, not a dataset short of images; the earlier prepared data stay byte-identical."""
    before, raw = prepared
    bad = tmp_path / ("bad.tar.gz" if compressed else "bad.tar")
    damaged = damage(raw)
    bad.write_bytes(gzip.compress(damaged, mtime=0) if compressed else damaged)
    code, err = _prepare_cli(tmp_path, bad, capsys)
    assert code == 2 and err.count("\n") == 1 and f"{bad} ends early" in err and message in err, err
    assert _snapshot(tmp_path / "data" / "cifar10") == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar10"]  # no temporary left


def test_a_gzip_archive_with_a_bad_checksum_is_refused(tmp_path, prepared, capsys):
    before, raw = prepared
    packed = bytearray(gzip.compress(raw, mtime=0))
    packed[-8] ^= 0xFF  # the CRC-32 of the gzip trailer: tarfile's own reader never checks it
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(packed))
    code, err = _prepare_cli(tmp_path, bad, capsys)
    assert code == 2 and err.count("\n") == 1 and f"{bad} is not a readable tar archive (CRC check failed" in err, err
    assert _snapshot(tmp_path / "data" / "cifar10") == before


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda tree: (tree / "train" / "cat" / "0003.png").unlink(),
            "its train split has 39 images and 3 of class 'cat', not 4",
        ),
        (lambda tree: shutil.rmtree(tree / "test"), "test/ class folders do not match"),
        (
            lambda tree: Image.new("L", (32, 32)).save(tree / "test" / "dog" / "0002.png"),
            "its test split has 21 images and 3 of class 'dog', not 2",
        ),
    ],
    ids=["one-image-short", "no-test-split", "one-image-more"],
)
def test_an_image_folder_that_is_not_the_stated_size_is_refused(tmp_path, prepared, capsys, edit, message):
    before, _ = prepared
    edit(tmp_path / "tree")
    code, err = _prepare_cli(tmp_path, tmp_path / "tree", capsys)
    assert code == 2 and err.count("\n") == 1 and f"(1) {tmp_path / 'tree'}: " in err and message in err, err
    assert _snapshot(tmp_path / "data" / "cifar10") == before


def test_the_published_counts_are_the_default(tmp_path, monkeypatch):
    monkeypatch.undo()  # without the few_images fixture: 2 + 1 images per class are not CIFAR-10
    _image_tree(tmp_path / "tree")
    with pytest.raises(UnitgradError, match=r"its train split has 20 images and 2 of class 'airplane', not 5000"):
        prepare("cifar10", tmp_path / "tree", tmp_path / "data")
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_a_killed_prepare_leaves_a_temporary_that_the_next_one_removes(tmp_path, prepared, capsys):
    """SIGKILL skips every cleanup; the next write of the same target removes what the killed one left."""
    data = tmp_path / "data"
    (data / ".cifar10.k1ll3d00.tmp").mkdir()
    (data / ".cifar10.k1ll3d00.tmp" / "train_x.npy").write_bytes(b"0" * 1000)
    (data / "cifar10" / ".source.json.abcdefgh.tmp").write_bytes(b"half")
    assert _prepare_cli(tmp_path, tmp_path / "good.tar", capsys) == (0, "")
    assert sorted(p.name for p in data.iterdir()) == ["cifar10"]
    assert not any(p.name.startswith(".") for p in (data / "cifar10").iterdir())


def test_a_truncated_prepared_array_is_one_line_naming_it(tmp_path, prepared):
    path = tmp_path / "data" / "cifar10" / "train_x.npy"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        UnitgradError, match=rf"{path} is truncated or not a \.npy file \(ValueError\): run `unitgrad prepare"
    ):
        load_cifar("cifar10", tmp_path / "data")
