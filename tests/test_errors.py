"""Bad hyperparameters and bad inputs fail early, naming the layer and the sizes involved."""

from __future__ import annotations

import numpy as np
import pytest

import convlens.nn as nn


def test_kernel_larger_than_padded_input():
    conv = nn.Conv2D(1, 1, 5, padding=1, dilation=2)
    with pytest.raises(ValueError, match=r"kernel 5x5 with dilation 2x2 spans 9 rows.*4x6.*6 rows"):
        conv.forward(np.zeros((1, 1, 4, 6), np.float32))
    with pytest.raises(ValueError, match=r"MaxPool2D.*kernel 3x3.*2x2"):
        nn.MaxPool2D(3).forward(np.zeros((1, 1, 2, 2)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(anchor=(3, 0)), r"anchor \(3, 0\) lies outside the 3x3 kernel"),
        (dict(anchor=(0, -1)), r"anchor"),
        (dict(stride=0), r"stride must be >= 1"),
        (dict(dilation=(1, 0)), r"dilation must be >= 1"),
        (dict(padding="half"), r"padding must be 'valid', 'same', 'full'"),
        (dict(padding=((1, 1), 2)), r"padding must be 'valid'.*got \(\(1, 1\), 2\)"),
        (dict(kernel_size=(2.7, 3)), r"kernel_size must be an int or a pair .* got \(2.7, 3\)"),
        (dict(mode="conv"), r"mode must be one of"),
    ],
)
def test_conv_hyperparameter_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nn.Conv2D(1, 1, **{"kernel_size": 3, **kwargs})


def test_channel_and_rank_mismatch_at_forward():
    conv = nn.Conv2D(3, 8, 3)
    with pytest.raises(
        ValueError, match=r"Conv2D\(3→8.*expected 3 input channels, got 4.*\(2, 4, 8, 8\)"
    ):
        conv.forward(np.zeros((2, 4, 8, 8), np.float32))
    with pytest.raises(
        ValueError, match=r"expected input of shape \(N, C, H, W\), got shape \(3, 8, 8\)"
    ):
        conv.forward(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Dense\(10→2\): expected 10 input features.*\(7,\)"):
        nn.Dense(10, 2).forward(np.zeros((4, 7)))
    with pytest.raises(ValueError, match="Flatten"):
        nn.Dense(10, 2).forward(np.zeros((4, 10, 1, 1)))


@pytest.mark.parametrize(
    "layer",
    [nn.Conv2D(1, 1, 3), nn.MaxPool2D(2), nn.AvgPool2D(2), nn.ReLU(), nn.Sigmoid(), nn.Tanh(),
     nn.Softmax(), nn.Flatten(), nn.Dense(2, 2), nn.Dropout(0.5)],
    ids=lambda layer: type(layer).__name__,
)  # fmt: skip
def test_backward_before_forward(layer):
    with pytest.raises(
        RuntimeError, match=rf"{type(layer).__name__}.*backward\(\) called before forward\(\)"
    ):
        layer.backward(np.zeros((1, 2)))


def test_gradient_of_the_wrong_shape():
    conv = nn.Conv2D(1, 2, 3)
    conv.forward(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"gradient of shape \(1, 2, 4, 4\).*\(1, 2, 3, 3\)"):
        conv.backward(np.zeros((1, 2, 4, 4), np.float32))


def test_max_pool_padding_that_leaves_a_window_of_only_padding():
    """A window of only −∞ padding would output −∞: refused, at construction for the first
    window, at the input size for the last one. An average pool's is just 0."""
    with pytest.raises(ValueError, match=r"MaxPool2D padding 3: 3 on the top >= kernel 3"):
        nn.MaxPool2D(3, padding=3)
    with pytest.raises(ValueError, match=r"MaxPool2D padding \(0, 2\): 2 on the left >= kernel 2"):
        nn.MaxPool2D((3, 2), padding=(0, 2))
    pool = nn.MaxPool2D(2, stride=3, padding=((0, 2), (0, 0)))
    assert pool.output_shape((1, 4, 2)) == (1, 2, 1)  # the last window, rows 3 and 4, holds row 3
    with pytest.raises(ValueError, match=r"input 3x2 the last window of rows would hold only"):
        pool.output_shape((1, 3, 2))  # rows 3 and 4 are both padding
    average = nn.AvgPool2D(2, stride=3, padding=((0, 2), (0, 0)))
    assert average.forward(np.ones((1, 1, 3, 2)))[0, 0, 1, 0] == 0.0


def test_gradcheck_demands_float64():
    with pytest.raises(ValueError, match=r"float64.*\['input', 'weight', 'bias'\]"):
        nn.gradcheck(nn.Dense(2, 2), np.zeros((1, 2), np.float32))
