"""The notebook widget: its message handler in this process, and the widget itself inside a real
JupyterLab (started here on 127.0.0.1 with a token) driven by Debian's Chromium.

In JupyterLab the widget lives in a shadow root; Playwright's locators look inside it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal

import numpy as np
import pytest
from conftest import watch_errors

pytest.importorskip("anywidget")

from convlens import nn
from convlens.explain import explain_value
from convlens.models import pretrained
from convlens.web.samples import bundled_samples
from convlens.widget import Explainer


# -- the message handler, in this process ----------------------------------------------------
class Recorder:
    """The widget's answers, as the frontend would receive them."""

    def __init__(self, widget: Explainer) -> None:
        self.answers: dict = {}
        widget.send = self.send

    def send(self, content, buffers=None) -> None:
        self.answers[content["id"]] = (content, json.loads(bytes(buffers[0])))

    def wait(self, count: int) -> None:
        deadline = time.monotonic() + 30
        while len(self.answers) < count and time.monotonic() < deadline:
            time.sleep(0.01)


def ask(widget: Explainer, recorder: Recorder, *messages, buffers=None) -> list[tuple[int, dict]]:
    """Send ``messages`` as the frontend would; their answers' (status, payload), in order."""
    start = len(recorder.answers)
    for message in messages:
        widget._answer(widget, message, buffers or [])
    recorder.wait(start + len(messages))
    ids = [m.get("id") if isinstance(m, dict) else None for m in messages]
    return [(recorder.answers[i][0]["status"], recorder.answers[i][1]) for i in ids]


@pytest.fixture
def widget():
    widget = Explainer()
    yield widget
    widget.close()


def request(number, method="GET", path="/api/model", **extra) -> dict:
    return {"kind": "convlens-request", "id": number, "method": method, "path": path, **extra}


def test_the_handler_answers_with_the_servers_routes(widget):
    recorder = Recorder(widget)
    model = widget.model
    sample = bundled_samples(model)[3][0]
    (status, described), (_, traced), (_, explained) = ask(
        widget,
        recorder,
        request(1),
        request(2, "POST", "/api/trace", body={"sample": 3, "target": 1}),
        request(3, "POST", "/api/explain", body={"sample": 3, "layer": 0, "index": [2, 5, 7]}),
    )
    assert status == 200 and len(described["layers"]) == len(model.layers)
    assert traced["target"] == 1
    assert traced["prediction"] == int(np.argmax(model.forward(sample[None])))
    assert explained["value"] == pytest.approx(explain_value(model, sample, 0, [2, 5, 7])["value"])


def test_bad_requests_are_answered_with_a_sentence_and_the_comm_keeps_working(widget):
    recorder = Recorder(widget)
    bad = [
        request(1, "PUT", "/api/trace"),
        request(2, "GET", "/index.html"),
        request(3, "GET", "/api/../etc/passwd"),
        request(4, "GET", 42),
        request(5, "POST", "/api/trace", body={"sample": 999}),
        request(6, "POST", "/api/trace", body={"image": {"shape": [1, 2], "data": "@@"}}),
        request(7, "POST", "/api/explain", body="not an object"),
        request(8, "GET", "/api/nothing/here"),
        request(9, "POST", "/api/upload", file={"name": "notes.txt", "type": "text/plain"}),
        request(10, "POST", "/api/trace", body={"sample": float("nan")}),
        request(11, "POST", "/api/training/unknown/step", body={"steps": 1}),
    ]
    answers = ask(widget, recorder, *bad[:8], *bad[9:])
    upload = ask(widget, recorder, bad[8], buffers=[b"just some words"])
    for (status, payload), message in zip(
        [*answers, *upload], [*bad[:8], *bad[9:], bad[8]], strict=True
    ):
        assert 400 <= status < 500, (message, status, payload)
        assert isinstance(payload["detail"], str) and len(payload["detail"].split()) >= 3, payload
    # messages that are not requests of ours are left alone, without an exception
    for junk in ["text", None, [1, 2], {"kind": "something-else"}, {"kind": "convlens-request"}]:
        widget._answer(widget, junk, [])
    [(status, payload)] = ask(widget, recorder, request(12))
    assert status == 200 and payload["input_shape"] == [1, 28, 28]


def test_a_failing_route_is_answered_not_raised(widget, monkeypatch):
    recorder = Recorder(widget)

    async def broken(scope, receive, send):
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(widget._app, "app", broken)
    [(status, payload)] = ask(widget, recorder, request(1))
    assert status == 500 and "the disk is on fire" in payload["detail"]


def test_models_images_and_targets_are_checked_in_the_kernel(tmp_path):
    model = nn.Sequential(nn.Conv2D(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Dense(2 * 6 * 6, 3))
    with pytest.raises(ValueError, match="input shape"):
        Explainer(model)
    model.input_shape = (1, 8, 8)
    widget = Explainer(model, image=np.zeros((8, 8)), classes=["a", "b", "c"])
    try:
        assert widget.image.shape == (1, 8, 8) and widget._image["source"]
        assert widget.model.classes == ["a", "b", "c"]
        with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
            widget.image = np.zeros((3, 3))
        with pytest.raises(ValueError, match="sample 0 does not exist"):
            widget.image = 0  # no samples for an 8×8 model
        with pytest.raises(Exception, match="not a class"):
            widget.target = 3
        widget.target = 2
    finally:
        widget.close()
    path = tmp_path / "m.safetensors"
    model.save(path)
    from_file = Explainer(path)
    assert from_file.model.input_shape == (1, 8, 8)
    from_file.close()


# -- the widget in JupyterLab ---------------------------------------------------------------
TOKEN = "convlens-test-token"
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": "from convlens.widget import Explainer\nw = Explainer()\nw",
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": "w2 = Explainer(image=3)  # a second widget in the same notebook\nw2",
        },
    ],
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 with a token, its own settings, and a notebook that
    shows the widget; yields the notebook's URL."""
    root = tmp_path_factory.mktemp("lab")
    (root / "widget.ipynb").write_text(json.dumps(NOTEBOOK))
    settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
        "JUPYTER_CONFIG_DIR": str(root / ".config"),
        "JUPYTERLAB_SETTINGS_DIR": str(root / ".settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    port = free_port()
    log = open(root / "server.log", "w")  # open while the server runs
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.extension_manager=readonly",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=1).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"JupyterLab did not start: {(root / 'server.log').read_text()}")
            time.sleep(0.2)
    yield f"{url}/lab/tree/widget.ipynb?token={TOKEN}"
    process.terminate()
    process.wait(timeout=20)
    log.close()


def assert_printed(text: str, value: float) -> None:
    """``text`` is ``value`` rounded to the digits it shows."""
    printed = Decimal(text.strip().replace("−", "-"))
    place = 10.0 ** printed.as_tuple().exponent
    tolerance = 0.5 * place * (1 + 1e-6) + 1e-9 * abs(value) if printed else 0.0
    assert abs(float(printed) - value) <= tolerance, f"widget shows {text}, engine has {value!r}"


def run_in_kernel(page, code: str) -> None:
    """Run ``code`` in the notebook's kernel, as a later cell would."""
    page.evaluate(
        """code => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel
            .requestExecute({code}).done""",
        code,
    )


def test_the_widget_in_jupyterlab(browser, jupyterlab, shot):
    from playwright.sync_api import expect

    model = pretrained()
    samples = bundled_samples(model)
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    problems = watch_errors(page)
    page.goto(jupyterlab)
    page.wait_for_function(
        "window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
        "?.connectionStatus === 'connected'",
        timeout=90_000,
    )
    page.evaluate("window.jupyterapp.shell.collapseLeft()")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    widget, second = (
        page.locator(".convlens-widget").nth(0),
        page.locator(".convlens-widget").nth(1),
    )
    expect(widget).to_have_attribute("data-ready", "true", timeout=60_000)

    # the overview: one column per layer of the model, its prediction for the first sample
    assert widget.locator(".layer-column").count() == len(model.layers)
    assert f"{len(model.layers)} layers" in widget.locator("#model-name").inner_text()
    first = int(np.argmax(model.forward(samples[0][0][None])))
    expect(widget.locator("#prediction")).to_have_text(re.compile(f"^prediction: {first} "))
    shot(page, "widget-jupyterlab")

    # a click on a conv map opens its detail, with the numbers explain_value computes
    widget.locator("canvas.map[data-layer='3'][data-channel='5']").click()
    value = widget.locator("#detail:not([hidden]) #conv-value")
    expect(value).to_be_visible(timeout=20_000)
    at = widget.locator(".formula-view").get_attribute("data-position")
    position = [int(v) for v in at.split(",")]
    payload = explain_value(model, samples[0][0], 3, position)
    assert_printed(value.inner_text(), payload["value"])
    assert_printed(widget.locator("#conv-bias").inner_text(), payload["bias"])
    products = widget.locator(".formula-view [data-role='product']")
    assert products.count() == np.size(payload["products"])
    for cell in products.evaluate_all(
        "els => els.map(e => ({text: e.textContent, r: e.dataset.r, c: e.dataset.c,"
        " channel: e.closest('[data-channel]').dataset.channel}))"
    ):
        expected = payload["products"][int(cell["channel"])][int(cell["r"])][int(cell["c"])]
        assert_printed(cell["text"], expected)
    shot(page, "widget-jupyterlab-detail")

    # the kernel shows another image: a sample by number, then an array
    index = next(i for i, (_, label) in enumerate(samples) if label == "7")
    run_in_kernel(page, f"w.image = {index}")
    expect(widget.locator("#prediction")).to_have_text(re.compile("^prediction: 7 "))
    expect(widget.locator(".input-current figcaption")).to_contain_text(f"sample {index + 1} ")
    x = samples[next(i for i, (_, label) in enumerate(samples) if label == "3")][0]
    run_in_kernel(
        page,
        "from convlens.web.samples import bundled_samples\n"
        "w.image = [s for s, label in bundled_samples(w.model) if label == '3'][0]",
    )
    expected = int(np.argmax(model.forward(x[None])))
    expect(widget.locator("#prediction")).to_have_text(re.compile(f"^prediction: {expected} "))
    expect(widget.locator(".input-current figcaption")).to_contain_text("from the kernel")

    # widget.target picks the backward pass's class; a class picked in the widget comes back
    run_in_kernel(page, "w.target = 5")
    expect(widget.locator("#backward")).to_have_attribute("data-target", "5")
    widget.locator("#target-class").select_option("2")
    expect(widget.locator("#backward")).to_have_attribute("data-target", "2")
    run_in_kernel(page, "assert w.target == 2, w.target")

    # keys typed into the widget stay there (no notebook shortcut: "m" would make a markdown
    # cell, "1" a heading); the sandbox says in its own place why its settings cannot work
    field = widget.locator("#sb-input-h")
    field.click()
    field.press("Control+a")
    page.keyboard.type("1m")
    widget.locator("#sb-padding").select_option("valid")
    expect(widget.locator("#sandbox-message")).to_contain_text("kernel", timeout=20_000)
    assert page.locator(".jp-Notebook .jp-CodeCell").count() == len(NOTEBOOK["cells"])
    assert page.locator(".jp-Notebook .jp-MarkdownCell").count() == 0

    # a second widget in the notebook has its own state: what happens in one stays there
    second.scroll_into_view_if_needed()
    expect(second).to_have_attribute("data-ready", "true", timeout=60_000)
    expect(second.locator("#prediction")).to_have_text(re.compile("^prediction: 1 "))
    second.locator(".sample[data-sample='8']").click()  # a 4
    expect(second.locator("#prediction")).to_have_text(re.compile("^prediction: 4 "))
    assert widget.locator("#prediction").inner_text().startswith(f"prediction: {expected} ")
    assert widget.locator("#backward").get_attribute("data-target") == "2"

    # a request the kernel refuses is said in the widget, which keeps working
    upload = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"just some words"}
    widget.locator("#upload").set_input_files(files=[upload])
    expect(widget.locator("#error")).to_contain_text("notes.txt", timeout=20_000)
    widget.locator(".sample[data-sample='0']").click()
    expect(widget.locator("#prediction")).to_have_text(re.compile(f"^prediction: {first} "))
    run_in_kernel(page, "w.image = w.image")  # the same image again is shown again
    expect(widget.locator("#prediction")).to_have_text(re.compile(f"^prediction: {expected} "))
    assert not problems, "\n".join(problems)
    context.close()
