"""Downloaded datasets, end to end against a local HTTP server.

Every test builds small files in the datasets' real formats (gzip IDX, the CIFAR-10 python
tarball pickled as Python 2 wrote it, the Tiny ImageNet zip layout), serves them from
127.0.0.1 and points the sources table at them. No other host is ever contacted: the table
starts empty in every test and only local URLs are added to it.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import http.server
import io
import os
import pickle
import re
import struct
import tarfile
import threading
import zipfile
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from convlens.data import DATASETS, dataset_info, load_dataset, sources
from convlens.data.datasets import TINY_IMAGENET_WNIDS
from convlens.data.sources import RemoteFile

REAL_SOURCES = sources.SOURCES
OTHER_WNID = "n01443537"  # goldfish: in the archive, not in tiny-imagenet-10


class Server(NamedTuple):
    root: Path
    url: str
    hits: collections.Counter


@pytest.fixture(autouse=True)
def local_only(monkeypatch, tmp_path):
    """An empty sources table, a private cache and no proxy between us and 127.0.0.1."""
    monkeypatch.setattr(sources, "SOURCES", {})
    monkeypatch.setenv("CONVLENS_CACHE", str(tmp_path / "cache"))
    for proxy in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
        monkeypatch.delenv(proxy.upper(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    hits: collections.Counter = collections.Counter()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            hits[self.path.lstrip("/")] += 1
            super().do_GET()

        def log_message(self, format, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", hits)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def publish(server: Server, dataset: str, files: dict[str, tuple[str, bytes]], **sha256) -> None:
    """Serve ``files`` (role -> (file name, content)) and point the sources table at them.

    ``sha256`` overrides a role's checksum (to make one wrong).
    """
    table = {}
    for role, (fname, content) in files.items():
        (server.root / dataset).mkdir(exist_ok=True)
        (server.root / dataset / fname).write_bytes(content)
        digest = sha256.get(role, hashlib.sha256(content).hexdigest())
        table[role] = RemoteFile(f"{server.url}/{dataset}/{fname}", f"sha256:{digest}")
    sources.SOURCES[dataset] = table


def cached_files(dataset: str) -> list[str]:
    folder = Path(os.environ["CONVLENS_CACHE"]) / dataset
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ----------------------------------------------------------------------------------- IDX files


def idx_gz(array: np.ndarray, magic: int, count: int | None = None) -> bytes:
    """An IDX file, gzip-compressed; ``count`` overrides the first dimension in the header."""
    shape = (len(array) if count is None else count, *array.shape[1:])
    header = struct.pack(f">I{len(shape)}I", magic, *shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def mnist_like(n_train=7, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train": (rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train)),
        "test": (rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test)),
    }
    prefix = {"train": "train", "test": "t10k"}
    files = {}
    for split, (images, labels) in arrays.items():
        files[f"{split}_images"] = (f"{prefix[split]}-images-idx3-ubyte.gz", idx_gz(images, 0x803))
        files[f"{split}_labels"] = (f"{prefix[split]}-labels-idx1-ubyte.gz", idx_gz(labels, 0x801))
    return arrays, files


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_datasets_load_every_split(server, name):
    arrays, files = mnist_like()
    publish(server, name, files)
    for split, (images, labels) in arrays.items():
        x, y = load_dataset(name, split=split, progress=False)
        assert x.shape == (len(images), 1, 28, 28) and x.dtype == np.float32
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x[:, 0], images.astype(np.float32) / 255)
        np.testing.assert_array_equal(y, labels)
    cached = cached_files(name)  # the raw files and the decoded arrays of each split
    assert [c for c in cached if not c.endswith(".npz")] == sorted(f for f, _ in files.values())
    decoded = [re.sub(r"-[0-9a-f]{12}\.npz$", "", c) for c in cached if c.endswith(".npz")]
    assert decoded == [f"{name}-test", f"{name}-train"]


def test_second_load_uses_the_cache(server):
    _, files = mnist_like()
    publish(server, "mnist", files)
    first = load_dataset("mnist", progress=False)
    assert dict(server.hits) == {"mnist/train-images-idx3-ubyte.gz": 1,
                                 "mnist/train-labels-idx1-ubyte.gz": 1}  # fmt: skip
    second = load_dataset("mnist", progress=False)
    assert sum(server.hits.values()) == 2  # the decoded arrays came from the cache
    np.testing.assert_array_equal(first[0], second[0])
    # Without the decoded arrays the raw files are parsed again, still without a download.
    (decoded,) = Path(os.environ["CONVLENS_CACHE"], "mnist").glob("mnist-train-*.npz")
    decoded.write_bytes(b"damaged")
    third = load_dataset("mnist", progress=False)
    assert sum(server.hits.values()) == 2
    np.testing.assert_array_equal(first[0], third[0])


def test_cache_dir_overrides_the_environment(server, tmp_path):
    _, files = mnist_like()
    publish(server, "mnist", files)
    load_dataset("mnist", split="test", cache_dir=tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    assert cached_files("mnist") == []
    assert sources.cache_root() == tmp_path / "cache"


def test_checksum_mismatch_is_refused_and_nothing_is_cached(server):
    _, files = mnist_like()
    publish(server, "mnist", files, train_images="0" * 64)
    with pytest.raises(
        ValueError, match=r"mnist: train-images-idx3-ubyte.gz .* failed its checksum"
    ):
        load_dataset("mnist", progress=False)
    assert cached_files("mnist") == []


def test_missing_file_is_a_connection_error(server):
    _, files = mnist_like()
    publish(server, "mnist", files)
    (server.root / "mnist" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        ConnectionError, match=r"mnist: cannot download train-labels-idx1-ubyte\.gz"
    ):
        load_dataset("mnist", progress=False)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (idx_gz(np.zeros((7, 28, 28)), 0x803), "IDX magic number 00000803, expected 00000801"),
        (idx_gz(np.zeros(7), 0x801, count=8), r"promises \(8,\) = 8 values, the file holds 7"),
        (idx_gz(np.zeros(6), 0x801), "has 7 images but train-labels-idx1-ubyte.gz 6 labels"),
        (b"not gzip at all", "train-labels-idx1-ubyte.gz: not a gzip file"),
    ],
    ids=["magic", "size", "count", "gzip"],
)  # fmt: skip
def test_malformed_idx_files_are_reported(server, labels, message):
    _, files = mnist_like()
    files["train_labels"] = ("train-labels-idx1-ubyte.gz", labels)
    publish(server, "mnist", files)
    with pytest.raises(ValueError, match=message):
        load_dataset("mnist", progress=False)


# ------------------------------------------------------------------------------------ CIFAR-10


class Py2Pickler(pickle._Pickler):
    """Pickles as CIFAR-10's Python 2 cPickle did: strings as ``str`` (BINSTRING opcodes,
    read back as bytes) and NumPy's array rebuilder under its NumPy 1 name."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", None) == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def py2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def cifar_tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def cifar_like(seed=0):
    """Five training batches of 2 images, a test batch of 3, and batches.meta."""
    rng = np.random.default_rng(seed)
    meta = {b"label_names": [c.encode() for c in dataset_info("cifar10").classes],
            b"num_cases_per_batch": 2, b"num_vis": 3072}  # fmt: skip
    members = {"batches.meta": py2_pickle(meta), "readme.html": b"<html></html>"}
    batches = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        n = 3 if name == "test_batch" else 2
        data = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        batch = {b"batch_label": f"batch {k}".encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"image_{k}_{i}.png".encode() for i in range(n)]}  # fmt: skip
        members[name] = py2_pickle(batch)
        batches[name] = (data, labels)
    return batches, members


def test_py2_pickler_writes_what_the_real_batches_hold():
    _, members = cifar_like()
    opcodes = re.findall(rb"c([\w.]+)\n(\w+)\n", members["data_batch_1"])
    assert set(opcodes) == {(b"numpy.core.multiarray", b"_reconstruct"), (b"numpy", b"ndarray"),
                            (b"numpy", b"dtype")}  # fmt: skip
    assert pickle.SHORT_BINSTRING + b"\x04data" in members["data_batch_1"]


def test_cifar10_loads_both_splits_channel_first(server):
    batches, members = cifar_like()
    publish(server, "cifar10", {"archive": ("cifar-10-python.tar.gz", cifar_tarball(members))})
    x, y = load_dataset("cifar10", split="train", progress=False)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    assert x.shape == (10, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    expected = np.concatenate([data for data, _ in train]).reshape(10, 3, 32, 32)
    np.testing.assert_array_equal(x, expected.astype(np.float32) / 255)
    np.testing.assert_array_equal(y, np.concatenate([labels for _, labels in train]))
    # Row layout: 1024 red values (row-major 32x32), then green, then blue.
    assert x[0, 1, 0, 1] == batches["data_batch_1"][0][0, 1024 + 1] / np.float32(255)
    x, y = load_dataset("cifar10", split="test", progress=False)
    assert x.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(y, batches["test_batch"][1])
    assert server.hits["cifar10/cifar-10-python.tar.gz"] == 1


def test_cifar10_pickle_naming_os_system_is_refused_unrun(server, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    _, members = cifar_like()
    members["data_batch_1"] = py2_pickle({b"data": Exploit()})
    publish(server, "cifar10", {"archive": ("cifar-10-python.tar.gz", cifar_tarball(members))})
    with pytest.raises(ValueError, match=r"data_batch_1 cannot be loaded safely: refused to load "
                                         r"(posix|nt|os)\.system"):  # fmt: skip
        load_dataset("cifar10", progress=False)
    assert not marker.exists()
    assert [name for name in cached_files("cifar10") if name.endswith(".npz")] == []


def test_cifar10_wrong_class_names_are_reported(server):
    _, members = cifar_like()
    members["batches.meta"] = py2_pickle({b"label_names": [b"cat", b"dog"]})
    publish(server, "cifar10", {"archive": ("cifar-10-python.tar.gz", cifar_tarball(members))})
    with pytest.raises(ValueError, match=r"batches.meta lists classes \['cat', 'dog'\]"):
        load_dataset("cifar10", split="test", progress=False)


# ------------------------------------------------------------------------------- Tiny ImageNet


def jpeg(colour, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (64, 64), colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def tiny_imagenet_zip() -> tuple[bytes, list[tuple[str, int]]]:
    """The real layout, 4 training and 2 validation JPEGs per class, plus a class to ignore.

    A training image of class label ``c`` and number ``k`` is the colour (20c + 10, 20k, 128);
    validation images are (20c + 10, 0, 255). One training image is grayscale.
    """
    wnids = [*TINY_IMAGENET_WNIDS, OTHER_WNID]
    buffer = io.BytesIO()
    annotations, val_order = [], []
    with zipfile.ZipFile(buffer, "w") as archive:
        root = "tiny-imagenet-200"
        archive.writestr(f"{root}/wnids.txt", "\n".join(wnids) + "\n")
        for c, wnid in enumerate(wnids):
            archive.writestr(f"{root}/train/{wnid}/{wnid}_boxes.txt", "")
            for k in (10, 2, 0, 1):  # out of order on purpose: the loader sorts numerically
                image = (
                    jpeg(20 * c + 10, "L") if (c, k) == (3, 2) else jpeg((20 * c + 10, 20 * k, 128))
                )
                archive.writestr(f"{root}/train/{wnid}/images/{wnid}_{k}.JPEG", image)
        for j in range(2 * len(wnids)):
            c = (j * 7) % len(wnids)  # classes interleaved, as in the real annotations
            archive.writestr(f"{root}/val/images/val_{j}.JPEG", jpeg((20 * c + 10, 0, 255)))
            annotations.append(f"val_{j}.JPEG\t{wnids[c]}\t0\t0\t63\t63")
            if c < 10:
                val_order.append((f"val_{j}.JPEG", c))
        archive.writestr(f"{root}/val/val_annotations.txt", "\n".join(annotations) + "\n")
        archive.writestr(f"{root}/test/images/test_0.JPEG", jpeg("white"))
    return buffer.getvalue(), val_order


def test_tiny_imagenet_10_reads_only_its_classes_in_order(server):
    content, val_order = tiny_imagenet_zip()
    publish(server, "tiny-imagenet-10", {"archive": ("tiny-imagenet-200.zip", content)})
    x, y = load_dataset("tiny-imagenet-10", split="train", progress=False)
    assert x.shape == (40, 3, 64, 64) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(y, np.repeat(np.arange(10), 4))
    mean = x.mean(axis=(2, 3)) * 255  # (N, 3)
    np.testing.assert_allclose(mean[:, 0], 20 * y + 10, atol=3)
    colour = y != 3
    np.testing.assert_allclose(mean[colour, 1], np.tile([0, 20, 40, 200], 10)[colour], atol=3)
    gray = x[(y == 3)][2]  # class 3, k = 2: the grayscale JPEG, now RGB
    np.testing.assert_array_equal(gray[0], gray[1])
    np.testing.assert_array_equal(gray[1], gray[2])

    x, y = load_dataset("tiny-imagenet-10", split="test", progress=False)
    assert x.shape == (20, 3, 64, 64)
    np.testing.assert_array_equal(y, [c for _, c in val_order])
    np.testing.assert_allclose(x.mean(axis=(2, 3))[:, 0] * 255, 20 * y + 10, atol=3)
    assert server.hits["tiny-imagenet-10/tiny-imagenet-200.zip"] == 1
    assert dataset_info("tiny-imagenet-10").classes[5] == "koala"


def test_tiny_imagenet_without_a_class_is_reported(server):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny-imagenet-200/train/n03662601/images/n03662601_0.JPEG", jpeg("red"))
    publish(server, "tiny-imagenet-10", {"archive": ("tiny-imagenet-200.zip", buffer.getvalue())})
    with pytest.raises(ValueError, match="no training images for n02165456"):
        load_dataset("tiny-imagenet-10", progress=False)
    with pytest.raises(ValueError, match=r"val/val_annotations\.txt is missing"):
        load_dataset("tiny-imagenet-10", split="test", progress=False)


# ---------------------------------------------------------------------------- the real table


def test_real_sources_are_official_and_checksummed():
    assert set(REAL_SOURCES) == set(DATASETS) - {"mnist-bundled"}
    hosts = {
        "mnist": "storage.googleapis.com",
        "fashion-mnist": "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        "cifar10": "www.cs.toronto.edu",
        "tiny-imagenet-10": "cs231n.stanford.edu",
    }
    for name, files in REAL_SOURCES.items():
        for remote in files.values():
            assert urlsplit(remote.url).hostname == hosts[name]
            pattern = "md5:[0-9a-f]{32}" if name == "tiny-imagenet-10" else "sha256:[0-9a-f]{64}"
            assert re.fullmatch(pattern, remote.checksum)
    checksums = {remote.checksum for files in REAL_SOURCES.values() for remote in files.values()}
    assert len(checksums) == 10  # every file its own checksum
