"""After a batch split over threads, a dense layer's gradients are one product over the
whole batch (Dense.parameter_grads_of_pieces) instead of one per piece plus their sum: the
same numbers as one thread, nothing left behind in the replicas."""

from __future__ import annotations

import numpy as np
import pytest

import convlens.nn as nn
from convlens.nn import threads


@pytest.fixture
def split_over():
    before = threads.get_num_threads()
    yield threads.set_num_threads
    threads.set_num_threads(before)


def grads_after(model: nn.Sequential, x, y, input_grad: bool, backwards: int = 1):
    loss = nn.CrossEntropyLoss()
    model.zero_grad()
    for _ in range(backwards):
        loss.forward(model.forward(x), y)
        model.backward(loss.backward(), input_grad=input_grad)
    return [p.grad.copy() for p in model.parameters()]


@pytest.mark.parametrize("pieces", [2, 3])
@pytest.mark.parametrize("input_grad", [True, False])
def test_split_dense_gradients_equal_one_thread(split_over, pieces, input_grad):
    rng = np.random.default_rng(pieces)
    x = rng.standard_normal((11, 2, 6, 6))
    y = rng.integers(0, 3, 11)
    nn.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Dense(72, 16), nn.ReLU(), nn.Dense(16, 3, bias=False)
    ).astype(np.float64)
    split_over(1)
    expected = grads_after(model, x, y, input_grad, backwards=2)
    split_over(pieces)
    got = grads_after(model, x, y, input_grad, backwards=2)  # accumulates, as one thread does
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)
    assert model._twins  # the batch was split
    for twins in model._twins:
        for layer in twins:
            assert "_deferred" not in layer.__dict__
            assert not getattr(layer, "defer_parameter_grads", False)
            for p in layer.parameters():
                assert not p.grad.any()  # replicas of a dense layer never hold a gradient


def test_a_dense_first_layer_defers_too(split_over):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 2, 8)
    nn.manual_seed(1)
    model = nn.Sequential(nn.Dense(5, 4), nn.Tanh(), nn.Dense(4, 2)).astype(np.float64)
    split_over(1)
    expected = grads_after(model, x, y, input_grad=False)
    split_over(2)
    got = grads_after(model, x, y, input_grad=False)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)
