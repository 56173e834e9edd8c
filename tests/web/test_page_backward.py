"""Page tests for the backward-pass view and the hyperparameter sandbox.

Every number the page shows is checked against the engine run here in Python: the trace
(p − y, loss, gradient maps), ``explain_value`` (dL/dx of a convolution, a max-pool, an
activation, a dense layer), the model's stored kernels (the rotated kernel), ``MaxPool2D``'s
argmax (the mask) and ``Conv2D.output_shape`` (the sandbox's output size and its errors).
"""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest
from conftest import serve_model

import convlens.nn as nn
from convlens.explain import decode, explain_value, trace
from convlens.models import pretrained
from convlens.web.samples import bundled_samples

TARGET = 3  # not the first sample's label (0): large, readable gradients


@pytest.fixture(scope="module")
def model():
    return pretrained()


@pytest.fixture(scope="module")
def image(model):
    return bundled_samples(model)[0][0]  # what the page shows first


@pytest.fixture(scope="module")
def traced(model, image):
    result = trace(model, image, TARGET)
    result["gradients"] = [None if g is None else decode(g) for g in result["gradients"]]
    result["outputs"] = [decode(layer["output"]) for layer in result["layers"]]
    return result


def choose_target(page, k: int) -> None:
    page.locator("#backward").scroll_into_view_if_needed()  # its maps draw when in view
    page.select_option("#target-class", str(k))
    page.wait_for_selector(f"#backward[data-target='{k}']")


def values(page, selector: str) -> np.ndarray:
    """The exact numbers behind the cells that match `selector`, in page order."""
    texts = page.eval_on_selector_all(selector, "cells => cells.map(c => c.dataset.value)")
    return np.array([float(t) for t in texts])


def click_value(page, tensor, channel: int, row: int, col: int) -> None:
    """Click value (row, col) of a gradient map: `tensor` is a layer index or 'input'."""
    page.locator("#backward").scroll_into_view_if_needed()  # its maps draw when in view
    canvas = page.locator(f"canvas[data-grad-layer='{tensor}'][data-channel='{channel}']")
    cols, rows, width, height = canvas.evaluate(
        "c => [c.width, c.height, c.clientWidth, c.clientHeight]"
    )
    canvas.click(position={"x": (col + 0.5) * width / cols, "y": (row + 0.5) * height / rows})


def explained(page, index: list[int]) -> float:
    page.wait_for_selector(f"#grad-detail[data-index='{json.dumps(index, separators=(',', ':'))}']")
    return float(page.get_attribute("#grad-value", "data-value"))


def show(page, selector: str) -> None:
    """Scroll `selector` to the top of the window, below the sticky header."""
    page.eval_on_selector(selector, "e => window.scrollTo(0, e.offsetTop - 60)")


# -- backward view ---------------------------------------------------------------------------


def test_target_class_shows_every_gradient_and_p_minus_y(page, shot, model, traced):
    page.wait_for_selector("#backward[data-target='0']")  # the sample's true label
    assert page.input_value("#target-class") == "0"
    choose_target(page, TARGET)

    for i, gradient in enumerate(traced["gradients"]):
        channels = gradient.shape[0] if gradient is not None and gradient.ndim == 3 else 1
        expected = 0 if gradient is None else channels
        assert page.locator(f"canvas[data-grad-layer='{i}']").count() == expected, f"layer {i}"
    assert page.locator("canvas[data-grad-layer='input']").count() == model.input_shape[0]

    probabilities = np.array(traced["probabilities"])
    one_hot = np.eye(len(probabilities))[TARGET]
    np.testing.assert_allclose(values(page, "[data-role='p']"), probabilities, rtol=1e-6)
    np.testing.assert_array_equal(values(page, "[data-role='y']"), one_hot)
    np.testing.assert_allclose(
        values(page, "[data-role='diff']"), probabilities - one_hot, rtol=1e-5, atol=1e-7
    )
    loss = float(page.get_attribute(".bw-loss-value", "data-value"))
    assert loss == pytest.approx(traced["loss"], rel=1e-6)

    page.select_option("#range-mode", "unit")  # repaints the ladder with per-map ranges
    page.wait_for_selector(".bw-row-label .legend-label:has-text('own scale')")
    show(page, "#backward")
    shot(page, "backward-scores")


def test_convolution_input_gradient_uses_the_rotated_kernel(page, shot, model, image):
    choose_target(page, TARGET)
    c, h, w = 4, 6, 5
    click_value(page, 2, c, h, w)  # the max-pool's output = the input of layer 3, a Conv2D
    value = explained(page, [c, h, w])
    expected = explain_value(model, image, 3, [c, h, w], TARGET)
    assert page.get_attribute("#grad-detail", "data-operation") == "convolution"
    assert value == pytest.approx(expected["value"], rel=1e-5)
    sums = values(page, "[data-role='grad-channel-sum']")
    np.testing.assert_allclose(sums, expected["channel_sums"], rtol=1e-5, atol=1e-12)

    weight = model.layers[3].weight.data
    for o in (7, int(np.argmax(np.abs(sums)))):  # one picked, then the largest again
        page.click(f"[data-role='grad-channel-sum'][data-channel='{o}']")
        page.wait_for_selector(f".gd-inside[data-out-channel='{o}']")
        rotated = values(page, "table[data-role='rotated-kernel'] td").reshape(3, 3)
        np.testing.assert_array_equal(rotated, np.rot90(weight[o, c], 2))
        kernel = values(page, "table[data-role='kernel'] td").reshape(3, 3)
        np.testing.assert_array_equal(kernel, weight[o, c])
        products = values(page, "[data-role='grad-product']")
        np.testing.assert_allclose(products, np.ravel(expected["products"][o]), atol=1e-12)
        deltas = values(page, "table[data-role='delta-window'] td")
        np.testing.assert_allclose(deltas, np.ravel(expected["deltas"][o]), atol=1e-12)
    show(page, "[data-tensor='3']")  # the clicked map (after layer 2) in view
    shot(page, "backward-conv")
    page.eval_on_selector(
        ".gd-inside", "e => e.closest('.bw-detail-pane').scrollTo(0, e.offsetTop)"
    )
    shot(page, "backward-conv-steps")

    # the first layer, by keyboard: focus the input gradient, move from the centre, Enter
    page.focus("canvas[data-grad-layer='input'][data-channel='0']")
    for key in ["ArrowUp"] * 4 + ["ArrowLeft"] * 2 + ["Enter"]:
        page.keyboard.press(key)
    value = explained(page, [0, 10, 12])
    assert value == pytest.approx(explain_value(model, image, 0, [0, 10, 12], TARGET)["value"])


def test_max_pool_marks_exactly_the_argmax_winners(page, shot, model, image, traced):
    choose_target(page, TARGET)
    c = 2
    pool_input = traced["outputs"][1]  # the ReLU's output feeds layer 2, MaxPool2D(2)
    pool = nn.MaxPool2D(2)
    pool.forward(pool_input[None])
    a, b = np.divmod(pool.argmax[0, c].astype(int), 2)
    i, j = np.indices(a.shape)
    winners = sorted(zip((2 * i + a).ravel().tolist(), (2 * j + b).ravel().tolist(), strict=True))

    gradient = np.abs(traced["gradients"][1][c])  # dL/d(pool input): nonzero only at winners
    h, w = (int(v) for v in np.unravel_index(np.argmax(gradient), gradient.shape))
    click_value(page, 1, c, h, w)
    value = explained(page, [c, h, w])
    expected = explain_value(model, image, 2, [c, h, w], TARGET)
    assert page.get_attribute("#grad-detail", "data-operation") == "max-pool"
    assert value == pytest.approx(expected["value"], rel=1e-6)
    marked = page.eval_on_selector_all(
        "[data-role='winner']", "m => m.map(e => [+e.dataset.row, +e.dataset.col])"
    )
    assert sorted(map(tuple, marked)) == winners
    np.testing.assert_allclose(values(page, "[data-role='grad-product']"), expected["deltas"])
    show(page, "[data-tensor='1']")
    shot(page, "backward-maxpool")


def test_activation_dense_and_flatten_show_the_engines_gradient(page, shot, model, image):
    choose_target(page, TARGET)
    for tensor, index, operation in [
        (4, [3, 3, 5], "flatten"),
        (5, [202], "dense"),  # a vector: the map wraps at 64 columns
        (0, [2, 10, 12], "relu"),
    ]:
        place = index if len(index) == 3 else [0, *divmod(index[0], 64)]
        click_value(page, tensor, *place)
        value = explained(page, index)
        expected = explain_value(model, image, tensor + 1, index, TARGET)
        assert page.get_attribute("#grad-detail", "data-operation") == operation
        assert value == pytest.approx(expected["value"], rel=1e-5, abs=1e-12)
        if operation == "dense":
            top = np.sort(np.abs(expected["products"]))[::-1][:8]
            np.testing.assert_allclose(np.abs(values(page, "[data-role='grad-product']")), top)
    show(page, "[data-tensor='0']")
    shot(page, "backward-relu")


# -- any model: RGB input, convolution mode, stride, dilation, overlapping max-pool, softmax --


@pytest.fixture(scope="module")
def generic(tmp_path_factory):
    """(url, model, image) of a server on a model unlike the shipped one, with one sample."""
    rng = np.random.default_rng(0)
    built = nn.Sequential(
        nn.Conv2D(3, 4, (3, 5), 2, 1, (1, 2), (0, 0), "convolution", rng=rng),
        nn.Tanh(),
        nn.MaxPool2D(3, 2, 1),  # overlapping windows, padded with −inf
        nn.Conv2D(4, 5, 3, padding="same", anchor=(0, 2), mode="convolution", rng=rng),
        nn.Sigmoid(),
        nn.Flatten(),
        nn.Dense(5 * 6 * 4, 3, rng=rng),
        nn.Softmax(),
    )
    pixels = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    folder = tmp_path_factory.mktemp("generic")
    with serve_model(folder, built, (3, 24, 20), ["a", "b", "c"], ("b", pixels)) as served:
        yield served


def test_any_sequential_model(page, shot, generic):
    url, model, image = generic
    page.goto(url)
    page.wait_for_selector("#backward[data-target='1']")  # the sample's label, "b"
    result = trace(model, image, 1)
    one_hot = np.eye(3)[1]
    np.testing.assert_allclose(
        values(page, "[data-role='diff']"), np.array(result["probabilities"]) - one_hot, atol=1e-6
    )

    for tensor, layer, index in [("input", 0, [2, 9, 11]), (2, 3, [1, 3, 2])]:
        click_value(page, tensor, *index)
        value = explained(page, index)
        expected = explain_value(model, image, layer, index, 1)
        assert value == pytest.approx(expected["value"], rel=1e-5, abs=1e-12)
        o = int(page.get_attribute(".gd-inside", "data-out-channel"))
        weight = model.layers[layer].weight.data[o, index[0]]  # convolution mode: applied turned
        kh, kw = weight.shape
        np.testing.assert_array_equal(
            values(page, "table[data-role='kernel'] td"), np.rot90(weight, 2).ravel()
        )
        np.testing.assert_array_equal(
            values(page, "table[data-role='rotated-kernel'] td"), weight.ravel()
        )
        # the page builds δ̃ itself (stride, full padding less the forward padding): same window
        taps = values(page, ".field-overlay .tap").reshape(kh, kw)
        np.testing.assert_allclose(taps, expected["deltas"][o], rtol=1e-6)

    pool = nn.MaxPool2D(3, 2, 1)
    pool.forward(decode(result["layers"][1]["output"])[None])
    a, b = np.divmod(pool.argmax[0, 3].astype(int), 3)
    i, j = np.indices(a.shape)
    wins = Counter(zip((2 * i + a - 1).ravel(), (2 * j + b - 1).ravel(), strict=True))
    (h, w), _ = wins.most_common(1)[0]  # a cell that won two overlapping windows
    click_value(page, 1, 3, int(h), int(w))
    value = explained(page, [3, int(h), int(w)])
    assert value == pytest.approx(explain_value(model, image, 2, [3, h, w], 1)["value"], rel=1e-5)
    marked = page.eval_on_selector_all(
        "[data-role='winner']",
        "m => m.map(e => [+e.dataset.row, +e.dataset.col, +e.dataset.count])",
    )
    assert {(r, q): n for r, q, n in marked} == {(int(r), int(q)): n for (r, q), n in wins.items()}
    show(page, "[data-tensor='1']")
    shot(page, "backward-generic-maxpool")


# -- sandbox -------------------------------------------------------------------------------


def set_sandbox(page, settings: dict[str, object]) -> str:
    """Type `settings` (control id -> value) into the sandbox; returns its status."""
    page.evaluate(
        """(settings) => {
            for (const [id, value] of Object.entries(settings)) {
                document.getElementById(id).value = value === null ? '' : String(value);
            }
            const first = document.getElementById('sb-input-h');
            first.dispatchEvent(new Event('input', {bubbles: true}));
        }""",
        settings,
    )
    page.wait_for_function("document.getElementById('sandbox').dataset.status !== 'pending'")
    return page.get_attribute("#sandbox", "data-status")


def sandbox_cases() -> list[tuple]:
    """Random settings over the whole grid, plus some that cannot work."""
    rng = random.Random(0)
    cases = []
    for _ in range(36):
        kh, kw = rng.randint(1, 5), rng.randint(1, 5)
        anchor = rng.choice([None, (0, 0), (kh - 1, kw - 1), (kh // 2, 0)])
        cases.append(
            (
                rng.choice([(7, 7), (5, 9), (12, 6), (3, 4), (16, 16)]),
                (kh, kw),
                rng.randint(1, 3),
                rng.choice(["valid", "same", "full", 2]),
                rng.randint(1, 2),
                anchor,
                rng.choice(["correlation", "convolution"]),
            )
        )
    cases += [
        ((3, 3), (5, 5), 1, "valid", 1, None, "correlation"),  # kernel larger than input
        ((4, 6), (3, 3), 2, "valid", 2, None, "convolution"),  # dilated kernel spans 5 rows
        ((7, 7), (2, 2), 1, "same", 1, (3, 3), "correlation"),  # anchor outside the kernel
    ]
    return cases


def engine_answer(size, kernel, stride, padding, dilation, anchor, mode) -> tuple[str, str]:
    """("ready", "H′ × W′") or ("invalid", the engine's message): what the sandbox shows."""
    try:
        conv = nn.Conv2D(1, 1, kernel, stride, padding, dilation, anchor, mode, bias=False)
        _, out_h, out_w = conv.output_shape((1, *size))
    except ValueError as error:
        return "invalid", str(error)
    return "ready", f"{out_h} × {out_w}"


def test_sandbox_output_sizes_and_messages_match_the_engine(page, shot):
    show(page, "#sandbox")
    page.wait_for_selector("#sandbox[data-status='ready']")
    for size, kernel, stride, padding, dilation, anchor, mode in sandbox_cases():
        settings = {
            "sb-input-h": size[0],
            "sb-input-w": size[1],
            "sb-kernel-h": kernel[0],
            "sb-kernel-w": kernel[1],
            "sb-stride": stride,
            "sb-padding": padding,
            "sb-dilation": dilation,
            "sb-anchor-y": None if anchor is None else anchor[0],
            "sb-anchor-x": None if anchor is None else anchor[1],
            "sb-mode": mode,
        }
        status = set_sandbox(page, settings)
        expected_status, expected = engine_answer(
            size, kernel, stride, padding, dilation, anchor, mode
        )
        assert status == expected_status, settings
        if status == "ready":
            assert page.text_content("#sandbox-output-size") == expected, settings
            assert page.is_hidden("#sandbox-message")
        else:
            assert expected in page.text_content("#sandbox-message"), settings
            assert page.locator(".sb-stage.stale").count() == 1
    # the 422 answers are deliberate; the browser logs each as a failed resource
    page.problems[:] = [p for p in page.problems if "422" not in p]


def test_sandbox_draws_the_engines_convolution_and_recovers(page, shot):
    show(page, "#sandbox")
    settings = {"sb-input-h": 6, "sb-input-w": 5, "sb-kernel-h": 3, "sb-kernel-w": 2}
    settings |= {"sb-stride": 2, "sb-padding": "same", "sb-dilation": 1, "sb-mode": "convolution"}
    assert set_sandbox(page, settings | {"sb-anchor-y": 0, "sb-anchor-x": None}) == "ready"
    conv = nn.Conv2D(1, 1, (3, 2), 2, "same", 1, (0, 0), "convolution", bias=False)
    conv.weight.data = (np.arange(6) % 3 - 1).reshape(1, 1, 3, 2).astype(np.float32)
    x = ((np.arange(30) * 7) % 10).reshape(1, 1, 6, 5).astype(np.float32)
    y = conv.forward(x)[0, 0]
    (top, bottom), (left, right) = conv.padding2d
    assert page.text_content("#sandbox-padding") == f"({top}, {bottom}, {left}, {right})"
    assert (
        page.locator("[data-role='pad-cell']").count()
        == (6 + top + bottom) * (5 + left + right) - 30
    )
    shown = page.eval_on_selector_all(
        ".out-cell text", "t => t.map(e => +e.textContent.replace('−', '-'))"
    )
    np.testing.assert_array_equal(np.array(shown).reshape(y.shape), y)
    assert page.locator("math").count() > 0

    before = page.text_content(".sb-sum")
    page.click(".sb-play")  # the kernel slides on its own
    page.wait_for_function(f"document.querySelector('.sb-sum').textContent !== {before!r}")
    page.click(".sb-play")
    assert page.get_attribute(".sb-play", "aria-pressed") == "false"
    shot(page, "sandbox")

    page.fill("#sb-input-h", "1")  # by typing: the kernel no longer fits
    page.select_option("#sb-padding", "valid")
    page.wait_for_selector("#sandbox[data-status='invalid']")
    assert "spans 3 rows" in page.text_content("#sandbox-message")
    shot(page, "sandbox-invalid")
    page.fill("#sb-input-h", "4")
    page.wait_for_selector("#sandbox[data-status='ready']")
    expected = engine_answer((4, 5), (3, 2), 2, "valid", 1, (0, 0), "convolution")
    assert page.text_content("#sandbox-output-size") == expected[1]
    assert page.is_hidden("#sandbox-message")
    page.problems[:] = [p for p in page.problems if "422" not in p]
