"""Sequential.save / nn.load: bit-exact round trips, and files that must be refused."""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

import convlens.nn as nn


def every_layer_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2D(3, 4, (3, 2), stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2),
                  anchor=(0, 1), mode="convolution"),
        nn.ReLU(), nn.MaxPool2D(2, 1, 1), nn.Conv2D(4, 2, 3, padding="same", bias=False),
        nn.Tanh(), nn.AvgPool2D((2, 1)), nn.Sigmoid(), nn.Flatten(), nn.Dropout(0.25),
        nn.Dense(2 * 4 * 10, 5), nn.Softmax(),
    )  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_exact(tmp_path, dtype):
    model = every_layer_model().astype(dtype)
    path = tmp_path / "model.safetensors"
    classes = ["a", "b", "c", "d", "e"]
    model.save(path, input_shape=(3, 15, 8), classes=classes, metadata={"note": "hi"})
    loaded = nn.load(path)
    assert loaded.config() == model.config()
    assert loaded.input_shape == (3, 15, 8) and loaded.classes == classes
    assert loaded.metadata == {"note": "hi"}
    for (name, p), (name2, q) in zip(
        model.named_parameters(), loaded.named_parameters(), strict=True
    ):
        assert name == name2 and q.data.dtype == dtype
        np.testing.assert_array_equal(p.data, q.data)
    x = np.random.default_rng(0).standard_normal((2, 3, 15, 8)).astype(dtype)
    model.eval(), loaded.eval()
    np.testing.assert_array_equal(model.forward(x), loaded.forward(x))
    assert nn.Sequential.load(path).config() == model.config()


def test_save_checks_input_shape_and_classes(tmp_path):
    model = every_layer_model()
    with pytest.raises(ValueError, match="3 class names"):
        model.save(tmp_path / "m.safetensors", input_shape=(3, 15, 8), classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="input channels"):
        model.save(tmp_path / "m.safetensors", input_shape=(1, 15, 8))
    assert not list(tmp_path.iterdir())


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    every_layer_model().save(path)
    before = path.read_bytes()

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.numpy.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        every_layer_model().save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left


def test_pickle_payload_is_refused_and_never_run(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle code ran')",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"model": Boom()}))
    with pytest.raises(ValueError, match="not a valid safetensors"):
        nn.load(path)


def test_load_never_uses_pickle(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    every_layer_model().save(path)

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    nn.load(path)


def header_file(path, header: bytes, data: bytes = b""):
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x01\x02",
        struct.pack("<Q", 10**12) + b"{}",  # header length beyond the file
        struct.pack("<Q", 9) + b"{not json",
        struct.pack("<Q", 2) + b"[]",
    ],
    ids=["empty", "too-short", "huge-length", "bad-json", "not-an-object"],
)
def test_malformed_files_are_refused(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a valid safetensors"):
        nn.load(path)


def test_foreign_safetensors_and_broken_architectures_are_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(path))
    with pytest.raises(ValueError, match="not a convlens model"):
        nn.load(path)

    def with_architecture(architecture: str, tensors=None):
        meta = {"format": "convlens.sequential", "version": "1", "architecture": architecture}
        save_file(tensors or {}, str(path), metadata=meta)
        return path

    with pytest.raises(ValueError, match="malformed architecture"):
        nn.load(with_architecture("{oops"))
    with pytest.raises(ValueError, match="unknown layer type 'Lambda'"):
        nn.load(with_architecture(json.dumps([{"type": "Lambda", "config": {}}])))
    dense = json.dumps([{"type": "Dense", "config": {"in_features": 2, "out_features": 3}}])
    with pytest.raises(ValueError, match="missing"):
        nn.load(with_architecture(dense))
    wrong = {"0.weight": np.zeros((3, 3), np.float32), "0.bias": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(3, 3\).*\(3, 2\)"):
        nn.load(with_architecture(dense, wrong))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no model file"):
        nn.load("/nonexistent/model.safetensors")


def test_saved_files_get_ordinary_permissions(tmp_path):
    path = tmp_path / "model.safetensors"
    every_layer_model().save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
