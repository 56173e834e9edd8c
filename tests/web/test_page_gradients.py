"""Page tests for the gradients the backward view computes number by number.

- dL/dW and dL/db of a convolution (the input under one kernel tap over every output
  position, times δ, the products and their sum) and of a dense layer (x[j]·δ[i], δ[i]),
  against ``explain_parameter`` run here on the same model and image;
- the rotated kernel of dL/dx sliding over δ̃ (step, play, hover), each position against
  ``explain_value``;
- the sandbox's backward pass (dL/dx, dL/dW and the steps between) against ``Conv2D``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import serve_model
from test_page_backward import (
    TARGET,
    choose_target,
    click_value,
    explained,
    set_sandbox,
    show,
    values,
)

import convlens.nn as nn
from convlens.explain import decode, explain_value, trace
from convlens.explain.trace import explain_parameter
from convlens.models import pretrained
from convlens.web.samples import bundled_samples


@pytest.fixture(scope="module")
def model():
    return pretrained()


@pytest.fixture(scope="module")
def image(model):
    return bundled_samples(model)[0][0]


def pick_parameter(page, index: list[int]) -> None:
    """Type a weight's index into the panel's fields (the kernel then shows W[o, c])."""
    for axis, value in zip("ocab" if len(index) == 4 else "ij", index, strict=False):
        field = page.locator(f".param-panel [data-axis='{axis}']")
        field.fill(str(value))
        field.dispatch_event("change")


def parameter_shown(page, parameter: str, index: list[int]) -> float:
    key = json.dumps(index, separators=(",", ":"))
    page.wait_for_selector(f".param-detail[data-parameter='{parameter}'][data-index='{key}']")
    return float(page.get_attribute("[data-role='param-value']", "data-value"))


def check_conv_weight(page, model, image, layer: int, index: list[int]) -> dict:
    expected = explain_parameter(model, image, layer, "weight", index, TARGET)
    assert parameter_shown(page, "weight", index) == pytest.approx(expected["value"], rel=1e-6)
    roles = {"param-input": "inputs", "param-delta": "deltas", "param-product": "products"}
    for role, key in roles.items():
        np.testing.assert_allclose(
            values(page, f"[data-role='{role}']"), np.ravel(expected[key]), rtol=1e-6, atol=1e-12
        )
    check = float(page.get_attribute("[data-role='param-sum-check']", "data-value"))
    assert check == pytest.approx(expected["value"], rel=1e-6, abs=1e-9)
    return expected


def test_conv_weight_and_bias_gradients_number_by_number(page, shot, model, image):
    choose_target(page, TARGET)
    click_value(page, 2, 4, 6, 5)  # the max-pool's output: the input of layer 3, a Conv2D
    explained(page, [4, 6, 5])
    pick_parameter(page, [15, 4, 1, 1])
    parameter_shown(page, "weight", [15, 4, 1, 1])
    shown_kernel = values(page, "table[data-role='param-kernel'] td").reshape(3, 3)
    np.testing.assert_array_equal(shown_kernel, model.layers[3].weight.data[15, 4])
    page.click("table[data-role='param-kernel'] tr:nth-child(1) td:nth-child(3)")  # W[15, 4, 0, 2]
    check_conv_weight(page, model, image, 3, [15, 4, 0, 2])
    assert page.locator("#grad-detail td.chosen").count() == 1
    page.eval_on_selector(
        ".param-panel", "e => e.closest('.bw-detail-pane').scrollTo(0, e.offsetTop - 10)"
    )
    shot(page, "backward-weight-gradient")

    page.click("[data-role='param-bias']")
    expected = explain_parameter(model, image, 3, "bias", [15], TARGET)
    assert parameter_shown(page, "bias", [15]) == pytest.approx(expected["value"], rel=1e-6)
    np.testing.assert_allclose(
        values(page, "[data-role='param-delta']"), np.ravel(expected["deltas"]), atol=1e-12
    )

    # the first layer: 26×26 positions are drawn as pictures, every number one click away
    click_value(page, "input", 0, 12, 14)
    explained(page, [0, 12, 14])
    pick_parameter(page, [5, 0, 2, 1])
    expected = check_conv_weight(page, model, image, 0, [5, 0, 2, 1])
    largest = np.sort(np.abs(np.ravel(expected["products"])))[::-1][:8]
    rows = page.eval_on_selector_all(
        ".param-detail table.gd-products tbody tr td:last-child",
        "c => c.map(e => +e.dataset.value)",
    )
    np.testing.assert_allclose(np.abs(rows), largest, rtol=1e-6)
    page.hover(".param-detail canvas.param-heat", position={"x": 20, "y": 20})
    assert "δ =" in page.text_content(".param-readout")
    shot(page, "backward-weight-gradient-pictures")


def test_dense_weight_and_bias_gradients(page, model, image):
    choose_target(page, TARGET)
    flat = trace(model, image, TARGET)["layers"][5]["output"]
    j = int(np.argmax(decode(flat)))  # an input that is not 0
    click_value(page, 5, 0, *divmod(j, 64))
    explained(page, [j])
    first = page.locator(".bw-detail-pane table.gd-products tbody tr").nth(1)
    i = int(first.get_attribute("data-out"))
    first.click()
    expected = explain_parameter(model, image, 6, "weight", [i, j], TARGET)
    assert expected["input"] != 0 and expected["delta"] != 0
    assert parameter_shown(page, "weight", [i, j]) == pytest.approx(expected["value"], rel=1e-6)
    assert float(page.get_attribute("[data-role='param-input']", "data-value")) == pytest.approx(
        expected["input"], rel=1e-6
    )
    assert float(page.get_attribute("[data-role='param-delta']", "data-value")) == pytest.approx(
        expected["delta"], rel=1e-6
    )
    page.select_option(".param-panel .param-kind", "bias")
    assert parameter_shown(page, "bias", [i]) == pytest.approx(expected["delta"], rel=1e-6)


def test_rotated_kernel_slides_over_the_padded_delta(page, shot, model, image):
    choose_target(page, TARGET)
    click_value(page, 2, 4, 6, 5)
    explained(page, [4, 6, 5])
    assert page.text_content(".bw-detail-pane .scan-controls .position") == "position (6, 5)"
    assert page.get_attribute(".field-wrap", "data-window") == "6,5"

    page.click(".bw-detail-pane .scan-controls button:has-text('Step')")
    value = explained(page, [4, 6, 6])
    assert value == pytest.approx(explain_value(model, image, 3, [4, 6, 6], TARGET)["value"])
    assert page.get_attribute(".field-wrap", "data-window") == "6,6"
    assert page.text_content(".bw-detail-pane .scan-controls .position") == "position (6, 6)"
    expected = explain_value(model, image, 3, [4, 6, 6], TARGET)
    o = int(page.get_attribute(".gd-inside", "data-out-channel"))
    deltas = values(page, "table[data-role='delta-window'] td")
    np.testing.assert_allclose(deltas, np.ravel(expected["deltas"][o]), atol=1e-12)

    box = page.locator(".bw-dx-map").bounding_box()  # the 13×13 dL/dx map: hover (2, 3)
    page.mouse.move(box["x"] + 3.5 * box["width"] / 13, box["y"] + 2.5 * box["height"] / 13)
    value = explained(page, [4, 2, 3])
    assert value == pytest.approx(explain_value(model, image, 3, [4, 2, 3], TARGET)["value"])
    assert page.get_attribute(".field-wrap", "data-window") == "2,3"

    page.click(".bw-detail-pane .scan-controls .play")  # plays on from (2, 3)
    page.wait_for_selector("#grad-detail:not([data-index='[4,2,3]'])")
    page.click(".bw-detail-pane .scan-controls .play")
    assert page.get_attribute(".bw-detail-pane .scan-controls .play", "aria-pressed") == "false"
    page.wait_for_timeout(300)  # an answer asked for before the pause may still arrive
    position = json.loads(page.get_attribute("#grad-detail", "data-index"))
    assert position[0] == 4 and position[1:] > [2, 3]  # on, in row-major order
    value = float(page.get_attribute("#grad-value", "data-value"))
    assert value == pytest.approx(explain_value(model, image, 3, position, TARGET)["value"])
    page.wait_for_timeout(600)  # paused: it stays
    assert json.loads(page.get_attribute("#grad-detail", "data-index")) == position
    show(page, "[data-tensor='3']")
    shot(page, "backward-sliding-kernel")


# -- padding, stride, convolution mode: a model unlike the shipped one -------------------------


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    """(url, model, image) of a server on a model whose first conv pads, strides and rotates."""
    rng = np.random.default_rng(1)
    conv = nn.Conv2D(3, 3, (3, 2), (2, 1), ((2, 1), (1, 0)), (1, 2), mode="convolution", rng=rng)
    size = int(np.prod(conv.output_shape((3, 9, 10))))
    built = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Dense(size, 2, rng=rng))
    pixels = rng.integers(0, 256, (9, 10, 3), dtype=np.uint8)
    folder = tmp_path_factory.mktemp("padded")
    with serve_model(folder, built, (3, 9, 10), ["a", "b"], ("a", pixels)) as served:
        yield served


def test_padding_stride_dilation_and_convolution_mode(page, padded):
    url, model, image = padded
    page.goto(url)
    page.wait_for_selector("#backward[data-target='0']")
    click_value(page, "input", 1, 4, 5)
    explained(page, [1, 4, 5])
    index = [2, 1, 0, 1]  # convolution mode: the stored W[2, 1, 0, 1] sits at tap (2, 0)
    pick_parameter(page, index)
    expected = explain_parameter(model, image, 0, "weight", index, 0)
    assert expected["tap"] == [2, 0] and not all(np.ravel(expected["inside"]))
    assert parameter_shown(page, "weight", index) == pytest.approx(expected["value"], rel=1e-6)
    np.testing.assert_allclose(
        values(page, "[data-role='param-product']"), np.ravel(expected["products"]), atol=1e-9
    )
    pads = page.eval_on_selector_all(
        "[data-role='param-input'].kind-pad", "c => c.map(e => [e.textContent, +e.dataset.value])"
    )
    assert len(pads) == np.size(expected["inside"]) - np.count_nonzero(expected["inside"])
    assert all(text == "0" and value == 0 for text, value in pads)


# -- sandbox -------------------------------------------------------------------------------


def sandbox_engine(size, kernel, stride, padding, dilation, anchor, mode, delta):
    """The engine's own backward pass for the sandbox's numbered input and kernel."""
    conv = nn.Conv2D(1, 1, kernel, stride, padding, dilation, anchor, mode, bias=False)
    kh, kw = kernel
    conv.weight.data = (np.arange(kh * kw) % 3 - 1).reshape(1, 1, kh, kw).astype(np.float32)
    x = ((np.arange(size[0] * size[1]) * 7) % 10).reshape(1, 1, *size).astype(np.float32)
    y = conv.forward(x)
    dy = np.ones_like(y) if delta == "ones" else np.zeros_like(y)
    if delta != "ones":
        dy[0, 0, delta[0], delta[1]] = 1
    dx = conv.backward(dy)
    return dx[0, 0], conv.weight.grad[0, 0]


def test_sandbox_backward_shows_the_engines_gradients(page, shot):
    show(page, "#sandbox")
    cases = [
        ((7, 7), (3, 3), 2, "same", 1, None, "correlation", [1, 2]),
        ((6, 5), (3, 2), 2, "same", 1, (0, 1), "convolution", "ones"),
        ((8, 6), (2, 3), 1, 2, 2, None, "convolution", [3, 1]),
        ((5, 9), (4, 2), 3, "full", 1, (3, 0), "correlation", [0, 1]),
    ]
    for size, kernel, stride, padding, dilation, anchor, mode, delta in cases:
        settings = {
            "sb-input-h": size[0], "sb-input-w": size[1], "sb-kernel-h": kernel[0],
            "sb-kernel-w": kernel[1], "sb-stride": stride, "sb-padding": padding,
            "sb-dilation": dilation, "sb-anchor-y": None if anchor is None else anchor[0],
            "sb-anchor-x": None if anchor is None else anchor[1], "sb-mode": mode,
            "sb-delta": "ones" if delta == "ones" else "cell",
        }  # fmt: skip
        if delta != "ones":
            settings |= {"sb-delta-i": delta[0], "sb-delta-j": delta[1]}
        assert set_sandbox(page, settings) == "ready"
        dx, dw = sandbox_engine(size, kernel, stride, padding, dilation, anchor, mode, delta)
        np.testing.assert_array_equal(values(page, "g[data-role='sb-dx']").reshape(dx.shape), dx)
        np.testing.assert_array_equal(values(page, "g[data-role='sb-dw']").reshape(dw.shape), dw)
        ones = values(page, "g[data-role='sb-delta-cell']")
        assert ones.sum() == (ones.size if delta == "ones" else 1)

    # δ follows a click; the rotated kernel and the correlation's tap step along
    page.click("g[data-role='sb-delta-cell'][data-i='2'][data-j='0']")
    page.wait_for_function("document.getElementById('sb-delta-i').value === '2'")
    page.wait_for_function("document.getElementById('sandbox').dataset.status === 'ready'")
    dx, dw = sandbox_engine((5, 9), (4, 2), 3, "full", 1, (3, 0), "correlation", [2, 0])
    cell = page.locator("g[data-role='sb-delta-cell'][data-i='2'][data-j='0']")
    cell.and_(page.locator("[data-value='1']")).wait_for()
    np.testing.assert_array_equal(values(page, "g[data-role='sb-dx']").reshape(dx.shape), dx)
    np.testing.assert_array_equal(values(page, "g[data-role='sb-dw']").reshape(dw.shape), dw)
    assert page.get_attribute(".sb-dx-sum", "data-position") == "0,0"
    page.click(".sb-player[data-player='dx'] .sb-step")
    assert page.get_attribute(".sb-dx-sum", "data-position") == "0,1"
    padded_grad = values(page, "g[data-role='sb-dxp']")
    shown = float(page.get_attribute("[data-role='sb-dx-value']", "data-value"))
    assert shown == padded_grad[1]
    page.click(".sb-player[data-player='dw'] .sb-step")
    assert page.get_attribute(".sb-dw-sum", "data-tap") == "0,1"
    assert float(page.get_attribute("[data-role='sb-dk-value']", "data-value")) == dw[0, 1]
    page.hover("g[data-role='sb-dw'][data-i='3'][data-j='0']")
    assert page.get_attribute(".sb-dw-sum", "data-tap") == "3,0"
    page.eval_on_selector(".sb-backward", "e => window.scrollTo(0, e.offsetTop - 60)")
    shot(page, "sandbox-backward")
