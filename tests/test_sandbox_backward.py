"""The sandbox's backward pass (POST /api/sandbox with a δ) against PyTorch and the loops.

One helper, many random settings: every padding kind (valid, same with any anchor, full,
symmetric and per-side explicit, negative sides that crop), stride, dilation and mode, with δ
at a random output cell or everywhere. dL/dx and dL/dW must equal PyTorch's autograd and
:mod:`convlens.nn.reference`; the intermediate arrays the page draws must fit together.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

import convlens.nn as nn
from convlens.explain.sandbox import sandbox
from convlens.models import pretrained
from convlens.nn import reference
from convlens.web.app import create_app


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(pretrained()))


def random_settings(rng: random.Random) -> dict:
    kh, kw = rng.randint(1, 5), rng.randint(1, 5)
    padding = rng.choice(
        [
            "valid",
            "same",
            "full",
            rng.randint(0, 3),
            [rng.randint(0, 3), rng.randint(0, 3)],
            [[rng.randint(-1, 3), rng.randint(-1, 3)], [rng.randint(-1, 3), rng.randint(-1, 3)]],
        ]
    )
    anchor = rng.choice([None, [rng.randrange(kh), rng.randrange(kw)]])
    return {
        "input_size": [rng.randint(1, 12), rng.randint(1, 12)],
        "kernel_size": [kh, kw],
        "stride": [rng.choice([1, 1, 2, 3]), rng.choice([1, 2, 3])],
        "dilation": [rng.choice([1, 1, 2, 3]), rng.choice([1, 2])],
        "padding": padding,
        "anchor": anchor,
        "mode": rng.choice(["correlation", "convolution"]),
    }


def engine_conv(settings: dict) -> nn.Conv2D:
    """The layer the settings describe, or a ValueError (what the API answers with 422)."""
    padding = settings["padding"]
    if isinstance(padding, list):
        padding = tuple(tuple(p) if isinstance(p, list) else p for p in padding)
    anchor = settings["anchor"] and tuple(settings["anchor"])
    conv = nn.Conv2D(
        1, 1, tuple(settings["kernel_size"]), tuple(settings["stride"]), padding,
        tuple(settings["dilation"]), anchor, settings["mode"], bias=False,
    )  # fmt: skip
    conv.output_shape((1, *settings["input_size"]))
    return conv


def torch_gradients(answer: dict, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    """dL/dx and dL/dW by PyTorch autograd for L = Σ y·δ (so dL/dy = δ)."""
    x = torch.tensor(answer["input"], dtype=torch.float64)[None, None].requires_grad_()
    w = torch.tensor(answer["kernel"], dtype=torch.float64)[None, None].requires_grad_()
    (top, bottom), (left, right) = answer["padding"]
    kernel = w.flip(-2, -1) if settings["mode"] == "convolution" else w
    y = F.conv2d(
        F.pad(x, (left, right, top, bottom)), kernel,
        stride=tuple(settings["stride"]), dilation=tuple(settings["dilation"]),
    )  # fmt: skip
    delta = torch.tensor(answer["backward"]["delta"], dtype=torch.float64)[None, None]
    np.testing.assert_allclose(y.detach()[0, 0].numpy(), answer["output"], atol=1e-4)
    (y * delta).sum().backward()
    return x.grad[0, 0].numpy(), w.grad[0, 0].numpy()


def check_backward(answer: dict, settings: dict) -> None:
    b = answer["backward"]
    dx, dw = np.array(b["input_grad"]), np.array(b["weight_grad"])
    delta = np.array(b["delta"])
    H, W = settings["input_size"]
    kh, kw = settings["kernel_size"]
    assert dx.shape == (H, W) and dw.shape == (kh, kw)
    assert delta.shape == tuple(answer["output_size"])

    torch_dx, torch_dw = torch_gradients(answer, settings)
    np.testing.assert_allclose(dx, torch_dx, atol=1e-4)
    np.testing.assert_allclose(dw, torch_dw, atol=1e-4)

    # the loops pad only: a negative side crops the input first, its rows get gradient 0
    padding = tuple(tuple(p) for p in answer["padding"])
    (top, bottom), (left, right) = padding
    crop = (max(-top, 0), max(-bottom, 0), max(-left, 0), max(-right, 0))
    x = np.array(answer["input"], np.float64)[crop[0] : H - crop[1], crop[2] : W - crop[3]]
    loops_dx, loops_dw, _ = reference.conv2d_backward(
        delta[None, None], x[None, None], np.array(answer["kernel"], np.float64)[None, None],
        tuple(settings["stride"]), tuple(tuple(max(v, 0) for v in p) for p in padding),
        tuple(settings["dilation"]), settings["mode"],
    )  # fmt: skip
    loops_dx = np.pad(loops_dx[0, 0], ((crop[0], crop[1]), (crop[2], crop[3])))
    np.testing.assert_allclose(dx, loops_dx, atol=1e-4)
    np.testing.assert_allclose(dw, loops_dw[0, 0], atol=1e-4)

    # the steps the page draws: spread δ, full padding, rotated kernel, crop
    (sh, sw), (dh, dw_) = settings["stride"], settings["dilation"]
    eh, ew = b["full_padding"]
    assert (eh, ew) == (dh * (kh - 1), dw_ * (kw - 1))
    spread = np.array(b["spread_delta"])
    np.testing.assert_array_equal(spread[::sh, ::sw], delta)
    assert spread.sum() == delta.sum()
    full = np.array(b["full_delta"])
    np.testing.assert_array_equal(full, np.pad(spread, ((eh, eh), (ew, ew))))
    applied = np.array(answer["effective_kernel"])
    np.testing.assert_array_equal(b["rotated_kernel"], applied[::-1, ::-1])
    padded = np.array(b["padded_input_grad"])
    assert padded.shape == (H + top + bottom, W + left + right)
    reach = b["reach"]
    assert not padded[reach[0] :].any() and not padded[:, reach[1] :].any()
    cropped = padded[max(top, 0) : padded.shape[0] - max(bottom, 0)]
    cropped = cropped[:, max(left, 0) : padded.shape[1] - max(right, 0)]
    uncropped = np.pad(cropped, ((max(-top, 0), max(-bottom, 0)), (max(-left, 0), max(-right, 0))))
    np.testing.assert_allclose(uncropped, dx, atol=1e-4)
    effective = np.array(b["effective_weight_grad"])
    turned = effective[::-1, ::-1] if settings["mode"] == "convolution" else effective
    np.testing.assert_allclose(turned, dw, atol=1e-4)


def test_random_settings_match_torch_and_the_loops(client):
    rng = random.Random(10)
    checked = refused = 0
    while checked < 80:
        settings = random_settings(rng)
        try:
            conv = engine_conv(settings)
        except ValueError as error:
            answer = client.post("/api/sandbox", json={**settings, "delta": "ones"})
            assert answer.status_code == 422 and answer.json()["detail"] == str(error)
            refused += 1
            continue
        out = conv.output_shape((1, *settings["input_size"]))[1:]
        delta = rng.choice(["ones", [rng.randrange(out[0]), rng.randrange(out[1])]])
        answer = client.post("/api/sandbox", json={**settings, "delta": delta})
        assert answer.status_code == 200, (settings, answer.json())
        answer = answer.json()
        expected = np.ones(out)
        if delta != "ones":
            expected = np.zeros(out)
            expected[tuple(delta)] = 1
        np.testing.assert_array_equal(answer["backward"]["delta"], expected)
        check_backward(answer, settings)
        checked += 1
    assert refused > 0  # the random grid reaches settings the engine refuses, too


def test_one_cell_of_delta_gives_the_window_and_the_placed_kernel(client):
    """δ = 1 at (i, j): dL/dW is the input window output (i, j) read; dL/dx is the kernel on it."""
    settings = {"input_size": [6, 7], "kernel_size": [3, 2], "stride": [2, 1], "padding": "valid"}
    answer = client.post("/api/sandbox", json={**settings, "delta": [1, 3]}).json()
    x, w = np.array(answer["input"]), np.array(answer["kernel"])
    np.testing.assert_array_equal(answer["backward"]["weight_grad"], x[2:5, 3:5])
    dx = np.zeros((6, 7))
    dx[2:5, 3:5] = w
    np.testing.assert_array_equal(answer["backward"]["input_grad"], dx)


def test_without_delta_there_is_no_backward_part(client):
    assert "backward" not in client.post("/api/sandbox", json={}).json()


@pytest.mark.parametrize(
    ("delta", "words"),
    [([7, 0], "the output cell (7, 0) for δ lies outside the 7x7 output"), ([0, -1], "(0, -1)")],
)
def test_a_delta_outside_the_output_is_refused_with_a_sentence(client, delta, words):
    answer = client.post("/api/sandbox", json={"padding": "same", "delta": delta})
    assert answer.status_code == 422 and words in answer.json()["detail"]
    with pytest.raises(ValueError, match="lies outside"):
        sandbox((7, 7), (3, 3), padding="same", delta=delta)
    with pytest.raises(ValueError, match="'ones' or an output cell"):
        sandbox((7, 7), (3, 3), delta="twos")
