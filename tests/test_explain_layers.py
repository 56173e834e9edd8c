"""Every layer's explanation of one value reproduces what forward and backward computed."""

from __future__ import annotations

import numpy as np
import pytest
from test_files import every_layer_model
from test_layers import random_conv, random_pool

import convlens.nn as nn


def check_explanations(layer: nn.Layer, x: np.ndarray, rng: np.random.Generator, picks: int = 6):
    """For a few random output and input positions: explain() == forward, explain_gradient()
    == backward, and each explanation's own arithmetic adds up."""
    layer.eval()
    y = layer.forward(x[None])[0]
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy[None])[0]
    for _ in range(picks):
        out = tuple(int(rng.integers(n)) for n in y.shape)
        info = layer.explain(x, out)
        assert info["operation"] == layer.operation
        np.testing.assert_allclose(info["value"], y[out], rtol=1e-10, atol=1e-12)
        if "products" in info:
            total = np.sum(info["products"]) + info.get("bias", 0.0)
            np.testing.assert_allclose(total, info["value"], rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(
                np.array(info["inputs"]) * np.array(info.get("kernel", info.get("weights"))),
                info["products"],
            )
        inp = tuple(int(rng.integers(n)) for n in x.shape)
        grad = layer.explain_gradient(x, dy, inp)
        np.testing.assert_allclose(grad["value"], dx[inp], rtol=1e-10, atol=1e-12)
        if "products" in grad:
            np.testing.assert_allclose(
                np.sum(grad["products"]), grad["value"], rtol=1e-10, atol=1e-12
            )


@pytest.mark.parametrize("seed", range(20))
def test_conv_explanations(seed):
    rng = np.random.default_rng(seed)
    layer, x = random_conv(rng)
    check_explanations(layer.astype(np.float64), x[0], rng)


@pytest.mark.parametrize("kind", [nn.MaxPool2D, nn.AvgPool2D])
@pytest.mark.parametrize("seed", range(10))
def test_pool_explanations(kind, seed):
    rng = np.random.default_rng(seed)
    layer, x = random_pool(rng, kind)
    check_explanations(layer, x[0], rng)


def test_every_layer_of_a_model_explains_itself():
    rng = np.random.default_rng(0)
    model = every_layer_model().astype(np.float64).eval()
    x = rng.standard_normal((3, 15, 8))
    for layer in model:
        check_explanations(layer, x, rng)
        x = layer.forward(x[None])[0]


def test_convolution_gradient_uses_the_rotated_kernel():
    layer = nn.Conv2D(1, 1, (2, 3), mode="correlation").astype(np.float64)
    layer.weight.data = np.arange(6.0).reshape(1, 1, 2, 3)
    x = np.zeros((1, 4, 5))
    info = layer.explain_gradient(x, np.ones((1, 3, 3)), (0, 2, 2))
    np.testing.assert_array_equal(info["rotated_kernel"][0], [[5, 4, 3], [2, 1, 0]])


def test_max_pool_gradient_names_the_windows_it_won():
    x = np.zeros((1, 3, 3))
    x[0, 1, 1] = 5.0
    info = nn.MaxPool2D(2, 1).explain_gradient(x, np.array([[[1.0, 2.0], [3.0, 4.0]]]), (0, 1, 1))
    assert info["windows"] == [[0, 0], [0, 1], [1, 0], [1, 1]] and info["value"] == 10.0


@pytest.mark.parametrize("seed", range(10))
def test_conv_channel_shares_add_up_to_the_output_map(seed):
    rng = np.random.default_rng(seed)
    layer, x = random_conv(rng)
    layer.astype(np.float64)
    y = layer.forward(x[:1])[0]
    o = int(rng.integers(y.shape[0]))
    info = layer.explain(x[0], (o, 0, 0))
    bias = 0.0 if layer.bias is None else layer.bias.data[o]
    np.testing.assert_allclose(np.sum(info["channel_shares"], axis=0) + bias, y[o], atol=1e-12)
    np.testing.assert_allclose(np.array(info["channel_shares"])[:, 0, 0], info["channel_sums"])
