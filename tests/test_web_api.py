"""The explainer's API: every route, its numbers against the engine, and bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import convlens.nn as nn
from convlens.data import load_dataset
from convlens.explain import decode, encode, explain_value, trace
from convlens.models import pretrained
from convlens.web.app import MAX_UPLOAD_BYTES, create_app
from convlens.web.samples import bundled_samples, folder_samples


@pytest.fixture(scope="module")
def model():
    return pretrained()


@pytest.fixture(scope="module")
def client(model):
    return TestClient(create_app(model, bundled_samples(model)))


@pytest.fixture(scope="module")
def digit():
    x, y = load_dataset("mnist-bundled", "test")
    return x[7], int(y[7])


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_model_description(client, model):
    description = client.get("/api/model").json()
    assert description["input_shape"] == [1, 28, 28]
    assert description["classes"] == [str(k) for k in range(10)]
    assert [layer["label"] for layer in description["layers"]] == [repr(x) for x in model]
    assert [layer["operation"] for layer in description["layers"]][:3] == [
        "convolution", "relu", "max-pool",
    ]  # fmt: skip
    kernel = decode(description["layers"][0]["weights"]["weight"])
    np.testing.assert_array_equal(kernel, model[0].weight.data)
    assert "weight" not in description["layers"][6]["weights"]  # the big dense matrix stays home
    assert description["layers"][0]["padding2d"] == [[0, 0], [0, 0]]
    assert description["layers"][1]["padding2d"] is None
    assert description["samples"] == 20


def test_samples_are_bundled_test_digits(client):
    samples = client.get("/api/samples").json()["samples"]
    assert [s["label"] for s in samples[:4]] == ["0", "0", "1", "1"]
    x, y = load_dataset("mnist-bundled", "test")
    first = decode(samples[0]["image"])
    np.testing.assert_array_equal(first, x[np.flatnonzero(y == 0)[0]])


def test_trace_equals_the_engine(client, model, digit):
    image, label = digit
    answer = client.post("/api/trace", json={"image": encode(image), "target": label}).json()
    expected = trace(model, image, label)
    assert answer["prediction"] == expected["prediction"] == label
    np.testing.assert_allclose(answer["probabilities"], expected["probabilities"])
    outputs = [decode(layer["output"]) for layer in answer["layers"]]
    x = image[None]
    for layer, output in zip(model, outputs, strict=True):
        x = layer.forward(x)
        np.testing.assert_array_equal(output, x[0])
    p_minus_y = np.array(answer["probabilities"]) - np.eye(10)[label]
    np.testing.assert_allclose(decode(answer["gradients"][-1]), p_minus_y, atol=1e-6)
    assert decode(answer["input_gradient"]).shape == (1, 28, 28)
    assert "argmax" in answer["layers"][2]["state"]


def test_trace_by_sample_number(client):
    answer = client.post("/api/trace", json={"sample": 3}).json()
    assert "gradients" not in answer and len(answer["layers"]) == 9


@pytest.mark.parametrize(
    ("layer", "index", "target"),
    [(0, [5, 10, 12], None), (3, [31, 4, 4], None), (6, [17], None), (8, [3], None),
     (0, [0, 13, 13], 2), (2, [4, 20, 21], 2), (3, [15, 6, 7], 2), (6, [1000], 2)],
)  # fmt: skip
def test_explain_equals_the_engine(client, model, digit, layer, index, target):
    image, _ = digit
    body = {"image": encode(image), "layer": layer, "index": index, "target": target}
    answer = client.post("/api/explain", json=body).json()
    assert answer == json.loads(json.dumps(explain_value(model, image, layer, index, target)))


def test_explaining_a_padded_max_pool_window_is_valid_json():
    model = nn.Sequential(nn.MaxPool2D(3, 2, 1))
    model.input_shape = (1, 5, 5)
    client = TestClient(create_app(model))
    body = {"image": encode(np.arange(25.0).reshape(1, 5, 5)), "layer": 0, "index": [0, 0, 0]}
    answer = client.post("/api/explain", json=body).json()
    assert answer["inputs"][0] == [None, None, None] and answer["inputs"][1] == [None, 0.0, 1.0]
    assert answer["winner"] == [2, 2] and answer["value"] == 6.0


def test_upload_preprocesses_any_picture(client):
    picture = Image.new("RGB", (300, 200), "black")
    picture.paste("white", (140, 50, 160, 150))  # a vertical bar: a one
    answer = client.post("/api/upload", files={"file": ("one.png", png_bytes(picture))})
    assert answer.status_code == 200
    image = decode(answer.json()["image"])
    assert image.shape == (1, 28, 28) and image.max() == pytest.approx(1.0)
    traced = client.post("/api/trace", json={"image": answer.json()["image"]}).json()
    assert traced["prediction"] == 1


@pytest.mark.parametrize(
    ("content", "status", "words"),
    [
        (b"just some text, not a picture", 415, "not an image"),
        (png_bytes(Image.new("L", (64, 64), 128))[:60], 415, "truncated or corrupt"),
        (b"", 415, "empty"),
        (b"\x89PNG" + b"\x00" * MAX_UPLOAD_BYTES, 413, "larger than 10 MB"),
    ],
    ids=["text", "truncated", "empty", "oversized"],
)
def test_bad_uploads_get_a_sentence_and_the_server_stays_up(client, content, status, words):
    answer = client.post("/api/upload", files={"file": ("x.png", content)})
    assert answer.status_code == status and words in answer.json()["detail"]
    assert client.post("/api/trace", json={"sample": 0}).status_code == 200


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"image": {"shape": [1, 28, 27], "data": ""}}, "float32 values"),
        (
            {"image": {"shape": [1, 2, 2], "data": encode(np.zeros((1, 2, 2)))["data"]}},
            "model takes",
        ),
        ({"image": {"shape": [784], "data": "***"}}, "base64"),
        ({"sample": 999}, "sample 999 does not exist"),
        ({}, "give an 'image' or a 'sample'"),
        ({"sample": 0, "target": 10}, "target class 10"),
        ({"image": encode(np.full((1, 28, 28), np.nan))}, "NaN"),
    ],
)
def test_bad_trace_requests(client, body, words):
    answer = client.post("/api/trace", json=body)
    assert answer.status_code == 422 and words in answer.json()["detail"]


def test_bad_explain_requests(client):
    bad = [({"layer": 9, "index": [0]}, "layer 9 does not exist"),
           ({"layer": 0, "index": [16, 0, 0]}, "outside layer 0"),
           ({"layer": 8, "index": [1, 2]}, "outside layer 8")]  # fmt: skip
    for fields, words in bad:
        answer = client.post("/api/explain", json={"sample": 0, **fields})
        assert answer.status_code == 422 and words in answer.json()["detail"], answer.json()


def test_sandbox_runs_the_engine(client):
    settings = dict(
        input_size=[7, 6], kernel_size=[3, 2], stride=[2, 1], padding="same", dilation=[1, 2],
        anchor=[0, 1], mode="convolution",
    )  # fmt: skip
    answer = client.post("/api/sandbox", json=settings).json()
    conv = nn.Conv2D(1, 1, (3, 2), (2, 1), "same", (1, 2), (0, 1), "convolution")
    assert answer["output_size"] == list(conv.output_shape((1, 7, 6))[1:]) == [4, 6]
    assert answer["padding"] == [list(p) for p in conv.padding2d]
    conv.weight.data = np.array(answer["kernel"], np.float32)[None, None]
    conv.bias.data = np.zeros(1, np.float32)
    expected = conv.forward(np.array(answer["input"], np.float32)[None, None])[0, 0]
    np.testing.assert_allclose(answer["output"], expected)
    np.testing.assert_array_equal(
        answer["effective_kernel"], np.array(answer["kernel"])[::-1, ::-1]
    )


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"input_size": [4, 4], "kernel_size": [5, 5]}, "spans 5 rows, but the input is only 4x4"),
        ({"stride": [0, 1]}, "stride must be >= 1"),
        ({"anchor": [3, 0]}, "anchor (3, 0) lies outside the 3x3 kernel"),
        ({"padding": "half"}, "padding must be"),
        ({"mode": "conv"}, "mode must be one of"),
        ({"input_size": [100, 5]}, "1 to 32 pixels"),
    ],
)
def test_sandbox_explains_invalid_settings(client, settings, words):
    answer = client.post("/api/sandbox", json=settings)
    assert answer.status_code == 422 and words in str(answer.json()["detail"])


def test_unknown_routes_and_escaping_static_files(client):
    assert client.get("/api/nothing").status_code == 404
    assert client.post("/api/model").status_code in (404, 405)
    for path in ["/../pyproject.toml", "/%2e%2e/app.py", "/js/../../app.py", "/..%2fapp.py"]:
        answer = client.get(path)
        assert answer.status_code == 404 and b"create_app" not in answer.content, path
    page = client.get("/")
    assert page.status_code == 200 and b'type="module"' in page.content


def test_folder_samples_are_labelled_by_file_name(tmp_path, model):
    Image.new("L", (40, 40), 0).save(tmp_path / "espresso_1.jpeg")
    Image.new("L", (40, 40), 255).save(tmp_path / "red_panda_12.png")
    (tmp_path / "notes.txt").write_text("not a picture")
    samples = folder_samples(tmp_path, model)
    assert [label for _, label in samples] == ["espresso", "red panda"]
    assert samples[0][0].shape == (1, 28, 28)


def test_models_without_input_shape_are_refused():
    with pytest.raises(ValueError, match="no input shape"):
        create_app(nn.Sequential(nn.Flatten()))
