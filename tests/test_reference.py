"""The fast layers equal the literal loops of convlens.nn.reference on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from test_layers import random_conv, random_pool

import convlens.nn as nn
from convlens.nn import reference

TOL = dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(25))
def test_conv2d_fast_equals_loops(seed):
    rng = np.random.default_rng(seed)
    layer, x = random_conv(rng)
    layer.astype(np.float64)
    w, b = layer.weight.data, None if layer.bias is None else layer.bias.data
    args = (layer.stride, layer.padding2d, layer.dilation, layer.mode)
    y = layer.forward(x)
    np.testing.assert_allclose(y, reference.conv2d_forward(x, w, b, *args), **TOL)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    ref_dx, ref_dw, ref_db = reference.conv2d_backward(dy, x, w, *args)
    np.testing.assert_allclose(dx, ref_dx, **TOL)
    np.testing.assert_allclose(layer.weight.grad, ref_dw, **TOL)
    if b is not None:
        np.testing.assert_allclose(layer.bias.grad, ref_db, **TOL)


def all_anchors_and_modes():
    for kernel in [(1, 1), (2, 2), (3, 3), (2, 3), (4, 1), (3, 5)]:
        for ay in range(kernel[0]):
            for ax in range(kernel[1]):
                for mode in ("correlation", "convolution"):
                    yield kernel, (ay, ax), mode


@pytest.mark.parametrize(("kernel", "anchor", "mode"), list(all_anchors_and_modes()))
def test_same_padding_puts_the_anchor_on_the_output_pixel(kernel, anchor, mode):
    """``"same"`` equals the anchor's definition (no padding arithmetic) for every anchor."""
    rng = np.random.default_rng(hash((kernel, anchor, mode)) % 2**32)
    for stride, dilation in [((1, 1), (1, 1)), ((2, 3), (1, 2)), ((3, 2), (2, 1))]:
        layer = nn.Conv2D(2, 2, kernel, stride, "same", dilation, anchor, mode).astype(np.float64)
        x = rng.standard_normal((2, 2, int(rng.integers(1, 9)), int(rng.integers(1, 9))))
        y = layer.forward(x)
        expected = reference.conv2d_anchored_same(
            x, layer.weight.data, layer.bias.data, stride, dilation, anchor, mode
        )
        assert y.shape[2:] == (-(-x.shape[2] // stride[0]), -(-x.shape[3] // stride[1]))
        np.testing.assert_allclose(y, expected, **TOL)


def test_anchor_changes_only_same_padding():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 7, 7))
    for padding in ["valid", "full", 2, ((1, 0), (2, 1))]:
        outputs = []
        for anchor in [(0, 0), (1, 2), (2, 1)]:
            layer = nn.Conv2D(1, 1, 3, padding=padding, anchor=anchor, rng=np.random.default_rng(1))
            outputs.append(layer.astype(np.float64).forward(x))
        for other in outputs[1:]:
            np.testing.assert_array_equal(outputs[0], other)


def test_convolution_mode_is_correlation_with_the_rotated_kernel():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 8, 6))
    conv = nn.Conv2D(3, 2, (3, 2), 2, "same", 2, mode="convolution").astype(np.float64)
    corr = nn.Conv2D(3, 2, (3, 2), 2, conv.padding2d, 2).astype(np.float64)
    corr.weight.data = conv.weight.data[:, :, ::-1, ::-1].copy()
    corr.bias.data = conv.bias.data
    np.testing.assert_allclose(conv.forward(x), corr.forward(x), **TOL)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pools_fast_equal_loops(kind, seed):
    rng = np.random.default_rng(seed)
    layer, x = random_pool(rng, nn.MaxPool2D if kind == "max" else nn.AvgPool2D)
    if seed % 2:
        x = rng.integers(0, 3, x.shape).astype(np.float64)  # ties
    assert_pool_equals_loops(layer, x, rng)


def assert_pool_equals_loops(layer: nn.Layer, x: np.ndarray, rng: np.random.Generator) -> None:
    """A pool's forward, argmax mask (max) and backward for a random δ equal the loops'."""
    args = (layer.kernel_size, layer.stride, layer.padding2d)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    if isinstance(layer, nn.MaxPool2D):
        ref_y, ref_argmax = reference.maxpool2d_forward(x, *args)
        np.testing.assert_array_equal(layer.argmax, ref_argmax)
        ref_dx = reference.maxpool2d_backward(dy, x.shape, ref_argmax, *args)
    else:
        ref_y = reference.avgpool2d_forward(x, *args)
        ref_dx = reference.avgpool2d_backward(dy, x.shape, *args)
    np.testing.assert_allclose(y, ref_y, **TOL)
    np.testing.assert_allclose(dx, ref_dx, **TOL)


def test_overlapping_max_pool_windows_accumulate():
    """One pixel winning four overlapping windows receives all four gradients."""
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0
    layer = nn.MaxPool2D(2, stride=1)
    layer.forward(x)
    dx = layer.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    assert dx[0, 0, 1, 1] == 10.0
    assert dx.sum() == 10.0
