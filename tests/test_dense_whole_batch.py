"""After a batch split over threads, a dense layer's gradients are one product over the
whole batch (Dense.whole_batch_grads, in blocks of columns that the threads take as they
finish their pieces) instead of one per piece plus their sum: the same numbers as one
thread, nothing left behind in the replicas, and an error in one piece raised as it is."""

from __future__ import annotations

import time

import numpy as np
import pytest

import convlens.nn as nn
from convlens.nn import threads
from convlens.nn.layer import Layer


@pytest.fixture
def split_over():
    before = threads.get_num_threads()
    yield threads.set_num_threads
    threads.set_num_threads(before)


def grads_after(model: nn.Sequential, x, y, input_grad: bool, backwards: int = 1):
    loss = nn.CrossEntropyLoss()
    model.zero_grad()
    for _ in range(backwards):
        loss.forward(model.forward(x), y)
        model.backward(loss.backward(), input_grad=input_grad)
    return [p.grad.copy() for p in model.parameters()]


def assert_same(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


def wide_dense_net(seed: int):
    """16 samples through 96 dense rows: three shares' worth on three threads."""
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((16, 8)), rng.integers(0, 3, 16)
    nn.manual_seed(seed)
    model = nn.Sequential(nn.Dense(8, 96), nn.ReLU(), nn.Dense(96, 3)).astype(np.float64)
    return model, x, y


@pytest.mark.parametrize("pieces", [2, 3])
@pytest.mark.parametrize("input_grad", [True, False])
def test_split_dense_gradients_equal_one_thread(split_over, pieces, input_grad):
    rng = np.random.default_rng(pieces)
    x = rng.standard_normal((11, 2, 6, 6))
    y = rng.integers(0, 3, 11)
    nn.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Dense(72, 16), nn.ReLU(), nn.Dense(16, 3, bias=False)
    ).astype(np.float64)
    split_over(1)
    expected = grads_after(model, x, y, input_grad, backwards=2)
    split_over(pieces)
    got = grads_after(model, x, y, input_grad, backwards=2)  # accumulates, as one thread does
    assert_same(got, expected)
    assert model._twins  # the batch was split
    for twins in model._twins:
        for layer in twins:
            assert "_deferred" not in layer.__dict__
            assert not getattr(layer, "defer_parameter_grads", False)
            for p in layer.parameters():
                assert not p.grad.any()  # replicas of a dense layer never hold a gradient


def test_a_dense_first_layer_defers_too(split_over):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 2, 8)
    nn.manual_seed(1)
    model = nn.Sequential(nn.Dense(5, 4), nn.Tanh(), nn.Dense(4, 2)).astype(np.float64)
    split_over(1)
    expected = grads_after(model, x, y, input_grad=False)
    split_over(2)
    got = grads_after(model, x, y, input_grad=False)
    assert_same(got, expected)


def test_several_pieces_on_each_thread(split_over, monkeypatch):
    """Cache-sized pieces, four a thread, each thread running its own one after the other
    before its share of the dense rows: the numbers of one thread."""
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((40, 2, 6, 6)), rng.integers(0, 3, 40)
    nn.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2D(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Dense(48, 64), nn.ReLU(), nn.Dense(64, 3)
    ).astype(np.float64)
    split_over(1)
    expected = grads_after(model, x, y, input_grad=True)
    split_over(2)
    monkeypatch.setattr(threads, "PIECE_BYTES", 5 * 72 * 8)  # 5 samples of 72 float64 values
    got = grads_after(model, x, y, input_grad=True)
    assert len(model._twins) == 7  # eight pieces of five samples, four on each thread
    assert_same(got, expected)


class FailsOnHugeInput(Layer):
    """The identity, whose backward fails for a piece that held a value over 1e6."""

    def forward(self, x):
        self._cache = bool(np.abs(x).max() > 1e6)
        return x

    def backward(self, dy):
        if self._saved():
            raise RuntimeError("this piece fails")
        return dy

    def output_shape(self, input_shape):
        return tuple(input_shape)


@pytest.mark.parametrize("where", ["below the dense layers", "above them"])
def test_an_error_in_one_piece_is_raised_as_it_is(split_over, where):
    """The other thread neither waits for the failed piece's (x, δ) forever nor reads what
    it never kept; the dense layer's gradient, zero before, reads zero after."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((16, 6)), rng.integers(0, 2, 16)
    x[12] = 1e7  # in the second half: the other thread's piece
    nn.manual_seed(4)
    dense = [nn.Dense(6, 40), nn.ReLU(), nn.Dense(40, 2)]
    layers = (
        [FailsOnHugeInput(), *dense] if where.startswith("below") else [*dense, FailsOnHugeInput()]
    )
    model = nn.Sequential(*layers).astype(np.float64)
    split_over(2)
    loss = nn.CrossEntropyLoss()
    model.zero_grad()
    loss.forward(model.forward(x), y)
    with pytest.raises(RuntimeError, match="this piece fails"):
        model.backward(loss.backward(), input_grad=False)
    assert not model.layers[1 if where.startswith("below") else 0].weight.grad.any()
    for twins in model._twins:
        for layer in twins:
            assert "_deferred" not in layer.__dict__


def test_a_thread_count_changed_between_forward_and_backward(split_over, monkeypatch):
    """The dense blocks are taken by the threads the backward really uses (one per team of
    pieces), not by a thread count set since: no block is left out."""
    import convlens.nn.sequential as sequential

    monkeypatch.setattr(sequential, "BLOCK_VALUES", 96)  # eight blocks of one column
    model, x, y = wide_dense_net(11)
    split_over(1)
    expected = grads_after(model, x, y, input_grad=False)
    split_over(2)
    loss = nn.CrossEntropyLoss()
    for p in model.parameters():
        p.grad = np.full_like(p.data, 7.0)  # stale values a row left out would keep
    model.zero_grad()
    loss.forward(model.forward(x), y)  # two pieces
    split_over(3)  # three threads now, two pieces: 96 rows would make three shares
    model.backward(loss.backward(), input_grad=False)
    assert_same([p.grad for p in model.parameters()], expected)


def test_teams_that_run_one_after_the_other_do_not_wait_for_each_other(split_over, monkeypatch):
    """Should the thread count drop just as a backward hands out its teams, they run one
    after the other on one thread: the first cannot see the second's (x, δ) yet, so it
    takes no dense block, and nothing waits for what has not run."""
    import convlens.nn.sequential as sequential

    model, x, y = wide_dense_net(13)
    split_over(1)
    expected = grads_after(model, x, y, input_grad=False)
    split_over(2)
    monkeypatch.setattr(sequential, "run_side_by_side", lambda tasks: [task() for task in tasks])
    got = grads_after(model, x, y, input_grad=False)
    assert_same(got, expected)


@pytest.mark.parametrize("block_values", [64, 200, 10**9])
def test_blocks_of_columns_give_the_numbers_of_one_thread(split_over, monkeypatch, block_values):
    """The 8 → 96 layer (768 weights) in 12 blocks of columns, in 3, or whole."""
    import convlens.nn.sequential as sequential

    monkeypatch.setattr(sequential, "BLOCK_VALUES", block_values)
    model, x, y = wide_dense_net(17)
    split_over(1)
    expected = grads_after(model, x, y, input_grad=True, backwards=2)
    split_over(2)
    assert_same(grads_after(model, x, y, input_grad=True, backwards=2), expected)


class SlowBackward(Layer):
    """The identity, whose backward sleeps 0.2 s for a piece holding a value over 1e6 and
    1 s for one over 1e9."""

    def forward(self, x):
        top = np.abs(x).max()
        self._cache = 1.0 if top > 1e9 else 0.2 if top > 1e6 else 0.0
        return x

    def backward(self, dy):
        time.sleep(self._saved())
        return dy

    def output_shape(self, input_shape):
        return tuple(input_shape)


def test_the_thread_done_first_takes_the_dense_blocks(split_over, monkeypatch):
    """With the second piece's backward slow below the dense layers, the first thread,
    done with its piece, computes every block of columns (the other has kept its (x, δ)
    by then): the threads even out, and the numbers are those of one thread."""
    import threading

    import convlens.nn.sequential as sequential

    monkeypatch.setattr(sequential, "BLOCK_VALUES", 200)  # 3 + 1 blocks
    rng = np.random.default_rng(19)
    x, y = rng.standard_normal((16, 8)), rng.integers(0, 3, 16)
    x[0, 0], x[8, 0] = 1e7, 1e10  # the first piece waits 0.2 s, the second 1 s
    nn.manual_seed(6)
    model = nn.Sequential(SlowBackward(), nn.Dense(8, 96), nn.ReLU(), nn.Dense(96, 3))
    model = model.astype(np.float64)
    split_over(1)
    expected = grads_after(model, x, y, input_grad=False)
    split_over(2)
    computed_on = []
    whole_batch_grads = nn.Dense.whole_batch_grads

    def recording(self, *args, **kwargs):
        computed_on.append(threading.current_thread())
        return whole_batch_grads(self, *args, **kwargs)

    monkeypatch.setattr(nn.Dense, "whole_batch_grads", recording)
    got = grads_after(model, x, y, input_grad=False)
    assert computed_on == [threading.main_thread()] * 4
    assert_same(got, expected)
