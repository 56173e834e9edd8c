"""Each way `nn.conv.correlate` gathers its input gives the reference loops' numbers: whole
padded rows where the gathered matrix is the bigger one, a direct gather where the output
is (one input channel, more filters than kernel taps, as a first layer often has), the
kernel row by row where the gathered matrix is large; and each way `nn.conv.weight_grad`
reads it: tap by tap in place at stride 1, by im2col else."""

from __future__ import annotations

import numpy as np
import pytest

import convlens.nn as nn
from convlens.nn import conv, reference


@pytest.mark.parametrize(
    ("channels", "filters", "kernel"),
    [
        (1, 16, 3),
        (1, 9, 3),
        (1, 32, 5),
        (2, 20, 3),
        (3, 10, 3),
        (16, 32, 3),
        (10, 10, 3),
        (32, 16, 3),
    ],
)
@pytest.mark.parametrize("padding", ["valid", "same", ((2, -1), (0, 1))])
@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), (1, (2, 1)), ((2, 1), 1)])
def test_forward_and_backward_match_the_loops(channels, filters, kernel, padding, stride, dilation):
    rng = np.random.default_rng(channels * 100 + filters)
    layer = nn.Conv2D(channels, filters, kernel, stride, padding, dilation).astype(np.float64)
    x = rng.standard_normal((3, channels, 13, 12))
    w, b = layer.weight.data, layer.bias.data
    args = (layer.stride, layer.padding2d, layer.dilation, layer.mode)
    y = layer.forward(x)
    np.testing.assert_allclose(y, reference.conv2d_forward(x, w, b, *args), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    ref_dx, ref_dw, ref_db = reference.conv2d_backward(dy, x, w, *args)
    for got, expected in ((dx, ref_dx), (layer.weight.grad, ref_dw), (layer.bias.grad, ref_db)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_the_kernel_row_by_row_gives_what_the_whole_kernel_gives(seed, monkeypatch):
    """Which of the two :func:`conv.correlate` takes depends on the size
    (``ROWS_MIN_BYTES``): on random stride-1 convolutions where rows could apply, both
    give the same numbers, forward and dL/dx."""
    rng = np.random.default_rng(seed)
    filters = int(rng.integers(2, 17))
    channels = int(rng.integers(filters, 3 * filters + 1))  # C·kw ≥ 3·O for a 3-wide kernel
    layer = nn.Conv2D(
        channels, filters, (int(rng.integers(2, 4)), 3),
        padding=str(rng.choice(["valid", "same", "full"])), dilation=int(rng.integers(1, 3)),
    ).astype(np.float64)  # fmt: skip
    x = rng.standard_normal((int(rng.integers(1, 4)), channels, *rng.integers(6, 15, 2)))
    results = []
    for rows_from in (0, 2**62):  # by rows whatever the size, then never
        monkeypatch.setattr(conv, "ROWS_MIN_BYTES", rows_from)
        y = layer.forward(x)
        results.append((y, layer.input_gradient(np.ones_like(y))))
    for by_rows, whole in zip(*results, strict=True):
        np.testing.assert_allclose(by_rows, whole, rtol=1e-12, atol=1e-12)
