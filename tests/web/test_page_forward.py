"""The forward-pass views of the explainer page, checked against the engine's own numbers.

Every number the page prints is compared with :mod:`convlens` computing the same thing in
this process, to the precision the page printed it with.
"""

from __future__ import annotations

import io
import json
import math
import urllib.request
from decimal import Decimal
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

from convlens.explain import explain_value
from convlens.explain.trace import forward_all
from convlens.models import pretrained
from convlens.nn.activation import softmax
from convlens.web.samples import bundled_samples

SAMPLE = 0  # the sample the page shows first


@cache
def engine():
    """The shipped model, its samples, and every activation of the first sample."""
    model = pretrained()
    samples = bundled_samples(model)
    return model, samples, forward_all(model, samples[SAMPLE][0])


def model_description(server: str) -> dict:
    with urllib.request.urlopen(f"{server}/api/model") as response:
        return json.load(response)


def assert_printed(text: str, value: float) -> None:
    """``text`` is ``value`` rounded to the digits it shows (the page's minus sign allowed)."""
    printed = Decimal(text.strip().replace("−", "-"))
    place = 10.0 ** printed.as_tuple().exponent
    tolerance = 0.5 * place * (1 + 1e-6) + 1e-9 * abs(value) if printed else 0.0  # "0" is exact
    assert abs(float(printed) - value) <= tolerance, f"page shows {text}, engine has {value!r}"


def cells(page, selector: str) -> list[dict]:
    """The text and data attributes of every element matching ``selector``."""
    return page.eval_on_selector_all(
        selector,
        "els => els.map(e => ({text: e.textContent, ...e.dataset,"
        " channel: e.closest('[data-channel]')?.dataset.channel,"
        " index: e.closest('[data-index]')?.dataset.index}))",
    )


def prediction(page) -> str:
    return page.inner_text("#prediction")


def wait_for_prediction(page, label: str) -> None:
    """Until the page predicts class ``label`` (drawing sends several images on the way)."""
    page.wait_for_function(
        "label => document.querySelector('#prediction').textContent.startsWith(label)",
        arg=f"prediction: {label} ",
        timeout=10_000,
    )


def wait_for_new_prediction(page, old: str) -> str:
    page.wait_for_function(
        "old => document.querySelector('#prediction').textContent !== old", arg=old
    )
    return prediction(page)


def hover_cell(page, selector: str, shape: tuple[int, int], cell: tuple[int, int]) -> None:
    """Move the mouse to the centre of ``cell`` of the map drawn at ``selector``."""
    target = page.locator(selector)
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    (rows, cols), (r, c) = shape, cell
    page.mouse.move(
        box["x"] + (c + 0.5) * box["width"] / cols, box["y"] + (r + 0.5) * box["height"] / rows
    )


def drop_http_errors(page) -> None:
    """Forget the console line Chromium logs for an expected 4xx answer."""
    page.problems[:] = [p for p in page.problems if "status of 4" not in p]


def open_detail(page, selector: str, ready: str) -> None:
    page.click(selector)
    page.wait_for_selector(f"#detail:not([hidden]) {ready}")


# -- the overview -----------------------------------------------------------------------------
def test_every_layer_has_a_column_and_every_conv_map_is_drawn(page, server, shot):
    description = model_description(server)
    layers = description["layers"]
    assert page.locator(".layer-column").count() == len(layers)
    for layer in layers:
        if layer["operation"] != "convolution":
            continue
        channels, height, width = layer["output_shape"]
        maps = page.locator(f"canvas.map[data-layer='{layer['index']}']")
        assert maps.count() == channels
        sizes = maps.evaluate_all("els => els.map(c => [c.width, c.height])")
        assert sizes == [[width, height]] * channels
    assert page.locator(".score[data-class]").count() == len(description["classes"])
    predicted = page.locator(".score.predicted")
    assert predicted.get_attribute("data-class") == str(np.argmax(engine()[2][-1]))

    page.hover("canvas.map[data-layer='3'][data-channel='0']")  # conv: every input channel
    assert page.locator(".ov-item.linked").count() == layers[3]["input_shape"][0]
    assert page.locator(".ov-edges .active path").count() == layers[3]["input_shape"][0]
    page.hover("canvas.map[data-layer='1'][data-channel='4']")  # ReLU: the same channel
    assert page.eval_on_selector_all(
        ".ov-item.linked", "els => els.map(e => e.dataset.channel)"
    ) == ["4"]
    shot(page, "forward-overview")

    page.focus("canvas.map[data-layer='0'][data-channel='2']")  # the keyboard opens it too
    page.keyboard.press("Enter")
    page.wait_for_selector("#detail:not([hidden]) #conv-value")


# -- convolution --------------------------------------------------------------------------------
def read_formula(page) -> tuple[list[int], dict]:
    """The position and every number of the formula view, keyed like the engine's payload."""
    position = [int(v) for v in page.get_attribute(".formula-view", "data-position").split(",")]
    numbers = {}
    for role in ("input", "weight", "product"):
        for cell in cells(page, f".formula-view [data-role='{role}']"):
            numbers[role, int(cell["channel"]), int(cell["r"]), int(cell["c"])] = cell["text"]
    return position, numbers


def check_formula(page, layer: int) -> list[int]:
    model, samples, _ = engine()
    position, numbers = read_formula(page)
    payload = explain_value(model, samples[SAMPLE][0], layer, position)
    names = {"input": "inputs", "weight": "kernel", "product": "products"}
    assert len(numbers) == 3 * np.size(payload["products"])
    for (role, c, a, b), text in numbers.items():
        assert_printed(text, payload[names[role]][c][a][b])
    sums = [cell["text"] for cell in cells(page, ".formula-view [data-role='channel-sum']")]
    for text, value in zip(sums, payload["channel_sums"], strict=True):
        assert_printed(text, value)
    assert_printed(page.inner_text("#conv-bias"), payload["bias"])
    assert_printed(page.inner_text("#conv-value"), payload["value"])
    return position


def test_conv_formula_shows_the_engines_numbers(page, server, shot):
    layer, channel = 3, 5
    open_detail(page, f"canvas.map[data-layer='{layer}'][data-channel='{channel}']", "#conv-value")
    position = check_formula(page, layer)
    assert position[0] == channel
    assert page.locator(".elastic-channel").count() == 16  # one column per input channel
    shot(page, "forward-conv-elastic")

    # hovering the output map moves the kernel there; the numbers follow
    hover_cell(page, ".elastic-output .mapview", (11, 11), (2, 3))
    page.wait_for_selector(".formula-view[data-position='5,2,3']")
    check_formula(page, layer)
    shot(page, "forward-conv-formula")

    # play slides it on by itself; pause stops it
    page.click(".scan-controls .play")
    page.wait_for_function("document.querySelector('.formula-view').dataset.position !== '5,2,3'")
    page.click(".scan-controls .play")
    check_formula(page, layer)


# -- input: samples, upload, drawing --------------------------------------------------------
def png(draw, size: int = 140) -> bytes:
    """A white-on-black picture, drawn by ``draw(ImageDraw)``, as PNG bytes."""
    image = Image.new("L", (size, size), 0)
    draw(ImageDraw.Draw(image))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


DROP = """async ({bytes, name}) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/png'}));
    const panel = document.getElementById('input-panel');
    for (const type of ['dragenter', 'dragover', 'drop']) {
        const init = {dataTransfer: transfer, bubbles: true, cancelable: true};
        panel.dispatchEvent(new DragEvent(type, init));
    }
}"""


def test_samples_upload_and_drawing_change_the_prediction(page, shot):
    shown = prediction(page)
    page.click(".sample[data-sample='14']")  # a 7
    shown = wait_for_new_prediction(page, shown)
    assert shown.startswith("prediction: 7")

    zero = png(lambda d: d.ellipse((35, 20, 105, 120), outline=255, width=16))
    upload = {"name": "zero.png", "mimeType": "image/png", "buffer": zero}
    page.set_input_files("#upload", files=[upload])
    wait_for_prediction(page, "0")
    assert "uploaded: zero.png" in page.inner_text(".input-current figcaption")

    one = png(lambda d: d.line((72, 20, 68, 120), fill=255, width=16))
    page.evaluate(DROP, {"bytes": list(one), "name": "one.png"})  # dropped on the panel
    wait_for_prediction(page, "1")

    box = page.locator("#draw").bounding_box()
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    ring = [
        (
            centre_x + 0.25 * box["width"] * math.sin(t),
            centre_y - 0.33 * box["height"] * math.cos(t),
        )
        for t in np.linspace(0, 2 * math.pi, 17)
    ]
    page.mouse.move(*ring[0])
    page.mouse.down()
    for point in ring[1:]:
        page.mouse.move(*point)
    page.mouse.up()
    wait_for_prediction(page, "0")
    assert "your drawing" in page.inner_text(".input-current figcaption")
    shot(page, "forward-input-drawn")


def test_a_bad_upload_is_explained_and_the_page_keeps_working(page):
    for name, content in [
        ("notes.txt", b"just some words"),
        ("broken.png", png(lambda d: None)[:60]),
    ]:
        page.set_input_files(
            "#upload", files=[{"name": name, "mimeType": "image/png", "buffer": content}]
        )
        page.wait_for_selector("#error:not([hidden])")
        message = page.inner_text("#error")
        assert name in message and len(message.split()) >= 5, message
        page.evaluate("document.getElementById('error').hidden = true")
    drop_http_errors(page)
    shown = prediction(page)
    page.click(".sample[data-sample='4']")  # a 2
    assert wait_for_new_prediction(page, shown).startswith("prediction: 2")
    assert page.locator("#error").is_hidden()


# -- the other detail views ---------------------------------------------------------------------
def test_relu_view_follows_a_value_through(page, shot):
    _, _, acts = engine()
    open_detail(page, "canvas.map[data-layer='1'][data-channel='3']", "#act-output")
    for cell in [None, (20, 4)]:
        if cell:
            hover_cell(page, ".elementwise-view figure:last-child .mapview", (26, 26), cell)
            page.wait_for_selector(f".act-readout[data-position='3,{cell[0]},{cell[1]}']")
        c, i, j = (int(v) for v in page.get_attribute(".act-readout", "data-position").split(","))
        assert_printed(page.inner_text("#act-input"), acts[1][c, i, j])
        assert_printed(page.inner_text("#act-output"), acts[2][c, i, j])
    shot(page, "forward-relu")


def test_pool_view_shows_the_window_and_its_maximum(page, shot):
    _, _, acts = engine()
    open_detail(page, "canvas.map[data-layer='2'][data-channel='6']", "#pool-value")
    c, i, j = (int(v) for v in page.get_attribute(".pool-numbers", "data-position").split(","))
    window = acts[2][c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
    for cell in cells(page, ".pool-numbers [data-role='input']"):
        assert_printed(cell["text"], window[int(cell["r"]), int(cell["c"])])
    winner = cells(page, ".pool-numbers td.winner")
    assert len(winner) == 1 and (int(winner[0]["r"]), int(winner[0]["c"])) == np.unravel_index(
        np.argmax(window), window.shape
    )
    assert_printed(page.inner_text("#pool-value"), acts[3][c, i, j])
    shot(page, "forward-pool")


def test_flatten_and_dense_views_add_up_the_unit(page, shot):
    model, _, acts = engine()
    strip = page.locator(".vector[data-layer='6']")
    box = strip.bounding_box()
    strip.click(position={"x": box["width"] / 2, "y": box["height"] * 0.3})
    page.wait_for_selector("#detail:not([hidden]) #dense-value")
    unit = int(page.get_attribute(".dense-part", "data-unit"))
    dense = model.layers[6]
    assert_printed(page.inner_text("#dense-value"), acts[7][unit])
    assert_printed(page.inner_text("#dense-bias"), dense.bias.data[unit])
    products = dense.weight.data[unit] * acts[6]
    assert_printed(page.inner_text("#dense-sum"), products.sum())
    rows = cells(page, ".dense-table [data-role='product']")
    assert len(rows) == 10
    for row in rows:
        assert_printed(row["text"], products[int(row["index"])])
    top = [int(row["index"]) for row in rows]
    assert top == list(np.argsort(-np.abs(products), kind="stable")[:10])

    page.hover(
        f".dense-table tr[data-index='{top[2]}']"
    )  # flatten shows where that input came from
    page.wait_for_selector(f"#flat-value[data-index='{top[2]}']")
    assert_printed(page.inner_text("#flat-value"), acts[5].reshape(-1)[top[2]])
    shot(page, "forward-dense")


def test_softmax_view_turns_scores_into_probabilities(page, shot):
    _, _, acts = engine()
    probabilities = softmax(acts[-1].astype(np.float64))
    open_detail(page, ".score[data-class='3']", "#softmax-value")
    assert_printed(page.inner_text("#softmax-value"), probabilities[3])
    shown = cells(page, ".softmax-table [data-role='probability']")
    for cell, value in zip(shown, probabilities, strict=True):
        assert_printed(cell["text"], value)
    exps = np.exp(acts[-1].astype(np.float64) - acts[-1].max())
    assert_printed(page.inner_text("#softmax-sum"), exps.sum())
    plain = cells(page, ".softmax-table [data-role='plain']")
    for cell, score in zip(plain, acts[-1], strict=True):
        assert_printed(cell["text"], score / acts[-1].sum())
    shot(page, "forward-softmax")


# -- colour range ------------------------------------------------------------------------------
def test_range_switch_recolours_the_maps(page):
    _, _, acts = engine()
    relu = acts[2]  # layer 1's output
    peaks = np.abs(relu).reshape(len(relu), -1).max(axis=1)
    channel = int(
        np.argmin(np.where(peaks > 0, peaks, np.inf))
    )  # the faintest map that shows anything
    row, col = np.unravel_index(np.argmax(np.abs(relu[channel])), relu[channel].shape)
    canvas = f"canvas.map[data-layer='1'][data-channel='{channel}']"
    read = f"""() => Array.from(document.querySelector("{canvas}")
        .getContext('2d').getImageData({col}, {row}, 1, 1).data)"""
    colours = {}
    for mode in ("layer", "unit", "global"):
        page.select_option("#range-mode", mode)  # repaints within the change event
        colours[mode] = page.evaluate(read)
    assert len({tuple(c) for c in colours.values()}) == 3, colours
    # the map's own scale paints its peak fully; wider scales paint it paler
    assert math.dist(colours["unit"][:3], [214, 96, 39]) < 2
    pale = [math.dist(colours[m][:3], [247, 247, 247]) for m in ("unit", "layer", "global")]
    assert pale[0] > pale[1] > pale[2]


def test_page_works_at_a_narrow_width(page, shot):
    page.set_viewport_size({"width": 1000, "height": 900})
    open_detail(page, "canvas.map[data-layer='0'][data-channel='1']", "#conv-value")
    check_formula(page, 0)
    shot(page, "forward-narrow")
