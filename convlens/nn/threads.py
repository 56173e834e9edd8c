"""Using every core: a batch split into pieces that run side by side.

Samples in a batch are independent, so :class:`~convlens.nn.Sequential` can cut a batch
into one piece per core and push each piece through its own copy of the layers (same
weights, own caches and gradients) on its own thread; the gradients are added up in piece
order afterwards. NumPy releases the interpreter lock inside its array loops and matrix
products, so the threads really do run at once. A batch whose activations would not fit
in the cache is cut into more pieces, each thread running its share one after the other
(:data:`PIECE_BYTES`). Element-wise updates of large arrays, such as an optimizer's, are
shared out the same way (:func:`in_pieces`).

The alternative, letting the BLAS library split each matrix product over the cores, pays
off badly here: a convolution is many small products, too small to share, and everything
between them (im2col copies, ReLU, pooling) stays on one core. Measured on a 2-core
machine, a Tiny VGG training step at batch 32 went from 38 ms on one core to 21 ms split
in two, where BLAS threading reached 33 ms. While pieces run, BLAS is held to one thread
per call so the cores are not oversubscribed, and a caller done with its own share waits
for the others by spinning rather than sleeping (:class:`_Handback`).

``set_num_threads(1)`` runs everything on the caller's thread. Results do not depend on
timing, only on the thread count and the batch's shape (the pieces' gradients are summed
in a fixed order), so a run repeats bit for bit on the same machine; set one thread for
results that do not depend on the core count either.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import copy_context
from functools import partial
from itertools import pairwise, product
from typing import NamedTuple, TypeVar

import numpy as np
from threadpoolctl import LibController, ThreadpoolController

R = TypeVar("R")

#: A piece of a batch has at least this many samples; smaller batches are not split.
MIN_PIECE = 4
#: A piece of a batch whose largest activation would take more bytes than this is cut
#: smaller (:func:`batch_pieces`), so that one layer's output is still in the cache when the
#: next layer reads it. Measured on one thread, 64 samples through Tiny VGG's training
#: step (largest activation 154 kB a sample): 4 pieces of 16 took 0.92-0.96 of one piece;
#: the MNIST net (43 kB a sample) gained nothing from pieces of 32 and lost with 16. At
#: batch 128 on 2 threads (alternating processes): Tiny VGG's step 0.93, its forward 0.92,
#: the MNIST net's step 0.96; batches of 32 are cut as before.
PIECE_BYTES = 5 * 2**19
#: A piece of an element-wise update (:func:`in_pieces`) has at least this many values:
#: handing a piece to another thread costs about 0.1 ms, a pass over 2**17 float32 values
#: about 0.03 ms, and an optimizer makes four or five such passes.
MIN_VALUES = 2**17


def _usable_cores() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _default_count() -> int:
    """``CONVLENS_NUM_THREADS`` if set, else the CPU cores this process may use."""
    setting = os.environ.get("CONVLENS_NUM_THREADS", "").strip()
    if setting:
        if not setting.isdigit() or int(setting) < 1:
            raise ValueError(f"CONVLENS_NUM_THREADS must be an integer >= 1, got {setting!r}")
        return int(setting)
    return _usable_cores()


_cores = _usable_cores()
_num_threads = _default_count()
_jobs: queue.SimpleQueue = queue.SimpleQueue()  # shares waiting for a worker thread
_workers_started = 0  # worker threads serving _jobs (they never stop: idle, they just wait)
_starting = threading.Lock()  # held while workers are started
_blas: list | None = None  # (read, set) thread-count functions of the loaded BLAS libraries
_blas_lock = threading.Lock()  # held while the BLAS thread limit is set or restored
_blas_holders = 0  # threads inside one_blas_thread() now: the splits running
_blas_before: list[int] = []  # the BLAS thread counts to restore when the last one leaves
_local = threading.local()  # .busy: this thread is running a piece already


def get_num_threads() -> int:
    """How many threads a batch is split over: ``CONVLENS_NUM_THREADS``, else the usable
    CPU cores."""
    return _num_threads


def set_num_threads(count: int) -> None:
    """Split batches over ``count`` threads; 1 keeps all work on the caller's thread.

    Parameters
    ----------
    count : int
        At least 1.
    """
    global _num_threads
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"set_num_threads needs an int >= 1, got {count!r}")
    _num_threads = count


def batch_pieces(n_samples: int, sample_bytes: int | Callable[[], int] = 0) -> list[slice]:
    """The batch's pieces, one per thread and at least :data:`MIN_PIECE` samples each;
    a single piece when the batch is small, one thread is set, or this thread is already
    running a piece.

    Where a piece's largest activation (``sample_bytes`` per sample) would outgrow
    :data:`PIECE_BYTES`, the batch is cut into a multiple of the thread count instead, each
    thread running its share of pieces one after the other, each through all the layers.
    ``sample_bytes`` may be a function, then called only for a batch that is split (a
    model's is a walk through its layers: 3 % of one image's forward).
    """
    split = pieces(n_samples, MIN_PIECE)
    if len(split) == 1:
        return split
    if callable(sample_bytes):
        sample_bytes = sample_bytes()
    if sample_bytes * (n_samples // len(split)) <= PIECE_BYTES:
        return split
    per_piece = max(MIN_PIECE, PIECE_BYTES // sample_bytes)
    rounds = -(-n_samples // (per_piece * len(split)))  # pieces per thread, rounded up
    return even_slices(n_samples, rounds * len(split))


def in_pieces(update: Callable[..., object], *arrays: np.ndarray) -> None:
    """Run ``update(*arrays)``, an element-wise update in place, on pieces of the arrays side
    by side: each piece is the same stretch of every array, flattened. Arrays smaller than
    two pieces of :data:`MIN_VALUES`, or not contiguous, are updated whole on this thread.

    Parameters
    ----------
    update : callable
        Takes the arrays (or equal pieces of them) and updates them in place, value by value.
    *arrays : np.ndarray
        Of one size.
    """
    size = arrays[0].size
    if size < 2 * MIN_VALUES:  # most parameters: decided before any other check
        update(*arrays)
        return
    contiguous = all(a.flags.c_contiguous and a.size == size for a in arrays)
    stretches = pieces(size, MIN_VALUES) if contiguous else [slice(0, size)]
    if len(stretches) == 1:
        update(*arrays)
        return
    flat = [a.reshape(-1) for a in arrays]  # views, as the arrays are contiguous
    run_side_by_side([partial(update, *(f[s] for f in flat)) for s in stretches])


def pieces(size: int, minimum: int) -> list[slice]:
    """``range(size)`` in one slice per thread, each at least ``minimum`` long; a single
    slice when that leaves fewer than two, one thread is set, or this thread is already
    running a piece."""
    count = min(_num_threads, size // minimum)
    if count < 2 or getattr(_local, "busy", False):
        return [slice(0, size)]
    return even_slices(size, count)


def even_slices(size: int, count: int) -> list[slice]:
    """``range(size)`` in ``count`` consecutive slices whose lengths differ by at most one."""
    bounds = [size * k // count for k in range(count + 1)]
    return [slice(a, b) for a, b in pairwise(bounds)]


def run_side_by_side(tasks: Sequence[Callable[[], R]]) -> list[R]:
    """Run the tasks at the same time, each thread a consecutive share of them in order
    (the first share on this thread), and return their results in order. BLAS runs one
    thread per call meanwhile. An error in any task is raised once every share has
    finished."""
    shares = [tasks[share] for share in pieces(len(tasks), 1)]  # one per thread, in order
    if len(shares) < 2:
        return [task() for task in tasks]
    jobs = _workers()
    handbacks = [_Handback() for _ in shares[1:]]
    with one_blas_thread():
        for share, handback in zip(shares[1:], handbacks, strict=True):
            # each share runs in a copy of the caller's context: np.errstate and the like
            jobs.put((copy_context(), share, handback))
        try:
            first = _as_pieces(shares[0])
        finally:
            finished = [handback.wait() for handback in handbacks]
    for ok, outcome in finished:
        if not ok:
            raise outcome
    return [*first, *(result for _, results in finished for result in results)]


class _SpinLockCalls(NamedTuple):
    """glibc's ``pthread_spin_init``, ``pthread_spin_lock`` and ``pthread_spin_unlock``
    through ctypes, which lets go of the interpreter lock during each call."""

    init: Callable[..., int]
    lock: Callable[..., int]
    unlock: Callable[..., int]


def _spin_lock_calls() -> _SpinLockCalls | None:
    """The C library's spin lock functions, looked up among the symbols this process has
    loaded; None where there are none (macOS, Windows)."""
    try:
        process = ctypes.CDLL(None)
        return _SpinLockCalls(
            process.pthread_spin_init, process.pthread_spin_lock, process.pthread_spin_unlock
        )
    except (AttributeError, OSError, TypeError):  # no such symbol, or no CDLL(None)
        return None


_spin_lock = _spin_lock_calls()


class _Handback:
    """Where a worker thread hands a share's outcome back to the caller, who waits for it.

    A caller waits by spinning, as OpenMP's threads do at a barrier, while the share runs:
    on a spin lock the worker releases when it is done, in a ctypes call, so without the
    interpreter lock. A thread that sleeps on a lock instead woke 30-80 µs after its
    release on this 2-core VM, and a training step waits three times (forward, backward,
    optimizer). Alternating blocks of steps in one process, the MNIST net's step took
    0.92-1.01× the time at batch 32 (median 0.99×), 0.93-0.94× at 128, Tiny VGG's 0.98×.

    The caller sleeps as before where spinning would take a core from work: before the
    worker has taken the share, while another split runs in this process (a class's
    live-training sessions share the worker threads), and when more threads are set than
    the process has cores. Where the C library has no spin locks (macOS, Windows), it
    always sleeps.
    """

    __slots__ = ("_done", "_spin", "outcome", "started")

    def __init__(self) -> None:
        self.started = False  # set by the worker thread that took the share
        self.outcome: tuple[bool, object] | None = None
        self._done = threading.Lock()
        self._done.acquire()
        self._spin = ctypes.c_int()  # a pthread_spinlock_t
        if _spin_lock:
            _spin_lock.init(ctypes.byref(self._spin), 0)  # 0: PTHREAD_PROCESS_PRIVATE
            _spin_lock.lock(ctypes.byref(self._spin))

    def put(self, ok: bool, outcome: object) -> None:
        """The worker's side: the outcome is in (the spin lock is released last, so a
        caller that spun finds the lock free)."""
        self.outcome = (ok, outcome)
        self._done.release()
        if _spin_lock:
            _spin_lock.unlock(ctypes.byref(self._spin))

    def wait(self) -> tuple[bool, object]:
        """The caller's side: ``(ok, results or error)`` once the share is done."""
        if self.started and _spin_lock and _blas_holders == 1 and _num_threads <= _cores:
            _spin_lock.lock(ctypes.byref(self._spin))  # the only split, a core for each thread
        self._done.acquire()
        return self.outcome  # type: ignore[return-value]


def _workers() -> queue.SimpleQueue:
    """The queue the worker threads take shares from, starting threads until there are
    ``get_num_threads() − 1`` of them. Workers are never stopped (an idle one waits on the
    queue), so a call on another thread can never be left waiting for a stopped worker.

    Plain threads on a :class:`queue.SimpleQueue` rather than a ``ThreadPoolExecutor``:
    handing a share over and getting its results back took 18 µs this way and 81 µs
    through the executor's futures, and a training step hands over four or five times."""
    global _workers_started
    with _starting:
        while _workers_started < _num_threads - 1:
            name = f"convlens-{_workers_started}"
            threading.Thread(target=_serve, args=(_jobs,), name=name, daemon=True).start()
            _workers_started += 1
    return _jobs


def _serve(jobs: queue.SimpleQueue) -> None:
    """A worker thread: run shares, for good."""
    while True:
        context, share, handback = jobs.get()
        handback.started = True
        try:
            results = context.run(_as_pieces, share)
        except BaseException as error:  # handed to the caller, which raises it
            handback.put(False, error)
        else:
            handback.put(True, results)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread meanwhile: its threads, left spinning after a call, would take the
    cores from the batch pieces that run next.

    OpenBLAS has one pool of threads for the whole process, so the limit is too: the first
    of several threads inside at once sets it, the last one out restores it. The BLAS
    libraries are found once, on first use, and OpenBLAS (built on pthreads) is sized
    through its own ``openblas_set_num_threads``, from whichever thread is here
    (:func:`_thread_count_controls`).
    """
    global _blas, _blas_before, _blas_holders
    with _blas_lock:
        if _blas is None:
            libraries = ThreadpoolController().select(user_api="blas").lib_controllers
            _blas = [_thread_count_controls(library) for library in libraries]
        if _blas_holders == 0:
            _blas_before = [get() for get, _ in _blas]
            for _, set_count in _blas:
                set_count(1)
        _blas_holders += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_holders -= 1
            if _blas_holders == 0:
                for (_, set_count), count in zip(_blas, _blas_before, strict=True):
                    set_count(count)


def _thread_count_controls(
    library: LibController,
) -> tuple[Callable[[], int], Callable[[int], object]]:
    """How to read and set one BLAS library's thread count from any thread.

    For OpenBLAS on pthreads, its own C functions, called directly: threadpoolctl (3.6+)
    lets only one thread size that pool (the first that set a limit, usually the main one)
    and silently ignores the others. From a live-training session's own thread the limit
    was ignored, OpenBLAS's threads spun beside the pieces, and the MNIST net's step took
    1.4-1.6× as long as on the main thread. Taking threadpoolctl's role for a moment and
    giving it back cost 19 µs a split where the C calls take 5, and the MNIST net's
    training step at batch 32 took 0.94× the time without it (alternating processes).
    Other libraries (an OpenMP build, MKL, BLIS) go through threadpoolctl as usual.
    """
    if library.internal_api == "openblas" and library.threading_layer == "pthreads":
        for prefix, suffix in product(("", "scipy_"), ("", "64_", "_64")):  # as threadpoolctl
            get = getattr(library.dynlib, f"{prefix}openblas_get_num_threads{suffix}", None)
            set_count = getattr(library.dynlib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and set_count is not None:
                return get, set_count
    return (lambda: library.num_threads), library.set_num_threads


def _forget_workers() -> None:
    """In a forked child the worker threads do not exist: start new ones when needed."""
    global _jobs, _workers_started, _starting, _blas_lock, _blas_holders
    _jobs, _workers_started, _starting = queue.SimpleQueue(), 0, threading.Lock()
    _blas_lock, _blas_holders = threading.Lock(), 0  # no thread of the parent is inside


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def _as_pieces(tasks: Sequence[Callable[[], R]]) -> list[R]:
    _local.busy = True
    try:
        return [task() for task in tasks]
    finally:
        _local.busy = False
