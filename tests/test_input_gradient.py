"""`Layer.input_gradient`: backward's dL/dx alone, with every parameter gradient left as it
was — what the explainer's backward view runs for each image."""

from __future__ import annotations

import numpy as np
import pytest

import convlens.nn as nn
from convlens.explain.trace import backward_all, forward_all
from convlens.models import mnist_net, tiny_vgg
from convlens.nn import threads


def random_layer(rng: np.random.Generator) -> tuple[nn.Layer, tuple[int, ...]]:
    if rng.random() < 0.5:
        c, o, k = (int(v) for v in rng.integers(1, 6, 3))
        layer = nn.Conv2D(
            c, o, k, stride=int(rng.integers(1, 3)), padding=str(rng.choice(["valid", "same"])),
            dilation=int(rng.integers(1, 3)), mode=str(rng.choice(nn.conv.MODES)),
        )  # fmt: skip
        return layer, (int(rng.integers(1, 5)), c, 9, 8)
    i, o = (int(v) for v in rng.integers(1, 20, 2))
    return nn.Dense(i, o), (int(rng.integers(1, 5)), i)


@pytest.mark.parametrize("seed", range(12))
def test_input_gradient_is_backwards_dx_and_leaves_grads_alone(seed):
    rng = np.random.default_rng(seed)
    layer, shape = random_layer(rng)
    layer = layer.astype(np.float64)
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(layer.forward(x).shape)
    for p in layer.parameters():
        p.grad[...] = rng.standard_normal(p.grad.shape)
    before = [p.grad.copy() for p in layer.parameters()]
    dx = layer.input_gradient(dy)
    for p, grad in zip(layer.parameters(), before, strict=True):
        np.testing.assert_array_equal(p.grad, grad)
    np.testing.assert_array_equal(dx, layer.backward(dy))


@pytest.mark.parametrize("count", [1, 2])
def test_a_sequential_split_or_not_gives_backwards_dx(count):
    before = threads.get_num_threads()
    threads.set_num_threads(count)
    try:
        model = tiny_vgg()
        x = np.random.default_rng(0).standard_normal((8, 3, 64, 64)).astype(np.float32)
        dy = np.random.default_rng(1).standard_normal(model.forward(x).shape).astype(np.float32)
        dx = model.input_gradient(dy)
        assert all(not p.grad.any() for p in model.parameters())
        np.testing.assert_array_equal(dx, model.backward(dy))
    finally:
        threads.set_num_threads(before)


def test_the_explainers_backward_leaves_parameter_gradients_alone():
    model = mnist_net()
    for p in model.parameters():
        p.grad[...] = 0.5
    image = np.random.default_rng(2).random((1, 28, 28)).astype(np.float32)
    gradients = backward_all(model, forward_all(model, image), target=3)
    assert all((p.grad == 0.5).all() for p in model.parameters())
    assert gradients[0].shape == (1, 28, 28) and np.abs(gradients[0]).sum() > 0
