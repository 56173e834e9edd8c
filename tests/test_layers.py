"""Every layer against PyTorch autograd and finite differences, over random configurations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import check_layer

import convlens.nn as nn
from convlens.nn.conv import resolve_padding

DTYPES = [np.float64, np.float32]
CONFIGS = range(30)  # random configurations per layer and dtype


def random_conv(rng: np.random.Generator) -> tuple[nn.Conv2D, np.ndarray]:
    """A Conv2D with random kernel, stride, dilation, padding kind, anchor and mode, and an
    input just large enough (plus a random margin) for at least one output."""
    kernel = tuple(int(k) for k in rng.integers(1, 6, 2))
    stride = tuple(int(s) for s in rng.integers(1, 4, 2))
    dilation = tuple(int(d) for d in rng.integers(1, 4, 2))
    anchor = (int(rng.integers(kernel[0])), int(rng.integers(kernel[1])))
    mode = str(rng.choice(["correlation", "convolution"]))
    padding = [
        "valid",
        "same",
        "full",
        int(rng.integers(0, 4)),
        tuple(int(p) for p in rng.integers(0, 4, 2)),
        tuple(tuple(int(p) for p in rng.integers(0, 4, 2)) for _ in range(2)),
    ][rng.integers(6)]
    (t, b), (l, r) = resolve_padding(padding, kernel, dilation, anchor, mode)
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    H = max(1, span[0] - t - b) + int(rng.integers(0, 7))
    W = max(1, span[1] - l - r) + int(rng.integers(0, 7))
    C, O, N = (int(v) for v in rng.integers(1, 4, 3))
    layer = nn.Conv2D(
        C, O, kernel, stride, padding, dilation, anchor, mode, bool(rng.random() < 0.8)
    )
    return layer, rng.standard_normal((N, C, H, W))


def torch_conv(layer: nn.Conv2D):
    (t, b), (l, r) = layer.padding2d

    def run(x, weight, bias=None):
        if layer.mode == "convolution":
            weight = weight.flip(-2, -1)
        return F.conv2d(F.pad(x, (l, r, t, b)), weight, bias, layer.stride, 0, layer.dilation)

    return run


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", CONFIGS)
def test_conv2d(seed, dtype):
    layer, x = random_conv(np.random.default_rng(seed))
    check_layer(layer, torch_conv(layer), x, dtype, seed=seed)


@pytest.mark.parametrize("seed", range(10))
def test_conv2d_symmetric_padding_matches_torch_own_padding(seed):
    """Where PyTorch pads by itself (symmetric ints), let it: no padding code of ours involved."""
    rng = np.random.default_rng(seed)
    k, s, d, p = (int(rng.integers(low, high)) for low, high in [(1, 6), (1, 4), (1, 3), (0, 3)])
    layer = nn.Conv2D(2, 3, k, s, p, d)
    x = rng.standard_normal((2, 2, d * (k - 1) + 1 + int(rng.integers(0, 5)), 9))
    check_layer(layer, lambda x, weight, bias: F.conv2d(x, weight, bias, s, p, d), x, seed=seed)


@pytest.mark.parametrize("seed", range(10))
def test_conv2d_same_matches_torch_same_for_odd_kernels(seed):
    rng = np.random.default_rng(seed)
    k, d = int(rng.choice([1, 3, 5])), int(rng.integers(1, 4))
    layer = nn.Conv2D(2, 2, k, padding="same", dilation=d)
    x = rng.standard_normal((1, 2, int(rng.integers(1, 9)), int(rng.integers(1, 9))))
    y = check_layer(
        layer, lambda x, weight, bias: F.conv2d(x, weight, bias, 1, "same", d), x, seed=seed
    )
    assert y.shape[2:] == x.shape[2:]


def random_pool(rng: np.random.Generator, kind: type) -> tuple[nn.Layer, np.ndarray]:
    kernel = tuple(int(k) for k in rng.integers(1, 6, 2))
    stride = tuple(int(s) for s in rng.integers(1, 4, 2))  # often < kernel: overlapping windows
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    H, W = (
        max(1, k - 2 * p) + int(rng.integers(0, 7)) for k, p in zip(kernel, padding, strict=True)
    )
    layer = kind(kernel, None if rng.random() < 0.2 else stride, padding)
    return layer, rng.standard_normal((int(rng.integers(1, 4)), int(rng.integers(1, 4)), H, W))


POOLS = {nn.MaxPool2D: F.max_pool2d, nn.AvgPool2D: F.avg_pool2d}


def torch_pool(layer: nn.Layer):
    return lambda x: POOLS[type(layer)](x, layer.kernel_size, layer.stride, layer.padding)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", CONFIGS)
@pytest.mark.parametrize("kind", POOLS, ids=lambda kind: kind.__name__)
def test_pools(kind, seed, dtype):
    layer, x = random_pool(np.random.default_rng(seed), kind)
    check_layer(layer, torch_pool(layer), x, dtype, seed=seed)


@pytest.mark.parametrize("seed", range(10))
def test_maxpool2d_ties_go_to_the_first_maximum_like_torch(seed):
    rng = np.random.default_rng(seed)
    layer, x = random_pool(rng, nn.MaxPool2D)
    x = rng.integers(0, 3, x.shape).astype(np.float64)  # many equal values in every window
    # finite differences are meaningless at ties; compare with torch's routing only
    layer.astype(np.float64)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    x_t = torch.tensor(x, requires_grad=True)
    torch_pool(layer)(x_t).backward(torch.tensor(dy))
    # overlapping windows may add in another order: equal up to rounding, routed identically
    np.testing.assert_allclose(layer.backward(dy), x_t.grad.numpy(), rtol=0, atol=1e-12)


def random_tensor(rng: np.random.Generator, scale: float = 2.0) -> np.ndarray:
    shape = tuple(int(s) for s in rng.integers(1, 6, int(rng.integers(2, 5))))
    x = scale * rng.standard_normal(shape)
    x[np.abs(x) < 1e-3] += 1e-2  # keep finite differences off ReLU's kink
    return x


ACTIVATIONS = [
    (nn.ReLU, torch.relu),
    (nn.Sigmoid, torch.sigmoid),
    (nn.Tanh, torch.tanh),
    (nn.Softmax, lambda x: torch.softmax(x, dim=-1)),
]


@pytest.mark.parametrize("seed", range(5))
def test_relu_backward_is_the_same_in_eval_mode(seed):
    """Eval mode keeps y instead of the mask x > 0; zeros (the kink) included."""
    rng = np.random.default_rng(seed)
    x = np.round(random_tensor(rng), 0)  # many exact zeros
    dy = rng.standard_normal(x.shape)
    training, inference = nn.ReLU(), nn.ReLU().eval()
    np.testing.assert_array_equal(training.forward(x), inference.forward(x))
    expected = dy * (x > 0)
    np.testing.assert_array_equal(training.backward(dy), expected)
    np.testing.assert_array_equal(inference.backward(dy), expected)
    np.testing.assert_array_equal(inference.input_gradient(dy), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize(
    ("layer_type", "torch_fn"), ACTIVATIONS, ids=lambda v: getattr(v, "__name__", "")
)
def test_activations(layer_type, torch_fn, seed, dtype):
    check_layer(
        layer_type(), torch_fn, random_tensor(np.random.default_rng(seed)), dtype, seed=seed
    )


@pytest.mark.parametrize("layer_type", [nn.Sigmoid, nn.Tanh, nn.Softmax])
def test_saturating_activations_stay_finite_and_exact(layer_type):
    x = np.array([[-1e4, -800.0, -40.0, 0.0, 40.0, 800.0, 1e4]])
    torch_fn = dict(ACTIVATIONS_BY_TYPE)[layer_type]
    y = layer_type().forward(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, torch_fn(torch.tensor(x)).numpy(), rtol=1e-12, atol=0)


ACTIVATIONS_BY_TYPE = ACTIVATIONS


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(10))
def test_dense(seed, dtype):
    rng = np.random.default_rng(seed)
    n_in, n_out, N = (int(v) for v in rng.integers(1, 20, 3))
    layer = nn.Dense(n_in, n_out, bias=bool(rng.random() < 0.8))
    check_layer(layer, F.linear, rng.standard_normal((N, n_in)), dtype, seed=seed)


@pytest.mark.parametrize("accumulate", [False, True])
def test_dense_weight_gradient_of_one_sample_is_its_outer_product(accumulate):
    """A batch of one takes ``np.multiply.outer`` (NumPy's matmul skips BLAS for an inner
    size of 1): the same numbers as the product, written fresh or added."""
    rng = np.random.default_rng(3)
    layer = nn.Dense(37, 5).astype(np.float32)
    x, dy = (rng.standard_normal((1, n)).astype(np.float32) for n in (37, 5))
    before = rng.standard_normal((5, 37)).astype(np.float32)
    layer.forward(x)
    if accumulate:
        layer.weight.grad = before.copy()
    else:
        layer.weight.zero_grad()
    layer.backward(dy)
    expected = before + dy.T @ x if accumulate else dy.T @ x
    np.testing.assert_array_equal(layer.weight.grad, expected)
    np.testing.assert_array_equal(layer.bias.grad, dy[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(5))
def test_flatten(seed, dtype):
    x = np.random.default_rng(seed).standard_normal((2, 3, 4, 5))
    check_layer(nn.Flatten(), lambda x: x.flatten(1), x, dtype, seed=seed)


def test_dropout_masks_scales_and_routes_gradient_through_the_same_mask():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 50)) + 3
    layer = nn.Dropout(0.3, rng=np.random.default_rng(1))
    y = layer.forward(x)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], x[kept] / 0.7)
    dy = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(dy), np.where(kept, dy / 0.7, 0))
    layer.eval()
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(dy), dy)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_dropout_extremes(p):
    x = np.ones((3, 4), np.float32)
    y = nn.Dropout(p).forward(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x * (1 - p))
