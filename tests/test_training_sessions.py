"""Live training: per-image parameter gradients and training sessions, through the HTTP API.

Per-image gradients are checked against PyTorch autograd on random layers; every session
number (before, gradient, after, the optimizer's terms) against the engine's own arithmetic
and torch.optim.Adam.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from helpers import assert_close

import convlens.nn as nn
from convlens.explain import decode, encode, explain_parameter, trace
from convlens.models import pretrained
from convlens.train.session import Sessions, SessionSettings, TrainingSession, _Data
from convlens.web.app import create_app
from convlens.web.samples import bundled_samples


@pytest.fixture(scope="module")
def served():
    return pretrained()


@pytest.fixture(scope="module")
def client(served, tmp_path_factory):
    app = create_app(served, bundled_samples(served), save_dir=tmp_path_factory.mktemp("kept"))
    with TestClient(app) as client:
        yield client
        app.state.sessions.close()


@pytest.fixture
def session(client):
    """A fresh session (plain SGD), deleted afterwards."""
    created = []

    def start(**settings):
        answer = client.post("/api/training", json={"optimizer": "sgd", "momentum": 0, **settings})
        assert answer.status_code == 201, answer.text
        created.append(answer.json()["id"])
        return answer.json()["id"]

    yield start
    for sid in created:
        client.delete(f"/api/training/{sid}")


# -- per-image parameter gradients -----------------------------------------------------------
PADDINGS = ["valid", "same", "full", 1, (2, 0), ((1, 0), (0, 2)), ((-1, 2), (1, -1))]


def random_model(rng: np.random.Generator) -> nn.Sequential:
    """Conv2D with random settings → ReLU → Flatten → Dense, in float64, with an input shape."""
    for _ in range(100):
        C, O = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        kernel = tuple(int(k) for k in rng.integers(1, 4, 2))
        stride = tuple(int(s) for s in rng.integers(1, 3, 2))
        dilation = tuple(int(d) for d in rng.integers(1, 3, 2))
        padding = PADDINGS[rng.integers(len(PADDINGS))]
        anchor = (int(rng.integers(kernel[0])), int(rng.integers(kernel[1])))
        mode = ["correlation", "convolution"][rng.integers(2)]
        conv = nn.Conv2D(C, O, kernel, stride, padding, dilation, anchor, mode, rng=rng)
        shape = (C, int(rng.integers(4, 9)), int(rng.integers(4, 9)))
        try:
            features = int(np.prod(conv.output_shape(shape)))
        except ValueError:
            continue  # the kernel does not fit: draw again
        model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Dense(features, 4, rng=rng))
        model.input_shape = shape
        return model.astype(np.float64)
    raise AssertionError("no fitting configuration drawn")


def torch_gradients(model: nn.Sequential, image: np.ndarray, target: int) -> dict[str, np.ndarray]:
    """dL/dθ of cross-entropy for one image by autograd, from the stored tensors."""
    conv, dense = model[0], model[3]
    w, b = (torch.tensor(p.data, requires_grad=True) for p in conv.parameters())
    dw, db = (torch.tensor(p.data, requires_grad=True) for p in dense.parameters())
    (top, bottom), (left, right) = conv.padding2d
    x = F.pad(torch.tensor(image[None]), (left, right, top, bottom))
    kernel = w.flip(-1, -2) if conv.mode == "convolution" else w
    y = F.conv2d(x, kernel, b, stride=conv.stride, dilation=conv.dilation)
    scores = F.linear(F.relu(y).flatten(1), dw, db)
    F.cross_entropy(scores, torch.tensor([target])).backward()
    return {"0.weight": w.grad, "0.bias": b.grad, "3.weight": dw.grad, "3.bias": db.grad}


@pytest.mark.parametrize("seed", range(12))
def test_parameter_gradients_equal_autograd(seed):
    rng = np.random.default_rng(seed)
    model = random_model(rng)
    # the image travels as float32: draw one that float32 holds exactly
    image = rng.standard_normal(model.input_shape).astype(np.float32).astype(np.float64)
    target = int(rng.integers(4))
    client = TestClient(create_app(model))
    expected = torch_gradients(model, image, target)
    body = {"image": encode(image), "target": target}
    for name, grad in expected.items():
        layer, parameter = name.split(".")
        for _ in range(4):
            index = [int(rng.integers(n)) for n in grad.shape]
            request = {**body, "layer": int(layer), "parameter": parameter, "index": index}
            answer = client.post("/api/explain", json=request)
            assert answer.status_code == 200, answer.text
            found = answer.json()
            assert found["parameter"] == parameter and found["index"] == index
            assert_close(found["value"], grad[tuple(index)].item(), 1e-9, f"{name}{index}")


def test_conv_weight_gradient_is_the_input_correlated_with_delta():
    rng = np.random.default_rng(7)
    for _ in range(10):
        model = random_model(rng)
        image = rng.standard_normal(model.input_shape)
        conv = model[0]
        o, c = int(rng.integers(conv.out_channels)), int(rng.integers(conv.in_channels))
        a, b = (int(rng.integers(k)) for k in conv.kernel_size)
        found = explain_parameter(model, image, 0, "weight", [o, c, a, b], 1)
        inputs, deltas = np.array(found["inputs"]), np.array(found["deltas"])
        np.testing.assert_allclose(np.array(found["products"]), inputs * deltas)
        assert found["value"] == pytest.approx(np.sum(inputs * deltas), rel=1e-12, abs=1e-15)
        # padding cells are zeros, and inside cells are the input at (rows[i], cols[j])
        inside = np.array(found["inside"])
        assert np.all(inputs[~inside] == 0)
        for i, r in enumerate(found["rows"]):
            for j, col in enumerate(found["cols"]):
                if inside[i, j]:
                    assert inputs[i, j] == image[c, r, col]
        expected = torch_gradients(model, image, 1)["0.weight"][o, c, a, b].item()
        assert found["value"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_parameter_gradient_refusals(client):
    base = {"sample": 0, "target": 3}
    cases = [
        ({"layer": 1, "parameter": "weight", "index": [0]}, "has no 'weight'"),
        ({"layer": 0, "parameter": "weight", "index": [0, 0, 9, 0]}, "outside"),
        ({"layer": 0, "parameter": "bias", "index": [0], "target": None}, "target"),
        ({"layer": 99, "parameter": "bias", "index": [0]}, "does not exist"),
    ]
    for request, words in cases:
        answer = client.post("/api/explain", json={**base, **request})
        assert answer.status_code == 422, (request, answer.text)
        assert words in answer.json()["detail"]


# -- sessions: the numbers of each update -----------------------------------------------------
def update(client, sid, layer, parameter, index):
    answer = client.post(
        f"/api/training/{sid}/update", json={"layer": layer, "parameter": parameter, "index": index}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def random_value(rng, served) -> tuple[int, str, list[int]]:
    layers = [i for i, layer in enumerate(served.layers) if layer.parameters()]
    layer = int(rng.choice(layers))
    name, p = list(served[layer].named_parameters())[int(rng.integers(2))]
    return layer, name, [int(rng.integers(n)) for n in p.shape]


def test_sgd_step_is_before_minus_lr_times_gradient(client, session, served):
    lr = 0.037
    sid = session(lr=lr)
    assert (
        client.post(
            f"/api/training/{sid}/update", json={"layer": 0, "index": [0, 0, 0, 0]}
        ).status_code
        == 409
    )
    rng = np.random.default_rng(0)
    for _ in range(3):
        client.post(f"/api/training/{sid}/step", json={"steps": 1})
        for _ in range(5):
            layer, name, index = random_value(rng, served)
            u = update(client, sid, layer, name, index)
            before, gradient = np.float32(u["before"]), np.float32(u["gradient"])
            # exactly the engine's float32 arithmetic: θ −= lr · g
            assert np.float32(u["after"]) == before - np.float32(lr) * gradient
            assert u["lr"] == lr and u["velocity"] is None


def test_momentum_terms(client, session, served):
    sid = session(lr=0.01, momentum=0.9)
    rng = np.random.default_rng(1)
    layer, name, index = random_value(rng, served)
    client.post(f"/api/training/{sid}/step")
    first = update(client, sid, layer, name, index)
    assert first["velocity_before"] is None and first["velocity"] == first["gradient"]
    client.post(f"/api/training/{sid}/step")
    u = update(client, sid, layer, name, index)
    assert u["velocity_before"] == first["velocity"] and u["before"] == first["after"]
    f32 = np.float32
    assert f32(u["velocity"]) == f32(0.9) * f32(u["velocity_before"]) + f32(u["gradient"])
    assert f32(u["after"]) == f32(u["before"]) - f32(0.01) * f32(u["velocity"])


def test_adam_terms_equal_torch_optim(client, session, served):
    sid = session(optimizer="adam", lr=0.002)
    rng = np.random.default_rng(2)
    layer, name, index = random_value(rng, served)
    records = []
    for _ in range(4):
        client.post(f"/api/training/{sid}/step")
        records.append(update(client, sid, layer, name, index))
    theta = torch.tensor([records[0]["before"]], dtype=torch.float32, requires_grad=True)
    adam = torch.optim.Adam([theta], lr=0.002)
    for t, u in enumerate(records, start=1):
        theta.grad = torch.tensor([u["gradient"]], dtype=torch.float32)
        adam.step()
        state = adam.state[theta]
        assert u["t"] == t
        assert u["m"] == pytest.approx(state["exp_avg"].item(), rel=1e-6, abs=1e-12)
        assert u["v"] == pytest.approx(state["exp_avg_sq"].item(), rel=1e-6, abs=1e-15)
        assert u["after"] == pytest.approx(theta.item(), rel=1e-6, abs=1e-9)
        assert u["m_hat"] == pytest.approx(u["m"] / (1 - 0.9**t))
        assert u["v_hat"] == pytest.approx(u["v"] / (1 - 0.999**t))


@pytest.mark.parametrize("batch_size, every", [(32, 50), (64, 25), (100, 16), (512, 4)])
def test_validation_comes_every_1600_training_images(client, session, batch_size, every):
    """Validation costs a fixed 500 images, so it is spaced by training images, not steps:
    at batch 32 every 25 steps took a sixth of a session's time."""
    sid = session(batch_size=batch_size)
    steps = 2 * every + 1
    state = client.post(f"/api/training/{sid}/step", json={"steps": steps}).json()
    assert [v["step"] for v in state["validation"]] == [0, every, 2 * every]
    paused = client.post(f"/api/training/{sid}/pause").json()  # pausing validates too
    assert [v["step"] for v in paused["validation"]] == [0, every, 2 * every, steps]


def test_fresh_weights_learn(client, session):
    sid = session(fresh=True, seed=3, lr=0.05, momentum=0.9)
    state = client.post(f"/api/training/{sid}/step", json={"steps": 100}).json()
    assert state["step"] == 100 and len(state["history"]) == 100
    assert [h["step"] for h in state["history"]] == list(range(1, 101))
    losses = [h["loss"] for h in state["history"]]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    validation = state["validation"]
    assert validation[0]["step"] == 0 and validation[-1]["step"] == 100
    assert validation[-1]["loss"] < validation[0]["loss"]
    assert validation[-1]["accuracy"] > validation[0]["accuracy"] + 0.2


def test_the_served_model_never_changes(client, session, served):
    before = client.post("/api/trace", json={"sample": 3, "target": 1}).json()
    weights = {k: v.copy() for k, v in served.tensors().items()}
    sid = session(lr=0.5)
    client.post(f"/api/training/{sid}/step", json={"steps": 5})
    trained = client.post("/api/trace", json={"sample": 3, "target": 1, "training": sid}).json()
    assert trained["probabilities"] != before["probabilities"]  # the copy did learn
    assert client.post("/api/trace", json={"sample": 3, "target": 1}).json() == before
    for name, array in served.tensors().items():
        np.testing.assert_array_equal(array, weights[name])


def test_trace_and_explain_follow_the_session(client, session):
    sid = session(lr=0.1)
    client.post(f"/api/training/{sid}/step", json={"steps": 3})
    weights = client.get(f"/api/training/{sid}/kernels").json()
    kernel = decode(weights["layers"][0]["weight"])
    found = client.post(
        "/api/explain", json={"sample": 0, "layer": 0, "index": [2, 5, 5], "training": sid}
    ).json()
    np.testing.assert_array_equal(np.array(found["weights"], np.float32), kernel[2])
    missing = client.post("/api/trace", json={"sample": 0, "training": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_two_sessions_do_not_interfere(client, session):
    settings = {"lr": 0.05, "seed": 11, "fresh": True}
    a, b = session(**settings), session(**settings)
    threads = [
        threading.Thread(
            target=client.post, args=(f"/api/training/{sid}/step",), kwargs={"json": {"steps": 8}}
        )
        for sid in (a, b)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ha = client.get(f"/api/training/{a}").json()["history"]
    hb = client.get(f"/api/training/{b}").json()["history"]
    assert len(ha) == 8 and ha == hb  # same settings, same seed: same numbers, side by side


def test_run_pause_and_since(client, session):
    sid = session(lr=0.01)
    assert client.post(f"/api/training/{sid}/run").json()["running"] is True
    deadline = time.monotonic() + 30
    while client.get(f"/api/training/{sid}").json()["step"] < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    paused = client.post(f"/api/training/{sid}/pause").json()
    assert paused["running"] is False
    time.sleep(0.3)
    later = client.get(f"/api/training/{sid}").json()
    assert later["step"] == paused["step"]  # pause really stops
    assert later["validation"][-1]["step"] == paused["step"]
    recent = client.get(f"/api/training/{sid}", params={"since": paused["step"] - 2}).json()
    assert [h["step"] for h in recent["history"]] == [paused["step"] - 1, paused["step"]]


def test_step_run_and_pause_answer_only_the_history_since(client, session):
    """A page that has the history sends ?since= and gets only what is new (a classroom of
    long runs would otherwise download every step again on every click)."""
    sid = session(lr=0.01)
    full = client.post(f"/api/training/{sid}/step", json={"steps": 4}).json()
    assert [h["step"] for h in full["history"]] == [1, 2, 3, 4]
    newer = client.post(f"/api/training/{sid}/step", json={"steps": 2}, params={"since": 4})
    assert [h["step"] for h in newer.json()["history"]] == [5, 6]
    assert newer.json()["step"] == 6
    running = client.post(f"/api/training/{sid}/run", params={"since": 6}).json()
    assert all(h["step"] > 6 for h in running["history"]) and running["running"] is True
    paused = client.post(f"/api/training/{sid}/pause", params={"since": 5}).json()
    assert [h["step"] for h in paused["history"]] == list(range(6, paused["step"] + 1))
    assert paused["validation"][-1]["step"] == paused["step"]  # validated where it stopped
    assert all(v["step"] > 5 for v in paused["validation"])
    everything = client.get(f"/api/training/{sid}").json()
    assert everything["history"][: paused["step"]] == full["history"] + (
        newer.json()["history"] + paused["history"][1:]
    )
    for refused in (
        client.post(f"/api/training/{sid}/step", params={"since": "last"}),
        client.get(f"/api/training/{sid}", params={"since": "last"}),
    ):
        assert refused.status_code == 422
        assert refused.json()["detail"].startswith("'since' should be a valid integer")


def test_limits_delete_and_unknown_ids(client, session):
    limit = client.get("/api/training").json()["limit"]
    ids = [session() for _ in range(limit)]
    refused = client.post("/api/training", json={})
    assert refused.status_code == 429 and "limit" in refused.json()["detail"]
    names = {t.name for t in threading.enumerate()}
    client.post(f"/api/training/{ids[0]}/run")
    assert client.delete(f"/api/training/{ids[0]}").json() == {"deleted": ids[0]}
    time.sleep(0.2)
    assert f"training-{ids[0]}" not in {t.name for t in threading.enumerate()} - names
    for method, path in [
        ("get", ""),
        ("post", "/step"),
        ("post", "/run"),
        ("post", "/pause"),
        ("post", "/keep"),
        ("delete", ""),
    ]:
        answer = getattr(client, method)(f"/api/training/{ids[0]}{path}")
        assert answer.status_code == 404, (path, answer.text)
        assert isinstance(answer.json()["detail"], str)
    assert client.post("/api/training", json={}).status_code == 201  # room again


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"lr": 0}, "lr"),
        ({"lr": -1}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"dataset": "imagenet"}, "imagenet"),
        ({"dataset": "cifar10"}, "does not fit"),
        ({"momentum": 1.5}, "momentum"),
    ],
)
def test_bad_settings_are_422_with_a_sentence(client, settings, words):
    answer = client.post("/api/training", json=settings)
    assert answer.status_code == 422, answer.text
    assert isinstance(answer.json()["detail"], str) and words in answer.json()["detail"]


def test_keep_writes_a_model_file_once(client, session, served):
    sid = session(lr=0.05)
    client.post(f"/api/training/{sid}/step", json={"steps": 2})
    path = client.post(f"/api/training/{sid}/keep", json={"name": "my-digits"}).json()["path"]
    assert path.endswith("my-digits.safetensors") and path.startswith("/")
    kept = nn.load(path)
    assert kept.input_shape == served.input_shape and kept.classes == served.classes
    trained = client.post("/api/trace", json={"sample": 0, "training": sid}).json()
    assert trace(kept, bundled_samples(served)[0][0])["probabilities"] == trained["probabilities"]
    again = client.post(f"/api/training/{sid}/keep", json={"name": "my-digits"})
    assert again.status_code == 409
    for bad in ["../evil", "a/b", ".hidden", "", "x" * 200]:
        answer = client.post(f"/api/training/{sid}/keep", json={"name": bad})
        assert answer.status_code == 422, bad
    auto = client.post(f"/api/training/{sid}/keep").json()["path"]
    assert auto != path and nn.load(auto)


def test_a_model_no_dataset_fits_says_so():
    conv = nn.Conv2D(3, 2, 3)
    model = nn.Sequential(conv, nn.Flatten(), nn.Dense(2 * 3 * 3, 5))
    model.input_shape = (3, 5, 5)
    client = TestClient(create_app(model))
    options = client.get("/api/training").json()
    assert options["datasets"] == [] and options["default"] is None
    assert "no known dataset" in options["message"]
    answer = client.post("/api/training", json={})
    assert answer.status_code == 422 and answer.json()["detail"] == options["message"]


def test_idle_sessions_expire(served):
    sessions = Sessions(served, idle_seconds=0.05)
    session = sessions.start(SessionSettings())
    assert isinstance(session, TrainingSession)
    time.sleep(0.1)
    assert sessions.expire() == [session.id]
    assert sessions.options()["active"] == 0


def test_sessions_with_dropout_repeat_from_their_seed():
    """A Dropout layer's masks come from the session's seed, so two sessions of the same
    settings give the same losses; another seed gives others."""
    rng = np.random.default_rng(0)
    layers = [nn.Flatten(), nn.Dense(16, 12), nn.ReLU(), nn.Dropout(0.5), nn.Dense(12, 3)]
    model = nn.Sequential(*layers)
    model.input_shape = (1, 4, 4)
    x = rng.random((64, 1, 4, 4), dtype=np.float32)
    y = rng.integers(0, 3, 64)
    data = _Data("random", x, y, x[:8], y[:8])

    def losses(seed: int) -> list[float]:
        settings = SessionSettings(optimizer="sgd", lr=0.1, batch_size=8, seed=seed).validate()
        trained = TrainingSession("dropout", model, settings, data)
        trained.step(6)
        return [entry["loss"] for entry in trained.history]

    first = losses(3)
    assert len(first) == 6
    assert losses(3) == first
    assert losses(4) != first


@pytest.mark.parametrize("dropout", [False, True])
def test_a_failed_step_leaves_the_last_update_as_it_was(dropout):
    """A step whose loss is not finite stops the session with a sentence; update() still
    explains the last good step with the same numbers, its gradient included, although
    the failed step computed its own gradient before its loss was known (split over two
    threads, or whole where Dropout keeps the batch whole)."""
    rng = np.random.default_rng(5)
    extra = [nn.Dropout(0.2)] if dropout else []
    model = nn.Sequential(nn.Conv2D(1, 3, 3), nn.ReLU(), nn.Flatten(), *extra, nn.Dense(12, 3))
    model.input_shape = (1, 4, 4)
    x = rng.random((64, 1, 4, 4), dtype=np.float32)
    y = rng.integers(0, 3, 64)
    settings = SessionSettings(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=16).validate()
    trained = TrainingSession("failing", model, settings, _Data("random", x, y, x[:8], y[:8]))
    values = [(0, "weight", [1, 0, 2, 1]), (0, "bias", [2]), (len(model) - 1, "weight", [2, 5])]
    threads = nn.get_num_threads()
    nn.set_num_threads(2)
    try:
        trained.step(2)
        explained = [trained.update(*value) for value in values]
        gradients = [p.grad.copy() for p in trained.optimizer.params]
        trained.x[:] = np.nan  # every later batch
        state = trained.step(1)
    finally:
        nn.set_num_threads(threads)
    assert state["step"] == 2 and "the loss became nan" in state["error"]
    assert [trained.update(*value) for value in values] == explained
    for p, gradient in zip(trained.optimizer.params, gradients, strict=True):
        np.testing.assert_array_equal(p.grad, gradient)
