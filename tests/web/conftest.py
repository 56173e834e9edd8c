"""Page tests: the real server (started by `convlens serve`) and Debian's Chromium via Playwright.

Fixtures:
- ``server``: base URL of `convlens serve --no-browser` on a free port (the shipped model).
- ``saving_server``: ``(url, save_dir)`` of a second such server whose training sessions keep
  their models in a temporary folder (``--save-dir``).
- ``browser``: Chromium from the system (`shutil.which("chromium")`), never a downloaded one.
- ``page``: a fresh page on the server, loaded and ready (``body[data-ready]``); console
  errors and failed requests are collected and must be empty when the test ends.
- ``shot(page, name)``: save a screenshot under test-artifacts/ (kept by CI).

``serve_model(folder, model, ...)`` serves a model built by a test, with one sample picture.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convlens.nn as nn
from convlens.web.samples import folder_samples

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    """`convlens serve` in a subprocess; returns it and its URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "convlens.cli", "serve", "--no-browser", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"convlens serve exited: {process.stdout.read()}")
        try:
            urllib.request.urlopen(f"{url}/api/model", timeout=1).read()
            return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("convlens serve did not answer within 60 s")


@contextmanager
def serve_model(
    folder: Path,
    model: nn.Sequential,
    input_shape: tuple[int, int, int],
    classes: list[str],
    sample: tuple[str, np.ndarray],
) -> Iterator[tuple[str, nn.Sequential, np.ndarray]]:
    """`convlens serve` on ``model``, saved into ``folder``, with one sample picture
    ``(label, uint8 H×W×3 pixels)``; yields the URL, the model as the server loaded it and
    the sample as the server preprocessed it."""
    path, samples = folder / "model.safetensors", folder / "samples"
    model.save(path, input_shape=input_shape, classes=classes)
    samples.mkdir()
    label, pixels = sample
    Image.fromarray(pixels).save(samples / f"{label}_1.png")
    loaded = nn.load(path)
    process, url = start_server("--model", str(path), "--samples", str(samples))
    try:
        yield url, loaded, folder_samples(samples, loaded)[0][0]
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def server():
    process, url = start_server()
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def saving_server(tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("convlens-models")
    process, url = start_server("--save-dir", str(save_dir))
    yield url, save_dir
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: `make test` installs it (Debian package chromium)")
        pytest.skip("Chromium is not installed (Debian package chromium)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def watch_errors(page) -> list[str]:
    """The page's uncaught errors and console errors, collected as they happen."""
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    return problems


def _failed(request, problems: list[str]) -> None:
    """A request that failed on the network. One the browser cancelled (``net::ERR_ABORTED``)
    is not a failure: a test that goes to another server's page cancels what the first page
    still had in flight (seen once: its sandbox's first request)."""
    if request.failure != "net::ERR_ABORTED":
        problems.append(f"request failed: {request.url} ({request.failure})")


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    problems = watch_errors(page)
    page.on("requestfailed", lambda r: _failed(r, problems))
    page.goto(server)
    page.wait_for_selector("body[data-ready='true']", timeout=30_000)
    page.problems = problems  # tests that provoke errors on purpose may clear this
    yield page
    context.close()
    assert not problems, "\n".join(problems)


@pytest.fixture
def shot():
    ARTIFACTS.mkdir(exist_ok=True)

    def take(page, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=False)
        return path

    return take
