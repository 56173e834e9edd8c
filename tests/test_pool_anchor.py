"""Pools with an anchor, "same" and any explicit padding (negative sides crop), and the
backpropagation series' layouts as one convlens layer.

PyTorch's pools take only symmetric padding of at most half the kernel, so the PyTorch side
pads or crops the input itself (``F.pad`` with −∞ or zeros) and pools with none; the
literal loops of :mod:`convlens.nn.reference` are the second oracle, and the series' own
loops (centre element, convolution flag, padding P) the third.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import check_layer
from test_explain_layers import check_explanations
from test_reference import assert_pool_equals_loops

import convlens.nn as nn
from convlens.nn import reference
from convlens.nn.sequential import read_safetensors, write_safetensors
from convlens.nn.window import resolve_padding

DTYPES = [np.float64, np.float32]
KINDS = {nn.MaxPool2D: F.max_pool2d, nn.AvgPool2D: F.avg_pool2d}
TOL = dict(rtol=1e-12, atol=1e-12)


def random_padding(rng: np.random.Generator):
    """Every way to write a pool's padding, explicit sides from −2 (crop) to 3."""
    side = lambda: int(rng.integers(-2, 4))  # noqa: E731
    return [
        "same",
        "valid",
        "full",
        side(),
        (side(), side()),
        ((side(), side()), (side(), side())),
    ][int(rng.integers(6))]


def random_anchored_pool(rng: np.random.Generator, kind: type) -> tuple[nn.Layer, np.ndarray]:
    """A pool with random kernel, stride, anchor and padding, and an input it accepts (a
    max-pool refuses settings that leave a window of only padding: drawn again)."""
    while True:
        kernel = tuple(int(k) for k in rng.integers(1, 5, 2))
        stride = None if rng.random() < 0.2 else tuple(int(s) for s in rng.integers(1, 4, 2))
        anchor = tuple(int(rng.integers(k)) for k in kernel)
        padding = random_padding(rng)
        (t, b), (l, r) = resolve_padding(padding, kernel, (1, 1), anchor)
        H = max(kernel[0] - t - b, -t, -b, 1) + int(rng.integers(0, 6))
        W = max(kernel[1] - l - r, -l, -r, 1) + int(rng.integers(0, 6))
        try:
            layer = kind(kernel, stride, padding, anchor)
            layer.output_shape((1, H, W))
        except ValueError:
            continue
        N, C = (int(v) for v in rng.integers(1, 4, 2))
        return layer, rng.standard_normal((N, C, H, W))


def torch_padded_pool(layer: nn.Layer):
    """PyTorch with the padding done by ``F.pad`` (−∞ for max, 0 for average; negative
    amounts crop) and the pool padding nothing."""
    (t, b), (l, r) = layer.padding2d
    fill = float("-inf") if isinstance(layer, nn.MaxPool2D) else 0.0
    pool = KINDS[type(layer)]
    return lambda x: pool(F.pad(x, (l, r, t, b), value=fill), layer.kernel_size, layer.stride)


# -- against PyTorch autograd and finite differences ----------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_anchored_pools_against_torch_and_finite_differences(kind, seed, dtype):
    layer, x = random_anchored_pool(np.random.default_rng(seed), kind)
    check_layer(layer, torch_padded_pool(layer), x, dtype, seed=seed)


# -- against the literal loops -----------------------------------------------------------------
@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_anchored_pools_equal_the_loops(kind, seed):
    rng = np.random.default_rng(seed)
    layer, x = random_anchored_pool(rng, kind)
    if seed % 2:
        x = rng.integers(0, 3, x.shape).astype(np.float64)  # ties: the first maximum wins
    assert_pool_equals_loops(layer, x, rng)


def every_pool_anchor():
    for kh in range(1, 5):
        for kw in range(1, 5):
            for ay in range(kh):
                for ax in range(kw):
                    yield (kh, kw), (ay, ax)


@pytest.mark.parametrize(("kernel", "anchor"), list(every_pool_anchor()))
@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_same_puts_the_anchor_on_the_output_pixel(kind, kernel, anchor):
    """Every anchor of kernels up to 4×4: ``"same"`` equals the anchor's definition (no
    padding arithmetic), keeps ⌈H/s⌉, and its gradient is PyTorch's on the padded input."""
    rng = np.random.default_rng(hash((kernel, anchor)) % 2**32)
    for stride in [(1, 1), (2, 3), kernel]:
        layer = kind(kernel, stride, "same", anchor)
        assert layer.padding2d == ((anchor[0], kernel[0] - 1 - anchor[0]),
                                   (anchor[1], kernel[1] - 1 - anchor[1]))  # fmt: skip
        x = rng.standard_normal((2, 2, int(rng.integers(1, 9)), int(rng.integers(1, 9))))
        y = layer.forward(x)
        assert y.shape[2:] == (-(-x.shape[2] // stride[0]), -(-x.shape[3] // stride[1]))
        expected = reference.pool2d_anchored_same(
            x, kernel, stride, anchor, maximum=kind is nn.MaxPool2D
        )
        np.testing.assert_allclose(y, expected, **TOL)
        check_layer(layer, torch_padded_pool(layer), x, seed=stride[0], gradcheck_max=40)


def test_the_anchor_changes_only_same_padding():
    x = np.random.default_rng(0).standard_normal((1, 2, 7, 6))
    for kind in KINDS:
        for padding in ["valid", "full", 1, (1, 0), ((2, -1), (0, 1))]:
            outputs = [
                kind(3, 1, padding, anchor).forward(x) for anchor in [(0, 0), (1, 1), (2, 0)]
            ]
            for other in outputs[1:]:
                np.testing.assert_array_equal(outputs[0], other)


def test_negative_padding_is_cropping_the_input_first():
    """A negative side is the same pool on the cropped input; its rows get gradient 0."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 8))
    for kind in KINDS:
        cropping = kind(2, 1, ((-2, 1), (0, -3)))
        cropped = kind(2, 1, ((0, 1), (0, 0)))
        y = cropping.forward(x)
        np.testing.assert_array_equal(y, cropped.forward(x[:, :, 2:, :-3]))
        dy = rng.standard_normal(y.shape)
        dx = cropping.backward(dy)
        assert not dx[:, :, :2].any() and not dx[:, :, :, -3:].any()
        np.testing.assert_array_equal(dx[:, :, 2:, :-3], cropped.backward(dy))


# -- the explanations the page draws --------------------------------------------------------------
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_explanations_show_the_anchored_windows(kind, seed):
    rng = np.random.default_rng(seed)
    layer, x = random_anchored_pool(rng, kind)
    check_explanations(layer, x[0], rng)
    (top, _), (left, _) = layer.padding2d
    c, i, j = (int(rng.integers(n)) for n in layer.output_shape(x.shape[1:]))
    info = layer.explain(x[0], (c, i, j))
    assert info["rows"][0] == i * layer.stride[0] - top
    assert info["cols"][0] == j * layer.stride[1] - left
    if kind is nn.MaxPool2D:
        a, b = info["winner"]
        assert layer.explain_state()["argmax"][c, i, j] == a * layer.kernel_size[1] + b


def test_same_max_pool_window_of_a_corner_anchor():
    """Anchor (2, 2) of a 3×3 window: output (0, 0) sees the input's top-left pixel only,
    and two rows and columns of −∞ above and left of it."""
    x = np.arange(16.0).reshape(1, 4, 4)
    info = nn.MaxPool2D(3, 1, "same", (2, 2)).explain(x, (0, 0, 0))
    assert info["rows"] == [-2, -1, 0] and info["cols"] == [-2, -1, 0]
    assert info["inputs"][2][2] == 0.0 and info["inputs"][0][0] is None
    assert info["winner"] == [2, 2] and info["value"] == 0.0


# -- the series' layouts: one convlens layer each ------------------------------------------------
def series_settings(rng: np.random.Generator, paddings: int = 3):
    """Kernel or window, stride, padding P (below ``paddings``), centre element, convolution
    flag, and an input for which the series' output ⌊(H + 2P − kh)/s⌋ + 1 is at least 1."""
    kernel = tuple(int(k) for k in rng.integers(1, 5, 2))
    stride, P = int(rng.integers(1, 4)), int(rng.integers(0, paddings))
    centre = tuple(int(rng.integers(k)) for k in kernel)
    convolution = bool(rng.integers(2))
    H, W = (max(k - 2 * P, 1) + int(rng.integers(0, 6)) for k in kernel)
    return kernel, stride, P, centre, convolution, (H, W)


def series_padding(kernel, P: int, centre, convolution: bool):
    """The series' layout in convlens terms: the anchor is the centre element (mirrored,
    ``k−1−c``, for the convolution flag's max-pool window), and the padding is
    ``((P + ay, P − ay), (P + ax, P − ax))`` — negative wherever P is below the anchor."""
    anchor = [k - 1 - c if convolution else c for k, c in zip(kernel, centre, strict=True)]
    return tuple((P + a, P - a) for a in anchor)


def test_the_issue_reproducer_is_one_call():
    """Kernel (2, 1), centre (1, 0), correlation, P = 0: the series gives [[14]]."""
    x, w = np.array([[[[2.0], [3.0]]]]), np.array([[[[5.0], [7.0]]]])
    series = reference.series_conv2d(x, w, None, 1, 0, (1, 0), convolution=False)
    np.testing.assert_array_equal(series, [[[[14.0]]]])
    layer = nn.Conv2D.from_weights(w, padding=((1, -1), (0, 0)))
    np.testing.assert_array_equal(layer.forward(x), series)


@pytest.mark.parametrize("seed", range(40))
def test_series_convolution_is_one_conv2d(seed):
    rng = np.random.default_rng(seed)
    kernel, stride, P, centre, convolution, size = series_settings(rng)
    x = rng.standard_normal((2, 2, *size))
    w, b = rng.standard_normal((3, 2, *kernel)), rng.standard_normal(3)
    mode = "convolution" if convolution else "correlation"
    # convolution turns the kernel 180° about its centre element: the split mirrors
    (t, bottom), (l, r) = series_padding(kernel, P, centre, convolution)
    layer = nn.Conv2D.from_weights(w, b, stride, ((t, bottom), (l, r)), mode=mode)
    expected = reference.series_conv2d(x, w, b, stride, P, centre, convolution)
    np.testing.assert_allclose(layer.forward(x), expected, **TOL)
    F_pad = lambda x, weight, bias: F.conv2d(  # noqa: E731
        F.pad(x, (l, r, t, bottom)), weight.flip(-2, -1) if convolution else weight, bias, stride
    )
    check_layer(layer, F_pad, x, seed=seed, gradcheck_max=60)


@pytest.mark.parametrize("seed", range(40))
def test_series_max_pool_is_one_max_pool(seed):
    rng = np.random.default_rng(seed)
    window, stride, P, centre, convolution, size = series_settings(rng, paddings=2)
    x = rng.standard_normal((2, 2, *size))
    expected = reference.series_maxpool2d(x, window, stride, P, centre, convolution)
    padding = series_padding(window, P, centre, convolution)
    if np.isinf(expected).any():  # a window of only padding: convlens refuses, clearly
        with pytest.raises(ValueError, match=r"only −∞ padding"):
            nn.MaxPool2D(window, stride, padding).forward(x)
        return
    layer = nn.MaxPool2D(window, stride, padding)
    np.testing.assert_array_equal(layer.forward(x), expected)
    check_layer(layer, torch_padded_pool(layer), x, seed=seed, gradcheck_max=60)


def test_series_max_pool_ties_go_to_the_first_maximum_in_row_major_order():
    """Both orders give the same maximum; convlens's winner is the first in reading order,
    as in PyTorch, also where the series' convolution flag walks the window backwards."""
    x = np.array([[[[1.0, 4.0], [4.0, 0.0]]]])
    expected = reference.series_maxpool2d(x, (2, 2), 2, 0, (1, 1), convolution=True)
    layer = nn.MaxPool2D(2, padding=series_padding((2, 2), 0, (1, 1), True))
    np.testing.assert_array_equal(layer.forward(x), expected)
    assert layer.argmax[0, 0, 0, 0] == 1  # (0, 1), before (1, 0)
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 1, 1))), [[[[0, 1], [0, 0]]]])


# -- files and other frameworks ---------------------------------------------------------------
def test_a_model_file_from_before_anchors_still_loads(tmp_path):
    """Files written before pools had anchors hold ``"padding": [ph, pw]`` and no anchor."""
    model = nn.Sequential(nn.MaxPool2D(3, 2, 1), nn.AvgPool2D(2, 1))
    path = tmp_path / "old.safetensors"
    model.save(path, input_shape=(2, 9, 9))
    tensors, header = read_safetensors(path)
    layers = json.loads(header["architecture"])
    for spec in layers:
        del spec["config"]["anchor"]
    header["architecture"] = json.dumps(layers)
    write_safetensors(path, tensors, header)
    loaded = nn.load(path)
    assert loaded.config() == model.config()
    x = np.random.default_rng(0).standard_normal((1, 2, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))


@pytest.mark.parametrize("seed", range(8))
def test_anchored_pools_round_trip_through_torch(seed):
    from convlens.interop import from_torch, to_torch

    rng = np.random.default_rng(seed)
    layer, x = random_anchored_pool(rng, nn.MaxPool2D if seed % 2 else nn.AvgPool2D)
    model = nn.Sequential(layer.astype(np.float64)).eval()
    twin = to_torch(model)
    with torch.no_grad():
        np.testing.assert_allclose(twin(torch.from_numpy(x)).numpy(), model.forward(x), **TOL)
    back = from_torch(twin, x.shape[1:])
    assert back.config() == model.config()


@pytest.mark.parametrize("seed", range(8))
def test_anchored_pools_and_cropping_convolutions_through_onnx(seed, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from convlens.interop import export_onnx, load_onnx

    rng = np.random.default_rng(seed)
    layer, x = random_anchored_pool(rng, nn.MaxPool2D if seed % 2 else nn.AvgPool2D)
    C, H, W = x.shape[1:]
    kernel, stride, P, centre, convolution, _ = series_settings(rng)
    padding = series_padding(kernel, P, centre, convolution)
    mode = "convolution" if convolution else "correlation"
    conv = nn.Conv2D(C, 2, kernel, stride, padding, mode=mode)
    model = nn.Sequential(nn.Conv2D(C, C, 1), layer)
    try:
        conv.output_shape(model.output_shape((C, H, W)))
        model.layers.append(conv)
    except ValueError:
        pass  # too small for the convolution after the pool
    model.eval()
    path = tmp_path / "m.onnx"
    export_onnx(model, path, (C, H, W))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = x.astype(np.float32)
    theirs = session.run(["output"], {"input": x})[0]
    np.testing.assert_allclose(theirs, model.forward(x), rtol=1e-5, atol=1e-5)
    back = load_onnx(path)
    assert back.config() == model.config()
    np.testing.assert_array_equal(back.forward(x), model.forward(x))


# -- the article's numbers -----------------------------------------------------------------
def test_the_articles_cropping_and_pooling_examples():
    """Sections 3 and 7 of the article, read from its MathML by id, computed by convlens."""
    from test_article import ARTICLE, Numbers

    parser = Numbers()
    parser.feed(ARTICLE.read_text())
    shown = {k: np.array(v) for k, v in parser.numbers.items()}
    x, w = shown["crop-input"].reshape(1, 1, 2, 1), shown["crop-kernel"].reshape(1, 1, 2, 1)
    (t, b, l, r) = shown["crop-padding"].astype(int).tolist()
    conv = nn.Conv2D.from_weights(w, padding=((t, b), (l, r)))
    np.testing.assert_array_equal(conv.forward(x).ravel(), shown["crop-output"])
    np.testing.assert_array_equal(
        conv.forward(x), reference.series_conv2d(x, w, None, 1, 0, (1, 0), convolution=False)
    )
    M = np.array([[1, 5, 2, 0], [3, 2, 4, 6], [0, 1, 7, 2], [8, 3, 1, 1]], float)[None, None]
    same_max = nn.MaxPool2D(3, 1, "same", (2, 2)).forward(M)
    np.testing.assert_array_equal(same_max.ravel(), shown["pool-same-max"])
    same_avg = nn.AvgPool2D(3, 1, "same", (2, 2)).forward(M)
    assert same_avg[0, 0, 0, 0] == pytest.approx(shown["pool-same-avg"][0], abs=5e-5)
    series = reference.series_maxpool2d(M, (3, 3), 1, 0, (0, 0), convolution=True)
    layer = nn.MaxPool2D(3, 1, ((2, -2), (2, -2)))
    np.testing.assert_array_equal(layer.forward(M), series)
    np.testing.assert_array_equal(series.ravel(), shown["pool-series"])
