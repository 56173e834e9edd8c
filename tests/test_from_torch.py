"""from_torch reads a torch.nn.Sequential: same forward, same gradients, same weights back.

``TORCH_MODELS`` are the small CNNs a student might train (stride 2, ``padding="same"``,
dilation, average pools, a dense head, with and without a final softmax); the ONNX import
tests export the very same modules.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close
from test_files import every_layer_model
from test_layers import random_conv, random_pool

import convlens.nn as nn
from convlens.interop import from_torch, to_torch
from convlens.models import mnist_net, tiny_vgg

T = torch.nn


def stride_two():
    return T.Sequential(
        T.Conv2d(1, 4, 3, stride=2, padding=1), T.ReLU(), T.Conv2d(4, 6, 3, stride=2), T.ReLU(),
        T.Flatten(), T.Linear(6 * 6 * 6, 10),
    )  # fmt: skip


def same_padding():
    return T.Sequential(
        T.Conv2d(3, 4, 3, padding="same"), T.Tanh(), T.Conv2d(4, 4, (2, 4), padding="same"),
        T.Sigmoid(), T.MaxPool2d(2), T.Flatten(), T.Linear(4 * 8 * 8, 5), T.Softmax(dim=-1),
    )  # fmt: skip


def dilation():
    return T.Sequential(
        T.Conv2d(2, 3, 3, dilation=2, padding=2), T.ReLU(),
        T.Conv2d(3, 3, (3, 2), dilation=(2, 3), padding=(1, 2)), T.ReLU(),
        T.MaxPool2d(3, stride=2, padding=1), T.Flatten(), T.Linear(3 * 9 * 10, 4),
    )  # fmt: skip


def average_pools():
    return T.Sequential(
        T.Conv2d(1, 3, 5), T.ReLU(), T.AvgPool2d(2), T.AvgPool2d(3, stride=1, padding=1),
        T.Flatten(), T.Linear(3 * 12 * 12, 16), T.ReLU(), T.Dropout(0.3), T.Linear(16, 10),
        T.Softmax(dim=1),
    )  # fmt: skip


def nested_head():
    """Nested Sequentials, a global average pool, Identity, bias-free layers."""
    return T.Sequential(
        T.Sequential(T.Conv2d(3, 8, 3, padding=1, bias=False), T.ReLU()),
        T.Sequential(T.Conv2d(8, 8, 3, stride=2), T.Tanh(), T.Identity()),
        T.AdaptiveAvgPool2d(1), T.Flatten(),
        T.Sequential(T.Linear(8, 8, bias=False), T.ReLU(), T.Linear(8, 3)),
    )  # fmt: skip


def pads():
    """Padding modules in front of the layers they pad: zeros (also cropping) and −∞."""
    return T.Sequential(
        T.ZeroPad2d((1, 0, 2, 1)), T.Conv2d(1, 3, 3, padding=1), T.ReLU(),
        T.ConstantPad2d((0, 1, 1, 0), -float("inf")), T.MaxPool2d(2), T.ZeroPad2d(1),
        T.AvgPool2d(2), T.ZeroPad2d((-1, 0, 0, -1)), T.Conv2d(3, 2, 2), T.Flatten(),
        T.Linear(2 * 5 * 4, 3),
    )  # fmt: skip


#: name → (module factory, input shape)
TORCH_MODELS = {
    "pads": (pads, (1, 20, 20)),
    "stride-2": (stride_two, (1, 28, 28)),
    "same": (same_padding, (3, 16, 16)),
    "dilation": (dilation, (2, 20, 18)),
    "avg-pool-dense-head": (average_pools, (1, 28, 28)),
    "nested-global-pool": (nested_head, (3, 13, 13)),
}


def make(name: str, dtype=torch.float64):
    factory, shape = TORCH_MODELS[name]
    torch.manual_seed(sum(map(ord, name)))
    return factory().to(dtype).eval(), shape


def compare(model: nn.Sequential, module, x: np.ndarray, tol: float) -> None:
    """Forward, dL/dx and every parameter's gradient, for a random upstream gradient."""
    y = model.forward(x)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    model.zero_grad()
    dx = model.backward(dy)
    x_t = torch.tensor(x, requires_grad=True)
    y_t = module(x_t)
    y_t.backward(torch.tensor(dy))
    assert_close(y, y_t, tol, "forward")
    assert_close(dx, x_t.grad, tol, "dL/dx")
    ours = [p for _, p in model.named_parameters()]
    theirs = list(module.parameters())
    assert len(ours) == len(theirs)
    for p, p_t in zip(ours, theirs, strict=True):
        assert_close(p.grad, p_t.grad, tol, p.name)


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_forward_and_backward_equal_pytorch(name):
    module, shape = make(name)
    model = from_torch(module, shape)
    assert model.input_shape == shape and not model.training
    assert all(p.data.dtype == np.float64 for p in model.parameters())
    x = np.random.default_rng(0).standard_normal((3, *shape))
    compare(model, module, x, 1e-10)


def test_float32_stays_float32():
    module, shape = make("stride-2", torch.float32)
    model = from_torch(module, shape, classes=[str(k) for k in range(10)])
    assert {p.data.dtype for p in model.parameters()} == {np.dtype(np.float32)}
    assert model.classes[3] == "3"
    x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    compare(model, module, x, 1e-5)


def test_layers_and_settings_are_read_as_written():
    model = from_torch(make("same")[0], (3, 16, 16))
    conv, even = model.layers[0], model.layers[2]
    assert conv.config()["padding"] == "same"  # odd kernel: the same split as convlens's
    assert even.padding2d == ((0, 1), (1, 2))  # PyTorch's split for (2, 4): ⌊total/2⌋ first
    nested = from_torch(make("nested-global-pool")[0], (3, 13, 13))
    kinds = [type(layer).__name__ for layer in nested.layers]
    assert kinds == ["Conv2D", "ReLU", "Conv2D", "Tanh", "AvgPool2D", "Flatten", "Dense",
                     "ReLU", "Dense"]  # fmt: skip
    assert nested.layers[4].kernel_size == (6, 6)
    assert from_torch(make("stride-2")[0].train(), (1, 28, 28)).training


@pytest.mark.parametrize(
    "make_model",
    [every_layer_model, tiny_vgg, mnist_net],
    ids=["every-layer", "tiny-vgg", "mnist-net"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_through_pytorch_is_exact(make_model, dtype):
    """from_torch(to_torch(m)): the same layers and settings, bit-identical weights and outputs
    (convolution mode, anchors and uneven padding included)."""
    model = make_model().astype(dtype).eval()
    shape = model.input_shape or (3, 15, 8)
    back = from_torch(to_torch(model).eval(), shape)
    assert back.config() == model.config()
    for (name, p), (_, q) in zip(model.named_parameters(), back.named_parameters(), strict=True):
        assert q.data.dtype == dtype, name
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(dtype)
    np.testing.assert_array_equal(back.forward(x), model.forward(x))


@pytest.mark.parametrize("seed", range(12))
def test_round_trip_of_random_convolutions_and_pools(seed):
    rng = np.random.default_rng(seed)
    conv, x = random_conv(rng)
    pool, _ = random_pool(rng, nn.MaxPool2D if seed % 2 else nn.AvgPool2D)
    for layer in (conv, pool):
        model = nn.Sequential(layer).eval()
        shape = x.shape[1:] if layer is conv else (2, *(k + 4 for k in layer.kernel_size))
        back = from_torch(to_torch(model), shape)
        assert back.config() == model.config()
        if layer is conv:
            np.testing.assert_array_equal(back.forward(x), model.forward(x))


def test_a_twin_changed_in_pytorch_is_read_from_its_settings_not_its_hint():
    """The twin's convlens settings are used only while they describe its arithmetic."""
    model = nn.Sequential(nn.Conv2D(1, 2, 3, padding="same"))
    twin = to_torch(model)
    twin[0].padding = (0, 0)
    back = from_torch(twin, (1, 5, 5))
    assert back.layers[0].padding2d == ((0, 0), (0, 0))
    assert back.output_shape((1, 5, 5)) == (2, 3, 3)


def test_the_twin_trains_in_pytorch_and_comes_back():
    """The way up and back: train the twin a step in PyTorch, read the new weights."""
    model = mnist_net().eval()
    twin = to_torch(model)
    x = torch.rand(4, 1, 28, 28)
    loss = torch.nn.functional.cross_entropy(twin(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    torch.optim.SGD(twin.parameters(), lr=0.1).step()
    back = from_torch(twin.eval(), (1, 28, 28))
    for p, p_t in zip(back.parameters(), twin.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, p_t.detach().numpy())
    assert not np.array_equal(back.layers[0].weight.data, model.layers[0].weight.data)


class Custom(torch.nn.Module):
    def forward(self, x):
        return x * 2


class Overridden(torch.nn.Sequential):
    def forward(self, x):
        return super().forward(x) + 1


REFUSED = {
    "BatchNorm2d": (T.Sequential(T.Conv2d(1, 2, 3), T.BatchNorm2d(2)), "'1' (BatchNorm2d)"),
    "grouped": (T.Sequential(T.Conv2d(2, 2, 3, groups=2)), "groups=2"),
    "reflect": (T.Sequential(T.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")), "reflect"),
    "custom": (T.Sequential(T.Sequential(T.ReLU(), Custom())), "'0.1' (Custom)"),
    "ceil-mode": (T.Sequential(T.MaxPool2d(2, ceil_mode=True)), "ceil_mode"),
    "exclude-pad": (T.Sequential(T.AvgPool2d(3, 1, 1, count_include_pad=False)), "count_incl"),
    "divisor": (T.Sequential(T.AvgPool2d(2, divisor_override=3)), "divisor_override"),
    "dilated-pool": (T.Sequential(T.MaxPool2d(2, dilation=2)), "dilation"),
    "softmax-channels": (T.Sequential(T.Softmax(dim=1)), "dim=1"),
    "flatten-batch": (T.Sequential(T.Flatten(0)), "start_dim=0"),
    "linear-size": (T.Sequential(T.Flatten(), T.Linear(10, 2)), "'1' (Linear)"),
    "adaptive-uneven": (T.Sequential(T.AdaptiveAvgPool2d(2)), "whole"),
    "half": (T.Sequential(T.Conv2d(1, 1, 3).half()), "float16"),
    "Dropout2d": (T.Sequential(T.Dropout2d()), "'0' (Dropout2d)"),
    "LogSoftmax": (T.Sequential(T.Flatten(), T.LogSoftmax(dim=1)), "LogSoftmax"),
    "pad-at-the-end": (T.Sequential(T.ZeroPad2d(1)), "'0' (ZeroPad2d) ends the network"),
    "pad-before-relu": (T.Sequential(T.ZeroPad2d(1), T.ReLU()), "'1' (ReLU): it follows a"),
    "two-pads": (T.Sequential(T.ZeroPad2d(1), T.ZeroPad2d(1)), "right before a Conv2d"),
    "zeros-before-max": (T.Sequential(T.ZeroPad2d(1), T.MaxPool2d(2)), "does not continue"),
    "twos-before-conv": (T.Sequential(T.ConstantPad2d(1, 2.0), T.Conv2d(1, 1, 3)), "of 2.0"),
    "crop-then-pad": (T.Sequential(T.ZeroPad2d(-1), T.Conv2d(1, 1, 3, padding=1)), "cropped"),
    "not-sequential": (Custom(), "needs a torch.nn.Sequential, got Custom"),
    "overridden": (Overridden(T.ReLU()), "got Overridden"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_unsupported_modules_are_refused_by_name_in_one_line(case):
    module, expected = REFUSED[case]
    with pytest.raises(ValueError) as caught:
        from_torch(module, (1, 7, 7))
    message = str(caught.value)
    assert expected in message and "\n" not in message, message


@pytest.mark.parametrize("seed", range(12))
def test_a_padding_module_becomes_the_next_layers_padding(seed):
    """Random pads (cropping too) before a random convolution or pool: the same numbers as
    PyTorch, forward and backward, as one convlens layer."""
    rng = np.random.default_rng(seed)
    sides = [int(v) for v in rng.integers(-1, 3, 4)]  # left, right, top, bottom
    kind = ["conv", "max", "avg"][seed % 3]
    k, own = int(rng.integers(1, 4)), int(rng.integers(0, 2))
    own = min(own, k // 2)  # PyTorch pools pad at most half the kernel
    if any(s < 0 for s in sides):
        own = 0  # a side cropped by the pad is not padded by the layer
    if kind == "max":  # a window of −∞ alone has no maximum: convlens refuses it
        sides = [min(s, k - 1 - own) for s in sides]
    layer = {
        "conv": lambda: T.Conv2d(2, 3, k, padding=own),
        "max": lambda: T.MaxPool2d(k, stride=1, padding=own),
        "avg": lambda: T.AvgPool2d(k, stride=1, padding=own),
    }[kind]()
    fill = -float("inf") if kind == "max" else 0.0
    torch.manual_seed(seed)
    module = T.Sequential(T.ConstantPad2d(tuple(sides), fill), layer).double().eval()
    model = from_torch(module, (2, 9, 8))
    assert len(model.layers) == 1
    x = rng.standard_normal((2, 2, 9, 8))
    compare(model, module, x, 1e-10)


@pytest.mark.parametrize("shape", [(1, 28), (0, 2, 2), (1.5, 2, 2), "abc", None])
def test_input_shape_is_checked(shape):
    with pytest.raises(ValueError, match="input_shape must be"):
        from_torch(T.Sequential(T.ReLU()), shape)


def test_docstring_examples_run():
    import doctest

    from convlens.interop import torch as module

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(module, "convlens.interop.torch"):
        runner.run(test)
    assert runner.failures == 0 and runner.tries >= 4
