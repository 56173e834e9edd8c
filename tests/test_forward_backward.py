"""``Sequential.forward_backward``: forward, loss and backward in one pass, each piece of a
split batch running all three on its thread. Its numbers equal those of the three calls
made one after the other, to the last bit, on random models, batch sizes, thread counts,
piece sizes, losses and dtypes; bad targets are refused before any gradient changes."""

from __future__ import annotations

import numpy as np
import pytest

import convlens.nn as nn
from convlens.nn import sequential, threads

LOSSES = [nn.CrossEntropyLoss, nn.SoftmaxMSELoss]


@pytest.fixture
def settings():
    """Restores the thread count and piece size a test changes."""
    count, piece_bytes = threads.get_num_threads(), threads.PIECE_BYTES
    yield
    threads.set_num_threads(count)
    threads.PIECE_BYTES = piece_bytes


def random_model(rng: np.random.Generator, channels: int, size: int, classes: int):
    """A small CNN with a random choice of layers: conv (random kernel, padding), ReLU or
    Tanh, optional max-pool, flatten, one or two dense layers."""
    kernel = int(rng.integers(1, 4))
    out = int(rng.integers(2, 6))
    layers: list[nn.Layer] = [nn.Conv2D(channels, out, kernel, padding=int(rng.integers(0, 2)))]
    layers.append(nn.ReLU() if rng.random() < 0.7 else nn.Tanh())
    if rng.random() < 0.5:
        layers.append(nn.MaxPool2D(2))
    layers.append(nn.Flatten())
    model = nn.Sequential(*layers)
    features = model.output_shape((channels, size, size))[0]
    if rng.random() < 0.5:
        hidden = int(rng.integers(3, 12))
        model.layers += [nn.Dense(features, hidden), nn.ReLU()]
        features = hidden
    model.layers.append(nn.Dense(features, classes))
    return model


def three_calls(model, loss, x, target):
    output = model.forward(x)
    value = loss.forward(output, target)
    model.backward(loss.backward(), input_grad=False)
    return value, output


def grads(model) -> list[np.ndarray]:
    return [p.grad.copy() for p in model.parameters()]


@pytest.mark.parametrize("seed", range(12))
def test_equal_to_three_calls_to_the_last_bit(settings, seed):
    rng = np.random.default_rng(seed)
    channels, size, classes = (
        int(rng.integers(1, 4)),
        int(rng.integers(5, 10)),
        int(rng.integers(2, 6)),
    )
    dtype = [np.float32, np.float64][seed % 2]
    threads.set_num_threads(int(rng.integers(1, 4)))
    if seed % 3 == 0:  # pieces small enough that each thread runs several in turn
        threads.PIECE_BYTES = int(rng.integers(200, 2000))
    nn.manual_seed(seed)
    model = random_model(rng, channels, size, classes).astype(dtype)
    twin = nn.Sequential(*model.layers).astype(dtype)  # the same layer objects
    loss = LOSSES[seed % 2]()
    batch = int(rng.integers(1, 40))
    x = rng.standard_normal((batch, channels, size, size)).astype(dtype)
    target = rng.integers(0, classes, batch)

    model.zero_grad()
    expected_value, expected_output = three_calls(model, loss, x, target)
    expected_grads, expected_dz = grads(model), loss.backward()
    twin.zero_grad()
    value, output = twin.forward_backward(x, target, loss)

    assert value == expected_value
    np.testing.assert_array_equal(output, expected_output)
    for got, expected in zip(grads(twin), expected_grads, strict=True):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(loss.backward(), expected_dz)  # kept as after a forward


@pytest.mark.parametrize("pieces", [2, 3])
def test_a_split_batch_runs_every_piece_through_loss_and_backward(settings, monkeypatch, pieces):
    """With the batch split, it makes one hand-over (not two) and accumulates like
    backward: a second call adds the same gradient again."""
    threads.set_num_threads(pieces)
    rng = np.random.default_rng(pieces)
    nn.manual_seed(pieces)
    model = random_model(rng, 2, 8, 4).astype(np.float64)
    x, target = rng.standard_normal((24, 2, 8, 8)), rng.integers(0, 4, 24)
    handovers = []

    def counted(tasks):
        handovers.append(len(tasks))
        return threads.run_side_by_side(tasks)

    monkeypatch.setattr(sequential, "run_side_by_side", counted)
    model.zero_grad()
    model.forward_backward(x, target, nn.CrossEntropyLoss())
    once = grads(model)
    model.forward_backward(x, target, nn.CrossEntropyLoss())
    assert handovers == [pieces, pieces]
    for twice, single in zip(grads(model), once, strict=True):
        np.testing.assert_allclose(twice, 2 * single, rtol=1e-13, atol=1e-15)


def test_a_model_that_does_not_split_runs_the_three_calls(settings):
    """Dropout keeps the batch whole (its masks come from one stream): same numbers as
    the three calls with the same random state."""
    threads.set_num_threads(2)
    rng = np.random.default_rng(0)
    x, target = rng.standard_normal((16, 6)), rng.integers(0, 3, 16)

    def run(both: bool):
        nn.manual_seed(7)
        model = nn.Sequential(nn.Dense(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Dense(8, 3))
        model.astype(np.float64).zero_grad()
        loss = nn.CrossEntropyLoss()
        value = (
            model.forward_backward(x, target, loss)[0]
            if both
            else three_calls(model, loss, x, target)[0]
        )
        return value, grads(model)

    (value, got), (expected_value, expected) = run(True), run(False)
    assert value == expected_value
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize(
    "target, words",
    [
        (np.zeros(15, int), r"got shapes \(16, 3\) and \(15,\)"),
        (np.full(16, 3), r"0\.\.2 for 3 classes"),
        (np.zeros(16), "class indices"),
    ],
)
def test_bad_targets_are_refused_before_any_gradient_changes(settings, target, words):
    threads.set_num_threads(2)
    rng = np.random.default_rng(1)
    nn.manual_seed(1)
    model = nn.Sequential(nn.Conv2D(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Dense(18, 3))
    x = rng.standard_normal((16, 1, 5, 5)).astype(np.float32)
    for p in model.parameters():
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
    before = grads(model)
    with pytest.raises(ValueError, match=words):
        model.forward_backward(x, target, nn.CrossEntropyLoss())
    for p, kept in zip(model.parameters(), before, strict=True):
        np.testing.assert_array_equal(p.grad, kept)


def test_an_input_the_model_refuses_gets_forwards_error(settings):
    threads.set_num_threads(2)
    model = nn.Sequential(nn.Conv2D(1, 2, 3), nn.Flatten(), nn.Dense(18, 3))
    x = np.zeros((16, 2, 5, 5), np.float32)  # two channels for a one-channel conv
    with pytest.raises(ValueError) as refused:
        model.forward_backward(x, np.zeros(16, int), nn.CrossEntropyLoss())
    with pytest.raises(ValueError) as by_forward:
        model.forward(x)
    assert str(refused.value) == str(by_forward.value)


@pytest.mark.parametrize("seed", range(4))
def test_loss_pieces_join_to_the_whole_batch(seed):
    """What a split forward_backward asks of a loss: each piece's kept values and its
    gradient divided by the whole batch's size; joined, the same loss and dL/dz."""
    rng = np.random.default_rng(seed)
    N, K = int(rng.integers(2, 30)), int(rng.integers(2, 8))
    cases = [
        (nn.CrossEntropyLoss(), rng.integers(0, K, N)),
        (nn.SoftmaxMSELoss(), rng.integers(0, K, N)),
        (nn.MSELoss(), rng.standard_normal((N, K))),
    ]
    for loss, target in cases:
        z = 5 * rng.standard_normal((N, K))
        whole, dz = loss.forward(z, target), loss.backward()
        cut = sorted(rng.choice(np.arange(1, N), size=min(2, N - 1), replace=False))
        parts = np.split(np.arange(N), cut)
        kept = [loss.keep(z[p], target[p]) for p in parts]
        pieces_dz = np.concatenate([loss.gradient(k, N) for k in kept])
        assert loss.joined(kept) == whole
        np.testing.assert_array_equal(pieces_dz, dz)
        np.testing.assert_array_equal(loss.backward(), dz)


def test_a_loss_with_only_forward_and_backward_sees_the_whole_batch(settings):
    class Halved(nn.Loss):  # written the old way: forward and backward only
        def forward(self, prediction, target):
            self.inner = nn.CrossEntropyLoss()
            return self.inner.forward(prediction, target) / 2

        def backward(self):
            return self.inner.backward() / 2

    threads.set_num_threads(2)
    rng = np.random.default_rng(3)
    nn.manual_seed(3)
    model = random_model(rng, 1, 6, 3).astype(np.float64)
    x, target = rng.standard_normal((12, 1, 6, 6)), rng.integers(0, 3, 12)
    model.zero_grad()
    expected_value, _ = three_calls(model, Halved(), x, target)
    expected = grads(model)
    model.zero_grad()
    assert not Halved().splits_batch() and nn.CrossEntropyLoss().splits_batch()
    assert model.forward_backward(x, target, Halved())[0] == expected_value
    for g, e in zip(grads(model), expected, strict=True):
        np.testing.assert_array_equal(g, e)
