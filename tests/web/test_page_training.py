"""Page tests for the training panel: train a copy of the model live in the page.

The numbers the page shows for one weight's update are checked against the server's own
``POST /api/training/{id}/update`` (called here) and against float32 arithmetic done here
with NumPy; a kept model is opened with ``convlens.nn.load``. Every test runs on a server
of its own with a temporary save folder (``saving_server``), so the sessions it starts
neither count against the shared server's limit nor write into the checkout.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import convlens.nn as nn


@pytest.fixture(scope="module")
def server(saving_server):
    """The `page` fixture's server: the one that keeps models in a temporary folder."""
    return saving_server[0]


@pytest.fixture(autouse=True)
def ends_its_session(page):
    """Reset in the page at the end, so that no session outlives its test."""
    yield
    if page.get_attribute("#training", "data-session"):
        page.click("#tr-reset")
        page.wait_for_selector("#training[data-state='idle']")


def api(server: str, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{server}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def open_panel(page) -> None:
    page.wait_for_selector("#training[data-state='idle']")
    page.eval_on_selector("#training", "e => window.scrollTo(0, e.offsetTop - 60)")


def choose_settings(page, optimizer: str, lr: float, batch: int = 16) -> None:
    page.select_option("#tr-optimizer", optimizer)
    page.fill("#tr-lr", str(lr))
    page.fill("#tr-batch", str(batch))


def step_once(page, step: int) -> None:
    page.click("#tr-step")
    page.wait_for_selector(f"#training[data-step='{step}']")
    page.wait_for_selector(f"#tr-update[data-step='{step}'][data-pending='false']")


def shown(page) -> dict[str, float]:
    """The numbers of the update view, exactly (data-value), by role."""
    cells = page.eval_on_selector_all(
        "#tr-update [data-role][data-value]",
        "cells => cells.map(c => [c.dataset.role, c.dataset.value])",
    )
    return {role: float(value) for role, value in cells}


def points(page) -> int:
    return int(page.get_attribute("#tr-loss", "data-points"))


def test_training_runs_live_and_the_page_follows_its_weights(page, shot, server):
    traces: list[dict] = []  # the bodies of the page's trace requests
    pauses: list[str] = []  # the addresses of its pause requests

    def note(request) -> None:
        if request.url.endswith("/api/trace") and request.post_data:
            traces.append(json.loads(request.post_data))
        if "/pause" in request.url:
            pauses.append(request.url)

    page.on("request", note)
    open_panel(page)
    before = page.text_content("#prediction")
    choose_settings(page, "sgd", 0.05)
    page.click("#tr-start")
    page.wait_for_selector("#training[data-state='running']")
    page.wait_for_function("document.querySelector('#tr-loss').dataset.points >= 5")
    first = points(page)
    page.wait_for_function(f"document.querySelector('#tr-loss').dataset.points > {first + 5}")
    assert page.locator("#tr-loss .tr-validation circle").count() >= 1  # step 0 at least
    assert page.locator(".tr-kernel-map[data-layer='0'][data-parameter='weight']").count() == 1
    page.wait_for_selector("#weights-badge:not([hidden])")

    # the whole page follows the session: its traces carry its id and the prediction moves
    session = page.get_attribute("#training", "data-session")
    page.wait_for_function(f"document.querySelector('#prediction').textContent !== {before!r}")
    assert traces and traces[-1].get("training") == session
    shot(page, "training-running")

    page.click("#tr-pause")
    page.wait_for_selector("#training[data-state='paused']")
    state = api(server, "GET", f"/api/training/{session}")
    assert state["running"] is False
    stopped = page.get_attribute("#training", "data-step")
    assert int(stopped) == state["step"]
    time.sleep(0.8)  # longer than two polls
    assert page.get_attribute("#training", "data-step") == stopped
    assert api(server, "GET", f"/api/training/{session}")["step"] == state["step"]
    assert points(page) == state["step"]  # though the pause answered only the newest steps
    assert len(pauses) == 1 and "?since=" in pauses[0]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_one_step_shows_the_numbers_of_the_update(page, shot, server, optimizer):
    open_panel(page)
    lr = {"sgd": 0.05, "momentum": 0.02, "adam": 0.001}[optimizer]
    choose_settings(page, optimizer, lr)
    step_once(page, 1)  # starts a session, then steps
    session = page.get_attribute("#training", "data-session")
    steps = 1 if optimizer == "sgd" else 2  # a second step: velocity, m and v start nonzero
    if steps == 2:
        step_once(page, 2)

    # a weight of the second convolution, picked by clicking its cell in the kernel drawing
    o, c, a, b = 5, 2, 1, 0
    canvas = page.locator(".tr-kernel-map[data-layer='3'][data-parameter='weight']")
    width, height, client_w, client_h = canvas.evaluate(
        "c => [c.width, c.height, c.clientWidth, c.clientHeight]"
    )
    row, col = o * 4 + a, c * 4 + b  # 3×3 kernels, a pixel's gap; one kernel per line
    canvas.click(
        position={"x": 1 + (col + 0.5) * client_w / width, "y": 1 + (row + 0.5) * client_h / height}
    )
    page.wait_for_selector(f"#tr-update[data-index='[{o},{c},{a},{b}]'][data-pending='false']")
    numbers = shown(page)
    expected = api(
        server,
        "POST",
        f"/api/training/{session}/update",
        {"layer": 3, "parameter": "weight", "index": [o, c, a, b]},
    )
    assert expected["step"] == steps
    for role in ("before", "gradient", "lr", "after"):
        assert numbers[role] == expected[role], role
    # the page redoes the step in float32 in the engine's order: exactly the engine's value
    assert numbers["check"] == expected["after"]
    assert page.locator("#tr-update .tr-check.tr-same").count() == 1

    f32 = np.float32
    if optimizer == "sgd":
        after = f32(expected["before"]) - f32(expected["lr"]) * f32(expected["gradient"])
        assert expected["after"] == pytest.approx(float(after), rel=1e-6)
        assert float(after) == expected["after"]  # float32 arithmetic gives it exactly
    elif optimizer == "momentum":
        assert numbers["velocity-before"] == expected["velocity_before"]
        assert numbers["velocity"] == expected["velocity"]
        velocity = f32(expected["velocity_before"]) * f32(0.9) + f32(expected["gradient"])
        assert float(velocity) == pytest.approx(expected["velocity"], rel=1e-6)
        after = f32(expected["before"]) - f32(expected["lr"]) * f32(expected["velocity"])
        assert float(after) == pytest.approx(expected["after"], rel=1e-6)
    else:
        for role in ("m", "v", "m_hat", "v_hat", "t"):
            assert numbers[role.replace("_", "-")] == expected[role], role
        textbook = expected["before"] - expected["lr"] * expected["m_hat"] / (
            np.sqrt(expected["v_hat"]) + expected["eps"]
        )
        assert expected["after"] == pytest.approx(textbook, rel=1e-6)

    # the same weight picked with the index inputs gives the same view
    page.select_option("#tr-layer", "0")
    page.fill("#tr-index-0", "7")
    page.press("#tr-index-0", "Enter")
    page.wait_for_selector("#tr-update[data-index='[7,0,0,0]'][data-pending='false']")
    expected = api(
        server,
        "POST",
        f"/api/training/{session}/update",
        {"layer": 0, "parameter": "weight", "index": [7, 0, 0, 0]},
    )
    assert shown(page)["after"] == expected["after"]
    page.eval_on_selector(".tr-bottom", "e => window.scrollTo(0, e.offsetTop - 70)")
    shot(page, f"training-update-{optimizer}")


def test_keep_saves_the_trained_copy(page, saving_server):
    url, save_dir = saving_server
    open_panel(page)
    assert page.is_disabled("#tr-keep")  # nothing trained yet
    step_once(page, 1)
    page.fill("#tr-keep-name", "after-one-step")
    page.click("#tr-keep")
    page.wait_for_selector("#tr-kept[data-path]")
    path = Path(page.get_attribute("#tr-kept", "data-path"))
    assert path == (save_dir / "after-one-step.safetensors").resolve()
    assert path.name in page.text_content("#tr-kept")
    model = nn.load(path)
    session = page.get_attribute("#training", "data-session")
    value = api(
        url,
        "POST",
        f"/api/training/{session}/update",
        {"layer": 0, "parameter": "bias", "index": [3]},
    )["after"]
    assert float(model.layers[0].bias.data[3]) == value  # the weights after the step

    page.click("#tr-keep")  # the same name again: refused with the server's sentence
    page.wait_for_selector("#tr-status.tr-error")
    assert "already exists" in page.text_content("#tr-status")
    page.problems.clear()  # the refusal's 409 is logged by the browser, on purpose


def test_reset_returns_to_the_served_model(page, shot, server):
    loss = "document.querySelector('.bw-loss-value').dataset.value"  # the backward view's loss
    open_panel(page)
    served = page.evaluate(loss)
    page.click("#tr-loaded")  # start from the loaded weights
    choose_settings(page, "sgd", 0.5, batch=8)
    step_once(page, 1)
    session = page.get_attribute("#training", "data-session")
    page.wait_for_selector("#weights-badge:not([hidden])")
    page.wait_for_function(f"{loss} !== {served!r}")  # the one step moved it
    assert api(server, "GET", "/api/training")["active"] == 1

    page.click("#tr-reset")
    page.wait_for_selector("#training[data-state='idle']")
    page.wait_for_function(f"{loss} === {served!r}")  # exactly the served model's again
    assert page.is_hidden("#weights-badge")
    assert page.get_attribute("#tr-loss", "data-points") == "0"
    assert api(server, "GET", "/api/training")["active"] == 0
    with pytest.raises(urllib.error.HTTPError) as refused:
        api(server, "GET", f"/api/training/{session}")
    assert refused.value.code == 404
    shot(page, "training-reset")


def test_the_empty_loss_chart_has_a_round_axis(page):
    """Before any step the loss axis spans 0-1; it was 0-1e-6, labelled "0.000001" and "5e-7"."""
    open_panel(page)
    labels = page.locator("#tr-loss .tr-axis text:not(.tr-axis-title)").all_text_contents()
    assert "0.5" in labels and not any("e" in label or "0.00" in label for label in labels)


def test_without_a_fitting_dataset_the_panel_says_why(page):
    message = "Training is not available for this model: no known dataset has 1×8×8 images."
    answer = {"datasets": [], "default": None, "message": message, "limit": 4, "active": 0}
    page.route("**/api/training", lambda route: route.fulfill(json=answer))
    page.wait_for_load_state("networkidle")  # a request cut short by the reload would fail
    page.reload()
    page.wait_for_selector("#training[data-state='unavailable']")
    assert page.text_content("#tr-status") == message
    for control in ("#tr-start", "#tr-step", "#tr-pause", "#tr-reset", "#tr-keep", "#tr-lr"):
        assert page.is_disabled(control), control
