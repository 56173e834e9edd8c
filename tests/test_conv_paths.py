"""Each way `nn.conv.correlate` gathers its input gives the reference loops' numbers: whole
padded rows where the gathered matrix is the bigger one, a direct gather where the output
is (one input channel, more filters than kernel taps, as a first layer often has); and
each way `nn.conv.weight_grad` reads it: tap by tap in place at stride 1, by im2col else."""

from __future__ import annotations

import numpy as np
import pytest

import convlens.nn as nn
from convlens.nn import reference


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
