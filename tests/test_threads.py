"""A batch split over threads gives what one thread gives, on random models and batches;
keeping freed memory stops the page faults of reallocating a step's arrays.

``make test`` runs with CONVLENS_NUM_THREADS=1; every test here turns splitting on itself.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from helpers import assert_close
from threadpoolctl import ThreadpoolController, threadpool_limits

import convlens.nn as nn
from convlens.interop import to_torch
from convlens.nn import threads


@pytest.fixture
def split_over():
    """``split_over(k)`` sets k threads for the test; the setting is restored afterwards."""
    before = threads.get_num_threads()
    yield threads.set_num_threads
    threads.set_num_threads(before)


def random_model(rng: np.random.Generator) -> tuple[nn.Sequential, tuple[int, int, int]]:
    """A small CNN with random channels, kernel, stride, padding, pool and activations."""
    c, h = int(rng.integers(1, 4)), int(rng.integers(8, 14))
    o = int(rng.integers(2, 6))
    conv = nn.Conv2D(
        c, o, int(rng.integers(1, 4)), stride=int(rng.integers(1, 3)),
        padding=str(rng.choice(["valid", "same", "full"])), dilation=int(rng.integers(1, 3)),
        mode=str(rng.choice(["correlation", "convolution"])),
    )  # fmt: skip
    activation = [nn.ReLU, nn.Tanh, nn.Sigmoid][int(rng.integers(3))]()
    pool = nn.MaxPool2D(2, int(rng.integers(1, 3))) if rng.random() < 0.5 else nn.AvgPool2D(2)
    features = nn.Sequential(conv, activation, pool)  # nested: replicated as a whole
    flat = int(np.prod(features.output_shape((c, h, h))))
    model = nn.Sequential(features, nn.Flatten(), nn.Dense(flat, 3), nn.Dropout(0.5).eval())
    return model.astype(np.float64), (c, h, h)


def run(model: nn.Sequential, x: np.ndarray, dy: np.ndarray, input_grad: bool):
    model.zero_grad()
    y = model.forward(x)
    dx = model.backward(dy, input_grad=input_grad)
    return y, dx, [p.grad.copy() for p in model.parameters()]


@pytest.mark.parametrize("seed", range(12))
def test_split_batch_matches_one_thread_and_torch(seed, split_over):
    rng = np.random.default_rng(seed)
    model, shape = random_model(rng)
    n = int(rng.integers(8, 40))
    x = rng.standard_normal((n, *shape))
    dy = rng.standard_normal((n, 3))
    input_grad = bool(seed % 2)
    split_over(1)
    y1, dx1, grads1 = run(model, x, dy, input_grad)
    pieces = int(rng.integers(2, 5))
    split_over(pieces)
    assert len(threads.batch_pieces(n)) == min(pieces, n // threads.MIN_PIECE)
    y, dx, grads = run(model, x, dy, input_grad)
    assert_close(y, y1, 1e-13)
    if input_grad:
        assert_close(dx, dx1, 1e-13)
    else:
        assert dx is None and dx1 is None
    for g, g1 in zip(grads, grads1, strict=True):  # sums regrouped by piece: rounding only
        assert_close(g, g1, 1e-12)

    x_t = torch.tensor(x, requires_grad=True)
    reference = to_torch(model).eval()  # eval: the Dropout is off here too
    reference(x_t).backward(torch.tensor(dy))
    for g, p_t in zip(grads, reference.parameters(), strict=True):
        assert_close(g, p_t.grad, 1e-10)
    if input_grad:
        assert_close(dx, x_t.grad, 1e-10)


def test_split_runs_repeat_bit_for_bit_and_gradients_accumulate(split_over):
    rng = np.random.default_rng(7)
    model, shape = random_model(rng)
    x, dy = rng.standard_normal((24, *shape)), rng.standard_normal((24, 3))
    split_over(2)
    _, _, first = run(model, x, dy, True)
    _, _, again = run(model, x, dy, True)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    model.backward(dy)  # a second backward after one forward adds the same again
    for p, g in zip(model.parameters(), first, strict=True):
        assert_close(p.grad, 2 * g, 1e-12)


def test_replicas_follow_weights_assigned_between_steps(split_over):
    """A replica shares the weights' values: new arrays assigned (load, astype) are used."""
    rng = np.random.default_rng(8)
    model, shape = random_model(rng)
    x = rng.standard_normal((16, *shape))
    split_over(2)
    model.forward(x)
    for p in model.parameters():
        p.data = rng.standard_normal(p.shape)
    split_over(1)
    expected = model.forward(x)
    split_over(2)
    np.testing.assert_array_equal(model.forward(x), expected)


def test_training_dropout_is_never_split(split_over):
    """Dropout in training draws one random stream in batch order, so the batch stays whole
    and a seeded run gives the same masks whatever the thread count."""
    model = nn.Sequential(nn.Dense(5, 5), nn.Dropout(0.5), nn.Dense(5, 2))
    assert not model.splits_batch() and model.eval().splits_batch()
    model.train()
    x = np.ones((32, 5), np.float32)
    outputs = []
    for count in (1, 2):
        split_over(count)
        nn.manual_seed(3)
        outputs.append(model.forward(x))
    np.testing.assert_array_equal(*outputs)


def test_errors_in_a_piece_reach_the_caller(split_over):
    model = nn.Sequential(nn.Conv2D(1, 2, 3), nn.Flatten(), nn.Dense(2 * 4 * 4, 3))
    split_over(2)
    model.forward(np.zeros((16, 1, 6, 6), np.float32))
    with pytest.raises(ValueError, match="gradient for 15 samples"):
        model.backward(np.zeros((15, 3), np.float32))
    with pytest.raises(ValueError, match="expected 1 input channels"):
        model.forward(np.zeros((16, 2, 6, 6), np.float32))


def test_numpy_error_settings_reach_the_threads(split_over):
    model = nn.Sequential(nn.Dense(3, 3))
    model.layers[0].weight.data = np.full((3, 3), 1e38, np.float32)
    split_over(2)
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        model.forward(np.full((16, 3), 1e38, np.float32))


def test_callers_on_several_threads_each_get_their_own_results(split_over):
    """The worker threads are shared: shares of concurrent calls must not be mixed up."""
    split_over(2)
    models = [nn.Sequential(nn.Dense(5, 4)) for _ in range(6)]
    x = np.random.default_rng(0).standard_normal((16, 5)).astype(np.float32)
    expected = [model.forward(x) for model in models]

    def many_calls(k: int) -> bool:
        return all(np.array_equal(models[k].forward(x), expected[k]) for _ in range(40))

    with ThreadPoolExecutor(len(models)) as callers:
        assert all(callers.map(many_calls, range(len(models))))


def counting_spins(monkeypatch) -> list[str]:
    """Wrap the spin lock functions; the returned list records each lock and unlock."""
    if threads._spin_lock is None:
        pytest.skip("no pthread spin locks in this C library: callers always sleep")
    real = threads._spin_lock
    calls: list[str] = []
    counted = real._replace(
        lock=lambda ref: calls.append("lock") or real.lock(ref),
        unlock=lambda ref: calls.append("unlock") or real.unlock(ref),
    )
    monkeypatch.setattr(threads, "_spin_lock", counted)
    return calls


def test_a_caller_spins_while_a_started_share_runs_and_gets_its_results(split_over, monkeypatch):
    """The caller finishes first and waits for the slower share by spinning (on Linux):
    once per share after it has started. Results and errors arrive in order."""
    calls = counting_spins(monkeypatch)
    split_over(2)
    monkeypatch.setattr(threads, "_cores", 2)  # a core for each thread, on any machine
    started = threading.Event()

    def slow() -> str:
        started.set()
        threading.Event().wait(0.05)
        return threading.current_thread().name

    def fast() -> str:
        started.wait(10)  # the other share has been taken: the caller will spin for it
        return threading.current_thread().name

    caller, worker = threads.run_side_by_side([fast, slow])
    assert caller == "MainThread" and worker.startswith("convlens-")
    # locked at construction; the caller spins on it until the worker unlocks it
    assert calls == ["lock", "lock", "unlock"]

    def fails() -> None:
        started.wait(10)
        raise KeyError("in the worker")

    started.clear()
    with pytest.raises(KeyError, match="in the worker"):
        threads.run_side_by_side([lambda: started.set(), fails])


@pytest.mark.parametrize("crowded", ["another split", "more threads than cores"])
def test_a_caller_sleeps_where_spinning_would_take_a_core_from_work(
    crowded, split_over, monkeypatch
):
    """Two splits at once (live-training sessions share the workers), or more threads set
    than there are cores: spinning would take a core from other work, so callers sleep."""
    calls = counting_spins(monkeypatch)
    split_over(2)
    if crowded == "another split":
        monkeypatch.setattr(threads, "_blas_holders", 1)  # as if another caller were inside
    else:
        monkeypatch.setattr(threads, "_cores", 1)
    taken = threading.Event()
    results = threads.run_side_by_side([lambda: taken.wait(10), lambda: taken.set() or 2])
    assert results == [True, 2]
    assert calls == ["lock", "unlock"]  # no spinning lock by the caller


def test_blas_threads_are_restored_after_a_split(split_over):
    blas = ThreadpoolController().select(user_api="blas")
    before = [library.num_threads for library in blas.lib_controllers]
    split_over(2)
    seen = threads.run_side_by_side(
        [lambda: [library.num_threads for library in blas.lib_controllers]] * 2
    )
    assert seen == [[1] * len(before)] * 2
    assert [library.num_threads for library in blas.lib_controllers] == before


def test_blas_is_held_to_one_thread_by_a_split_started_on_any_thread(split_over):
    """A live-training session splits its batches on a thread of its own. threadpoolctl
    lets only one thread size OpenBLAS's pool: the limit must hold there too (it was
    ignored, and OpenBLAS's threads spun beside the pieces), and be restored after."""
    blas = ThreadpoolController().select(user_api="blas")
    before = [library.num_threads for library in blas.lib_controllers]
    split_over(2)
    probe = [lambda: [library.num_threads for library in blas.lib_controllers]] * 2
    assert threads.run_side_by_side(probe) == [[1] * len(before)] * 2  # the main thread first
    with ThreadPoolExecutor(1) as caller:
        seen = caller.submit(threads.run_side_by_side, probe).result(timeout=60)
    assert seen == [[1] * len(before)] * 2
    assert [library.num_threads for library in blas.lib_controllers] == before
    assert threads.run_side_by_side(probe) == [[1] * len(before)] * 2  # and still
    with ThreadPoolExecutor(1) as caller:  # its thread stays alive meanwhile
        caller.submit(threads.run_side_by_side, probe).result(timeout=60)
        with threadpool_limits(1, user_api="blas"):  # the caller's own limits still work
            assert [library.num_threads for library in blas.lib_controllers] == [1] * len(before)
    assert [library.num_threads for library in blas.lib_controllers] == before


def test_overlapping_blas_limits_on_several_threads_restore_the_count():
    """Two threads inside one_blas_thread at once, leaving in either order: the first in
    sets the limit, the last out restores it."""
    blas = ThreadpoolController().select(user_api="blas")
    before = [library.num_threads for library in blas.lib_controllers]
    inside, leave = threading.Barrier(2), threading.Event()

    def hold(wait_for_leave: bool) -> list[int]:
        with threads.one_blas_thread():
            inside.wait(timeout=30)
            if wait_for_leave:
                leave.wait(timeout=30)
            return [library.num_threads for library in blas.lib_controllers]

    with ThreadPoolExecutor(2) as callers:
        late = callers.submit(hold, True)
        early = callers.submit(hold, False)
        assert early.result(timeout=60) == [1] * len(before)
        assert [library.num_threads for library in blas.lib_controllers] == [1] * len(before)
        leave.set()
        assert late.result(timeout=60) == [1] * len(before)
    assert [library.num_threads for library in blas.lib_controllers] == before


def test_changing_the_thread_count_while_another_thread_splits(split_over):
    """Workers are shared and never stopped: lowering or raising the count while a call
    runs on another thread neither strands it nor changes its results."""

    def workers() -> int:
        return sum(t.name.startswith("convlens-") for t in threading.enumerate())

    split_over(3)
    model = nn.Sequential(nn.Dense(5, 4))
    x = np.random.default_rng(0).standard_normal((24, 5)).astype(np.float32)
    expected = model.forward(x)
    started = workers()  # at least 2 now, more if an earlier test set a larger count
    with ThreadPoolExecutor(1) as caller:
        running = caller.submit(lambda: [model.forward(x) for _ in range(200)])
        for count in (1, 2, 3, 1, 2) * 10:
            split_over(count)
        outputs = running.result(timeout=60)
    assert all(np.array_equal(out, expected) for out in outputs)
    assert started >= 2
    assert workers() == started  # none started per change, none stopped


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_thread_count_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="set_num_threads needs an int >= 1"):
        threads.set_num_threads(bad)


KEEP_FREED_MEMORY = """
import resource, numpy as np, convlens.nn as nn
def faults():
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):  # a step's worth of activations, allocated and freed
        arrays = [np.ones(n << 20, np.uint8) for n in (3, 5, 2, 7, 4, 6)]
        del arrays
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
faults()
before = faults()
assert nn.keep_freed_memory() is True
faults()
print(before, faults())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="mallopt is glibc's")
def test_keep_freed_memory_stops_page_faults_on_reallocation():
    """Run in a child process: the setting changes the allocator of the whole process."""
    done = subprocess.run(
        [sys.executable, "-c", KEEP_FREED_MEMORY], capture_output=True, text=True, check=True
    )
    before, after = map(int, done.stdout.split())
    assert before > 5_000 and after < before / 100, (before, after)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_can_still_split(split_over):
    """The parent's pool threads do not exist in a fork; the child must start its own."""
    model = nn.Sequential(nn.Conv2D(1, 2, 3), nn.Flatten(), nn.Dense(2 * 4 * 4, 3))
    x = np.ones((16, 1, 6, 6), np.float32)
    split_over(2)
    expected = model.forward(x)  # the parent's pool now exists
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as children:
        result = children.apply_async(model.forward, (x,)).get(timeout=60)
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: nn.SGD(ps, lr=0.1),
        lambda ps: nn.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
        lambda ps: nn.SGD(ps, lr=0.1, momentum=0.8, dampening=0.3),
        lambda ps: nn.Adam(ps, lr=0.01, weight_decay=0.01),
    ],
)
def test_optimizers_update_large_parameters_in_pieces_with_the_same_numbers(make, split_over):
    """A parameter of 2·MIN_VALUES + 3 values is updated in two pieces side by side; the
    values equal one whole update's bit for bit (every operation is element-wise)."""
    shape = (2 * threads.MIN_VALUES + 3,)
    results = []
    for count in (1, 2):
        split_over(count)
        assert len(threads.pieces(shape[0], threads.MIN_VALUES)) == count
        p = nn.Parameter(np.random.default_rng(6).standard_normal(shape, dtype=np.float32))
        optimizer = make([p])
        for step in range(3):
            p.grad[...] = np.random.default_rng(step).standard_normal(shape, dtype=np.float32)
            optimizer.step()
        results.append(p.data)
    np.testing.assert_array_equal(results[0], results[1])


def test_large_activations_cut_the_batch_into_whole_rounds_of_pieces(split_over):
    """Pieces whose largest activation would outgrow PIECE_BYTES are cut smaller, in a
    multiple of the thread count; one thread never splits."""
    split_over(2)
    per_sample = threads.PIECE_BYTES // 16
    assert len(threads.batch_pieces(32, per_sample)) == 2  # 16 a piece: fits
    cut = threads.batch_pieces(128, per_sample)
    assert len(cut) == 8 and [p.stop - p.start for p in cut] == [16] * 8
    assert len(threads.batch_pieces(40, 10 * threads.PIECE_BYTES)) == 10  # MIN_PIECE each
    split_over(1)
    assert threads.batch_pieces(128, per_sample) == [slice(0, 128)]


@pytest.mark.parametrize("seed", range(4))
def test_more_pieces_than_threads_match_one_thread(seed, split_over, monkeypatch):
    rng = np.random.default_rng(100 + seed)
    model, shape = random_model(rng)
    n = int(rng.integers(16, 40))
    x, dy = rng.standard_normal((n, *shape)), rng.standard_normal((n, 3))
    split_over(1)
    y1, dx1, grads1 = run(model, x, dy, True)
    split_over(2)
    monkeypatch.setattr(threads, "PIECE_BYTES", 1)  # every piece MIN_PIECE samples
    y, dx, grads = run(model, x, dy, True)
    assert len(model._cache or []) == len(threads.batch_pieces(n, 1)) > 2
    assert_close(y, y1, 1e-13)
    assert_close(dx, dx1, 1e-13)
    for g, g1 in zip(grads, grads1, strict=True):
        assert_close(g, g1, 1e-12)
    _, _, again = run(model, x, dy, True)
    for a, b in zip(grads, again, strict=True):
        np.testing.assert_array_equal(a, b)
