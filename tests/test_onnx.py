"""ONNX export, checked by running the file in onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from test_files import every_layer_model
from test_layers import random_conv, random_pool

import convlens.nn as nn
from convlens.interop import export_onnx
from convlens.models import mnist_net, tiny_vgg

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x.astype(np.float32)})[0]


def check(model: nn.Sequential, input_shape, tmp_path, batch: int = 3, seed: int = 0):
    path = tmp_path / "model.onnx"
    export_onnx(model.eval(), path, input_shape)
    x = np.random.default_rng(seed).standard_normal((batch, *input_shape)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(path, x), model.forward(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [tiny_vgg, mnist_net])
def test_presets(make, tmp_path):
    model = make()
    check(model, model.input_shape, tmp_path)


def test_every_layer_kind(tmp_path):
    check(every_layer_model(), (3, 15, 8), tmp_path)


@pytest.mark.parametrize("seed", range(15))
def test_random_convolutions_and_pools(seed, tmp_path):
    """Stride, every padding kind, dilation, anchors, both modes; overlapping padded pools."""
    rng = np.random.default_rng(seed)
    conv, x = random_conv(rng)
    check(nn.Sequential(conv), x.shape[1:], tmp_path, seed=seed)
    kind = nn.MaxPool2D if seed % 2 else nn.AvgPool2D
    pool, x = random_pool(rng, kind)
    check(nn.Sequential(pool), x.shape[1:], tmp_path, seed=seed)


def test_classes_and_dynamic_batch(tmp_path):
    model = mnist_net()
    model.classes = [str(k) for k in range(10)]
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    loaded = onnx.load(str(path))
    assert {p.key: p.value for p in loaded.metadata_props}["classes"].split("\n")[3] == "3"
    for batch in (1, 7):
        x = np.random.default_rng(batch).random((batch, 1, 28, 28)).astype(np.float32)
        assert run_onnx(path, x).shape == (batch, 10)


def test_missing_input_shape_is_explained(tmp_path):
    with pytest.raises(ValueError, match="input shape"):
        export_onnx(nn.Sequential(nn.ReLU()), tmp_path / "m.onnx")
