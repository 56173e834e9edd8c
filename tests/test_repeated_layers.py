"""One layer object at two positions of a Sequential.

A layer keeps what its backward needs from its last forward, so a ReLU instance used after
two convolutions (a common PyTorch habit) once handed the first position the second one's
mask: a wrong gradient, silently. A repeated layer without parameters now gets a replica of
its own; shared weights are refused by name, here and in ``from_torch``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_from_torch import compare

import convlens.nn as nn
from convlens.interop import from_torch
from convlens.nn import threads


@pytest.fixture
def split_over():
    before = threads.get_num_threads()
    yield threads.set_num_threads
    threads.set_num_threads(before)


def reusing_net(rng: np.random.Generator) -> tuple[torch.nn.Sequential, tuple[int, int, int]]:
    """A random torch CNN whose ReLU and max-pool modules are each one object used twice."""
    C, O1, O2 = (int(v) for v in rng.integers(1, 5, 3))
    k1, k2, pool = (int(v) for v in rng.integers(1, 4, 3))
    H = int(rng.integers(4, 9)) * pool * pool + 2 * (k1 + k2)
    relu, pooling = torch.nn.ReLU(), torch.nn.MaxPool2d(pool)
    convs = torch.nn.Conv2d(C, O1, k1), torch.nn.Conv2d(O1, O2, k2)
    module = torch.nn.Sequential(convs[0], relu, pooling, convs[1], relu, pooling)
    size = ((H - k1 + 1) // pool - k2 + 1) // pool
    module.extend([torch.nn.Flatten(), torch.nn.Linear(O2 * size * size, 3), relu])
    return module.double(), (C, H, H)


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("seed", range(4))
def test_reused_relu_and_pool_modules_give_pytorchs_gradients(seed, count, split_over):
    split_over(count)
    rng = np.random.default_rng(seed)
    module, shape = reusing_net(rng)
    model = from_torch(module, shape)
    assert len(model.layers) == len(module)  # every position, repeats included
    assert len({id(layer) for layer in model.layers}) == len(model.layers)
    compare(model, module, rng.standard_normal((8, *shape)), 1e-10)


@pytest.mark.parametrize("count", [1, 2])
def test_a_relu_instance_used_twice_trains_as_two(count, split_over):
    """Built in convlens: the same numbers as with a ReLU at each position."""
    split_over(count)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 2, 9, 9))
    y = rng.integers(0, 3, 8)

    def grads(shared: bool) -> list[np.ndarray]:
        nn.manual_seed(1)
        relu = nn.ReLU()
        second = relu if shared else nn.ReLU()
        model = nn.Sequential(
            nn.Conv2D(2, 3, 3), relu, nn.Conv2D(3, 3, 3), second, nn.Flatten(), nn.Dense(75, 3)
        ).astype(np.float64)
        loss = nn.CrossEntropyLoss()
        loss.forward(model.forward(x), y)
        model.backward(loss.backward())
        return [p.grad for p in model.parameters()]

    for ours, separate in zip(grads(shared=True), grads(shared=False), strict=True):
        np.testing.assert_array_equal(ours, separate)


def test_a_layer_appended_again_after_construction_gets_its_own_cache():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Dense(4, 4), relu, nn.Dense(4, 4)).astype(np.float64)
    model.layers.append(relu)
    twin = nn.Sequential(*model.layers[:3], nn.ReLU())
    x = np.random.default_rng(0).standard_normal((5, 4))
    y = model.forward(x)
    assert model.layers[3] is not relu and model.layers[1] is relu
    model.zero_grad()
    dx = model.backward(np.ones_like(y))
    first = [p.grad.copy() for p in model.parameters()]
    np.testing.assert_array_equal(twin.forward(x), y)
    twin.zero_grad()
    np.testing.assert_array_equal(twin.backward(np.ones_like(y)), dx)
    for p, expected in zip(twin.parameters(), first, strict=True):
        np.testing.assert_array_equal(p.grad, expected)


def test_a_nested_repeat_gets_a_replica_and_keeps_the_settings():
    pool = nn.MaxPool2D(2, stride=1)
    inner = nn.Sequential(nn.Conv2D(1, 2, 3), pool)
    model = nn.Sequential(inner, pool, nn.Flatten())
    repeat = model.layers[1]
    assert repeat is not pool and inner.layers[1] is pool
    assert (repeat.kernel_size, repeat.stride) == (pool.kernel_size, pool.stride)


def test_shared_weights_are_refused_naming_both_positions():
    conv = nn.Conv2D(1, 1, 3, padding="same")
    with pytest.raises(ValueError, match=r"layer 2 is the same Conv2D object as layer 0"):
        nn.Sequential(conv, nn.ReLU(), conv)
    block = nn.Sequential(nn.Dense(3, 3), nn.ReLU())
    with pytest.raises(ValueError, match=r"layer 1 is the same Sequential object as layer 0"):
        nn.Sequential(block, block)
    tied = nn.Dense(3, 3)
    tied.weight = block.layers[0].weight
    with pytest.raises(ValueError, match=r"layers 0\.0 and 1 hold the same Parameter \(weight\)"):
        nn.Sequential(block, tied)
    model = nn.Sequential(conv, nn.ReLU())
    model.layers.append(conv)
    with pytest.raises(ValueError, match="layer 2 is the same Conv2D object as layer 0"):
        model.forward(np.zeros((1, 1, 4, 4), np.float32))


def test_from_torch_refuses_a_module_with_weights_used_twice():
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    twice = torch.nn.Sequential(conv, torch.nn.Sequential(conv))
    message = r"layer '1\.0' \(Conv2d\) is the same module as layer '0'"
    with pytest.raises(ValueError, match=message):
        from_torch(twice, (1, 5, 5))
