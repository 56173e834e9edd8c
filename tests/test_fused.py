"""A Conv2D and the tiling MaxPool2D after it, run as one step by a Sequential
(`nn.fused.ConvMaxPool`): the same outputs and gradients as the two layers one by one."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import layers_one_by_one

import convlens.nn as nn
from convlens.nn.fused import ConvMaxPool
from convlens.nn.sequential import running_order


def random_pair(rng: np.random.Generator) -> tuple[nn.Conv2D, nn.MaxPool2D]:
    """A conv that gathers directly (C·kh·kw ≤ O) and a pool whose windows tile."""
    kernel = tuple(int(k) for k in rng.integers(1, 4, 2))
    channels = int(rng.integers(1, 3))
    filters = channels * kernel[0] * kernel[1] + int(rng.integers(0, 3))
    conv = nn.Conv2D(
        channels,
        filters,
        kernel,
        stride=tuple(int(s) for s in rng.integers(1, 3, 2)),
        padding=["valid", "same", 1][int(rng.integers(0, 3))],
        dilation=tuple(int(d) for d in rng.integers(1, 3, 2)),
        mode=["correlation", "convolution"][int(rng.integers(0, 2))],
        bias=bool(rng.random() < 0.8),
    )
    pool = nn.MaxPool2D(tuple(int(k) for k in rng.integers(1, 4, 2)))
    return conv, pool


def integer_valued(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Small integers in float64: every sum is exact whatever its order, and ties abound."""
    return rng.integers(-2, 3, shape).astype(np.float64)


@pytest.mark.parametrize("seed", range(30))
def test_conv_then_pool_as_one_step_equals_the_two_layers(seed):
    rng = np.random.default_rng(seed)
    conv, pool = random_pair(rng)
    assert ConvMaxPool.fits(conv, pool)
    conv.astype(np.float64)
    conv.weight.data = integer_valued(rng, conv.weight.data.shape)
    if conv.bias is not None:
        conv.bias.data = integer_valued(rng, conv.bias.data.shape)
    size = int(rng.integers(7, 16))
    x = integer_valued(rng, (int(rng.integers(1, 4)), conv.in_channels, size, size))

    y = pool.forward(conv.forward(x))
    dy = integer_valued(rng, y.shape)
    conv.zero_grad()
    dx = conv.backward(pool.backward(dy))
    grads = [p.grad.copy() for p in conv.parameters()]

    step = ConvMaxPool(conv, pool)
    np.testing.assert_array_equal(step.forward(x), y)
    conv.zero_grad()
    np.testing.assert_array_equal(step.backward(dy), dx)
    for p, expected in zip(conv.parameters(), grads, strict=True):
        np.testing.assert_array_equal(p.grad, expected)
    np.testing.assert_array_equal(step.input_gradient(dy), dx)
    conv.zero_grad()
    step.backward_parameters(dy)
    for p, expected in zip(conv.parameters(), grads, strict=True):
        np.testing.assert_array_equal(p.grad, expected)


@pytest.mark.parametrize("seed", range(6))
def test_a_sequential_fuses_the_pair_and_gives_the_layers_numbers(seed):
    """The MNIST net's pattern (conv, ReLU, pool, ...) through Sequential, on one thread and
    split over threads, against the layers run one by one as written."""
    rng = np.random.default_rng(seed)
    conv, pool = random_pair(rng)
    size = 12
    features = nn.Sequential(conv, nn.ReLU(), pool)
    shape = features.output_shape((conv.in_channels, size, size))
    model = nn.Sequential(conv, nn.ReLU(), pool, nn.Flatten(), nn.Dense(int(np.prod(shape)), 3))
    model.astype(np.float64)
    assert isinstance(running_order(model.layers)[0], ConvMaxPool)
    x = rng.standard_normal((16, conv.in_channels, size, size))
    dy = rng.standard_normal((16, 3))

    expected, expected_dx, expected_grads = layers_one_by_one(model, x, dy)

    for threads in (1, 2):
        before = nn.get_num_threads()
        nn.set_num_threads(threads)
        try:
            np.testing.assert_allclose(model.forward(x), expected, rtol=1e-12, atol=1e-12)
            model.zero_grad()
            dx = model.backward(dy)
        finally:
            nn.set_num_threads(before)
        np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-12)
        for p, grad in zip(model.parameters(), expected_grads, strict=True):
            np.testing.assert_allclose(p.grad, grad, rtol=1e-12, atol=1e-12)


def test_only_first_layer_like_convs_and_tiling_pools_are_fused():
    assert not ConvMaxPool.fits(nn.Conv2D(3, 10, 3), nn.MaxPool2D(2))  # 27 > 10 filters
    assert not ConvMaxPool.fits(nn.Conv2D(1, 16, 3), nn.MaxPool2D(2, 1))  # overlapping
    assert not ConvMaxPool.fits(nn.Conv2D(1, 16, 3), nn.MaxPool2D(2, padding=1))
    assert not ConvMaxPool.fits(nn.Conv2D(1, 16, 3), nn.AvgPool2D(2))
    assert ConvMaxPool.fits(nn.Conv2D(1, 16, 3), nn.MaxPool2D((2, 3)))


def test_nothing_stale_is_read_after_a_fused_step():
    conv, pool = nn.Conv2D(1, 9, 3), nn.MaxPool2D(2)
    step, x = ConvMaxPool(conv, pool), np.ones((1, 1, 8, 8))
    y = step.forward(x)
    with pytest.raises(RuntimeError, match="forward"):
        conv.backward(np.ones((1, 9, 6, 6)))  # the layers' own caches were cleared
    with pytest.raises(RuntimeError, match="forward"):
        pool.backward(y)
    conv.forward(x)  # the conv on its own: the fused step's state is now stale
    with pytest.raises(RuntimeError, match="forward"):
        step.backward(y)
    step.forward(x)
    with pytest.raises(ValueError, match=r"\(1, 9, 3, 3\)"):
        step.backward(np.ones((1, 9, 2, 3)))
