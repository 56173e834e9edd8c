"""`convlens serve --model model.onnx`: a student's PyTorch CNN, exported to ONNX, in the page.

The model is built and exported here with ``torch.onnx.export``; the page must draw every
layer of it and classify the bundled digits with the numbers onnxruntime computes.
"""

from __future__ import annotations

import json
import urllib.request
import warnings

import numpy as np
import pytest
from conftest import start_server, watch_errors

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def onnx_server(tmp_path_factory):
    """A server for a small CNN a student might train in PyTorch (28×28 grey input, so the
    page shows the bundled MNIST digits)."""
    T = torch.nn
    torch.manual_seed(0)
    module = T.Sequential(
        T.Conv2d(1, 6, 3, padding="same"), T.ReLU(), T.MaxPool2d(2),
        T.Conv2d(6, 8, 3, stride=2), T.Tanh(), T.AvgPool2d(2), T.Flatten(),
        T.Linear(8 * 3 * 3, 10), T.Softmax(dim=-1),
    ).eval()  # fmt: skip
    path = tmp_path_factory.mktemp("student") / "student.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.zeros(1, 1, 28, 28),), path, dynamo=False,
            dynamic_axes={"input": {0: "batch"}}, input_names=["input"],
        )  # fmt: skip
    process, url = start_server("--model", str(path))
    yield url, module
    process.terminate()
    process.wait(timeout=10)


def get(url: str) -> dict:
    with urllib.request.urlopen(url) as response:
        return json.load(response)


def test_the_page_shows_every_layer_of_the_onnx_model(browser, onnx_server):
    url, module = onnx_server
    description = get(f"{url}/api/model")
    layers = description["layers"]
    assert description["input_shape"] == [1, 28, 28]
    assert [layer["operation"] for layer in layers][:3] == ["convolution", "relu", "max-pool"]
    assert len(layers) == 9 and description["ends_with_softmax"]

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    problems = watch_errors(page)
    try:
        page.goto(url)
        page.wait_for_selector("body[data-ready='true']", timeout=30_000)
        assert page.locator(".layer-column").count() == len(layers)
        for layer in layers:
            if layer["operation"] == "convolution":
                channels, height, width = layer["output_shape"]
                maps = page.locator(f"canvas.map[data-layer='{layer['index']}']")
                assert maps.count() == channels
                sizes = maps.evaluate_all("els => els.map(c => [c.width, c.height])")
                assert sizes == [[width, height]] * channels
        assert page.locator(".score[data-class]").count() == 10
    finally:
        context.close()
    assert not problems, "\n".join(problems)

    samples = get(f"{url}/api/samples")["samples"]
    assert samples, "the bundled digits fit a 28×28 grey model"
    request = urllib.request.Request(
        f"{url}/api/trace",
        json.dumps({"sample": samples[0]["id"]}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        traced = json.load(response)
    from convlens.explain import decode

    x = decode(samples[0]["image"])[None]
    expected = module(torch.tensor(x)).detach().numpy()[0]
    np.testing.assert_allclose(traced["probabilities"], expected, rtol=1e-5, atol=1e-6)
