"""Page tests for the series' layouts: a convolution whose padding crops, and a max-pool with
"same" padding split by a corner anchor. The pool view's window, its numbers and the
backward view's winners must sit where the engine's anchored windows are."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import serve_model
from test_page_backward import choose_target, click_value, explained
from test_page_forward import assert_printed, cells, open_detail

import convlens.nn as nn
from convlens.explain import decode, explain_value, trace


@pytest.fixture(scope="module")
def anchored(tmp_path_factory):
    """(url, model, image) of a server on a model with the series' layouts."""
    rng = np.random.default_rng(1)
    built = nn.Sequential(
        nn.Conv2D(3, 4, (2, 1), padding=((1, -1), (0, 0)), rng=rng),  # centre (1, 0), P = 0
        nn.ReLU(),
        nn.MaxPool2D(3, 2, "same", anchor=(2, 2)),  # two rows and columns of −∞ before
        nn.Flatten(),
        nn.Dense(4 * 6 * 6, 3, rng=rng),
        nn.Softmax(),
    )
    pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    folder = tmp_path_factory.mktemp("anchored")
    with serve_model(folder, built, (3, 12, 12), ["a", "b", "c"], ("b", pixels)) as served:
        yield served


def test_the_pool_view_draws_the_anchored_window(page, shot, anchored):
    url, model, image = anchored
    page.goto(url)
    page.wait_for_selector("body[data-ready='true']")
    open_detail(page, "canvas.map[data-layer='2'][data-channel='1']", "#pool-value")
    c, i, j = (int(v) for v in page.get_attribute(".pool-numbers", "data-position").split(","))
    x = decode(trace(model, image)["layers"][1]["output"])  # the pool's input
    info = model.layers[2].explain(x, (c, i, j))
    assert (info["rows"][0], info["cols"][0]) == (2 * i - 2, 2 * j - 2)  # anchor (2, 2)
    attributes = "r => ['x', 'y', 'width', 'height'].map(a => +r.getAttribute(a))"
    window = page.eval_on_selector(".pool-view g.window rect", attributes)
    assert window == [info["cols"][0], info["rows"][0], 3, 3]
    for cell in cells(page, ".pool-numbers [data-role='input']"):
        value = info["inputs"][int(cell["r"])][int(cell["c"])]
        if value is None:
            assert cell["text"] == "−∞"
        else:
            assert_printed(cell["text"], value)
    assert_printed(page.inner_text("#pool-value"), info["value"])
    assert "“same”" in page.inner_text(".pool-view .params")
    shot(page, "forward-pool-anchored")


def test_the_backward_view_marks_the_anchored_winners(page, shot, anchored):
    url, model, image = anchored
    page.goto(url)
    page.wait_for_selector("#backward[data-target='1']")
    choose_target(page, 1)
    result = trace(model, image, 1)
    pool = model.layers[2]
    pool.forward(decode(result["layers"][1]["output"])[None])
    c = 2
    a, b = np.divmod(pool.argmax[0, c].astype(int), 3)
    i, j = np.indices(a.shape)
    rows, cols = (2 * i + a - 2).ravel(), (2 * j + b - 2).ravel()  # anchor (2, 2): top 2
    winners = {(int(r), int(q)) for r, q in zip(rows, cols, strict=True)}
    h, w = sorted(winners)[len(winners) // 2]
    click_value(page, 1, c, h, w)
    value = explained(page, [c, h, w])
    assert value == pytest.approx(explain_value(model, image, 2, [c, h, w], 1)["value"], rel=1e-5)
    marked = page.eval_on_selector_all(
        "[data-role='winner']", "m => m.map(e => [+e.dataset.row, +e.dataset.col])"
    )
    assert set(map(tuple, marked)) == winners
    shot(page, "backward-maxpool-anchored")
