"""Benchmark the convlens NumPy engine against PyTorch on the CPU, in float32.

The presets of :mod:`convlens.models` are built in convlens and twinned into PyTorch with
:func:`convlens.interop.to_torch` (copies of the same initial weights), and one
forward/backward is checked to agree before anything is timed:

* Tiny VGG, CNN Explainer's network (3x64x64 input, 19,920 parameters), and the MNIST net
  (1x28x28, ``mnist_net``), each at batch sizes 32 and 128:

  - ``train``: one full training step — zero_grad, forward, cross-entropy, backward,
    SGD step with momentum 0.9 (convlens runs the middle three as
    ``Sequential.forward_backward``, as its trainer does: the same numbers as three
    separate calls, in one hand-over to the second thread instead of two);
  - ``forward``: inference, both models in eval mode (torch under ``no_grad``; convlens
    has no such mode and keeps its backward caches);

* Tiny VGG forward of a single image: the explainer's latency.

Each case is warmed up, then convlens and torch are timed alternately (interleaved
repeats, the order swapped every repeat) with ``time.perf_counter``. Each repeat starts
with a short sleep, so the other framework's idle threads have stopped spinning, and
0.1 s of untimed calls, so its own threads are awake (``SETTLE_S``, ``WARM_S``), then
times ``RUN_LENGTH`` calls in a row, as a training loop makes them. The table shows the
median with min–max over all timed calls for both and the ratio of medians,
convlens/torch.

``floor ms`` is the GEMM floor: the FLOPs of the conv and dense matrix products (forward
``2·N·O·C·kh·kw·Ho·Wo`` per conv and ``2·N·in·out`` per dense; training ≈ 3× forward, for
the forward, dW and dx products) divided by this machine's float32 NumPy matmul rate on a
1024x1024 @ 1024x1024 product. The small GEMMs of a convolution run below that rate, so no
engine reaches the floor; it shows how far from pure matmul cost a case is. ``peak MiB`` is
tracemalloc's peak over a few convlens training steps (NumPy's buffers are traced; weights
and inputs made before tracing starts are not counted).

Run::

    make bench                                            # 30 repeats, 2 threads
    .venv/bin/python bench/bench_engine.py --quick        # smoke run
    .venv/bin/python bench/bench_engine.py --repeats 60 --threads 2
    .venv/bin/python bench/bench_engine.py --only "MNIST train"          # some rows

The full results are also written to ``bench/results/engine.json``. ``--threads`` sets
torch's intra-op threads and the number of pieces convlens splits a batch into
(:func:`convlens.nn.set_num_threads`, one thread each, BLAS single-threaded meanwhile).
Work outside a split (a batch of one) uses NumPy's BLAS (OpenBLAS) threads, which it reads
from ``OPENBLAS_NUM_THREADS`` once at import (default: every core). As the trainer does, the
bench lets malloc keep freed memory (:func:`convlens.nn.keep_freed_memory`); both frameworks
allocate through it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from quiet import wait_for_quiet
from results_file import write_results

import convlens.nn as nn
from convlens.interop import to_torch
from convlens.models import mnist_net, tiny_vgg

LR, MOMENTUM = 0.01, 0.9
GEMM_SIZE, GEMM_REPEATS = 1024, 10
TOLERANCE = 1e-3  # max |convlens − torch| over logits and gradients before timing
# After a call returns, OpenBLAS (NumPy) keeps a worker thread spinning for ~0.1 s and
# torch's OpenMP threads for ~0.01 s; on a 2-core machine that spinning halves the other
# framework's speed. So each repeat starts with a sleep this long (the other side goes idle)
# and then untimed calls for WARM_S (its own threads wake up: after a sleep this VM runs two
# threads slowly for ~50 ms, e.g. an MNIST-net step split over two threads takes 9.4 ms right
# after it and 5.8 ms from the 8th step on, which a training loop never pays); then it times
# RUN_LENGTH calls in a row.
SETTLE_S = 0.15
WARM_S = 0.1
RUN_LENGTH = 4
MEMORY_STEPS = 2  # convlens training steps traced for the peak memory

Mode = Literal["train", "forward"]
Step = Callable[[], object]


@dataclass(frozen=True)
class Workload:
    name: str
    make: Callable[[], nn.Sequential]  # a convlens.models preset
    input_shape: tuple[int, int, int]

    @property
    def num_classes(self) -> int:
        return self.make().output_shape(self.input_shape)[0]


TINY_VGG = Workload("Tiny VGG", tiny_vgg, (3, 64, 64))
MNIST = Workload("MNIST", mnist_net, (1, 28, 28))
CASES: list[tuple[Workload, Mode, int]] = [
    *((w, mode, n) for w in (TINY_VGG, MNIST) for n in (32, 128) for mode in ("train", "forward")),
    (TINY_VGG, "forward", 1),
]


def case_label(workload: Workload | str, mode: Mode, batch: int) -> str:
    """``"Tiny VGG train N=32"``: a row of the table."""
    return f"{getattr(workload, 'name', workload)} {mode} N={batch}"


@dataclass
class Timing:
    samples_ms: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    def summary(self) -> str:
        return f"{self.median:.2f} [{min(self.samples_ms):.2f}–{max(self.samples_ms):.2f}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "median_ms": self.median,
            "min_ms": min(self.samples_ms),
            "max_ms": max(self.samples_ms),
            "samples_ms": self.samples_ms,
        }


@dataclass
class CaseResult:
    workload: str
    mode: Mode
    batch: int
    convlens: Timing
    torch: Timing
    gemm_flops: int
    floor_ms: float
    max_abs_diff: float
    peak_mib: float | None = None

    @property
    def label(self) -> str:
        return case_label(self.workload, self.mode, self.batch)

    @property
    def ratio(self) -> float:
        return self.convlens.median / self.torch.median

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "mode": self.mode,
            "batch": self.batch,
            "convlens": self.convlens.to_json(),
            "torch": self.torch.to_json(),
            "ratio_convlens_over_torch": self.ratio,
            "gemm_flops": self.gemm_flops,
            "floor_ms": self.floor_ms,
            "max_abs_diff_vs_torch": self.max_abs_diff,
            "convlens_train_peak_mib": self.peak_mib,
        }


# -- models ------------------------------------------------------------------------------
def build_pair(workload: Workload) -> tuple[nn.Sequential, torch.nn.Sequential]:
    """The workload in both frameworks, torch holding a copy of convlens's initial weights."""
    ours = workload.make()
    return ours, to_torch(ours)


def check_same_math(
    ours: nn.Sequential, theirs: torch.nn.Sequential, x: np.ndarray, target: np.ndarray
) -> float:
    """Max |convlens − torch| over the logits and every parameter gradient of one step."""
    loss_fn = nn.CrossEntropyLoss()
    ours.zero_grad()
    _, logits = ours.forward_backward(x, target, loss_fn)  # as timed below
    theirs.zero_grad()
    t_logits = theirs(torch.from_numpy(x))
    torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(target)).backward()
    diffs = [np.abs(logits - t_logits.detach().numpy()).max()]
    pairs = zip(ours.parameters(), theirs.parameters(), strict=True)
    diffs += [np.abs(p.grad - t.grad.numpy()).max() for p, t in pairs]
    worst = float(max(diffs))
    if worst > TOLERANCE:
        raise AssertionError(f"convlens and torch disagree by {worst:.3g} (> {TOLERANCE})")
    return worst


def convlens_step(model: nn.Sequential, mode: Mode, x: np.ndarray, target: np.ndarray) -> Step:
    if mode == "forward":
        model.eval()  # inference, as the explainer and the trainer's evaluation run it
        return lambda: model.forward(x)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = nn.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def train_step() -> None:
        optimizer.zero_grad()
        model.forward_backward(x, target, loss_fn)  # no dL/d(image): torch skips it too
        optimizer.step()

    return train_step


def torch_step(
    model: torch.nn.Sequential, mode: Mode, x: torch.Tensor, target: torch.Tensor
) -> Step:
    if mode == "forward":
        model.eval()

        def forward() -> None:
            with torch.no_grad():
                model(x)

        return forward
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def train_step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), target).backward()
        optimizer.step()

    return train_step


# -- measuring ---------------------------------------------------------------------------
def timeit_pair(
    fn_a: Step,
    fn_b: Step,
    repeats: int,
    settle_s: float = SETTLE_S,
    warm_s: float = WARM_S,
    run: int = RUN_LENGTH,
) -> tuple[list[float], list[float]]:
    """Milliseconds per call of each, interleaved; who goes first alternates every repeat.

    Each repeat of a framework is a ``settle_s`` sleep, so the other framework's idle
    threads have stopped spinning, untimed calls for ``warm_s``, so its own threads are
    awake, then ``run`` timed calls back to back: the steady state of a loop running one
    framework alone (see ``SETTLE_S``). Every timed call is one sample.
    """
    fns, samples_ms = (fn_a, fn_b), ([], [])
    for i in range(repeats):
        for k in (0, 1) if i % 2 == 0 else (1, 0):
            time.sleep(settle_s)
            warm_until = time.perf_counter() + warm_s
            while time.perf_counter() < warm_until:
                fns[k]()
            for _ in range(run):
                start = time.perf_counter()
                fns[k]()
                samples_ms[k].append((time.perf_counter() - start) * 1e3)
    return samples_ms


def forward_gemm_flops(model: nn.Sequential, input_shape: tuple[int, ...], batch: int) -> int:
    """FLOPs of the forward matrix products: 2·N·O·C·kh·kw·Ho·Wo per conv, 2·N·in·out per dense."""
    flops, shape = 0, tuple(input_shape)
    for layer in model:
        out = layer.output_shape(shape)
        if isinstance(layer, nn.Conv2D):
            kh, kw = layer.kernel_size
            flops += 2 * batch * layer.in_channels * kh * kw * out[0] * out[1] * out[2]
        elif isinstance(layer, nn.Dense):
            flops += 2 * batch * layer.in_features * layer.out_features
        shape = out
    return flops


def gemm_rate(n: int = GEMM_SIZE, repeats: int = GEMM_REPEATS) -> float:
    """This machine's float32 NumPy matmul rate in FLOP/s: median of an n×n @ n×n product."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    for _ in range(2):  # warm-up: thread pool start, page faults
        a @ b
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(seconds)


def peak_mib(step: Step, steps: int) -> float:
    """Peak traced allocation (MiB) over ``steps`` calls; NumPy reports its buffers."""
    tracemalloc.start()
    try:
        for _ in range(steps):
            step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def memory_growth(steps: int) -> dict[str, float]:
    """Traced memory (MiB) held after 10 and after ``steps`` MNIST-net training steps.

    Equal numbers mean nothing accumulates from step to step (caches are replaced, not
    appended to). Garbage is collected before each reading: NumPy's pad and as_strided
    leave small reference cycles that the collector frees but has not yet run on. Also
    the process's peak resident size, from the OS.
    """
    import gc
    import resource

    nn.manual_seed(0)
    model = mnist_net()
    rng = np.random.default_rng(0)
    x = rng.random((32, 1, 28, 28), dtype=np.float32)
    step = convlens_step(model, "train", x, rng.integers(0, 10, 32))
    tracemalloc.start()
    try:
        held = {}
        for i in range(1, steps + 1):
            step()
            if i in (10, steps):
                gc.collect()
                held[i] = tracemalloc.get_traced_memory()[0] / 2**20
    finally:
        tracemalloc.stop()
    return {
        "steps": steps,
        "held_mib_after_10": held[10],
        f"held_mib_after_{steps}": held[steps],
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_case(
    workload: Workload, mode: Mode, batch: int, repeats: int, warmup: int, rate: float
) -> CaseResult:
    nn.manual_seed(0)
    ours, theirs = build_pair(workload)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *workload.input_shape), dtype=np.float32)
    target = rng.integers(0, workload.num_classes, batch)  # int64, as torch expects
    diff = check_same_math(ours, theirs, x, target)

    run_ours = convlens_step(ours, mode, x, target)
    run_theirs = torch_step(theirs, mode, torch.from_numpy(x), torch.from_numpy(target))
    for _ in range(warmup):
        run_ours()
        run_theirs()
    ours_ms, theirs_ms = timeit_pair(run_ours, run_theirs, repeats)

    flops = forward_gemm_flops(ours, workload.input_shape, batch) * (3 if mode == "train" else 1)
    return CaseResult(
        workload=workload.name,
        mode=mode,
        batch=batch,
        convlens=Timing(ours_ms),
        torch=Timing(theirs_ms),
        gemm_flops=flops,
        floor_ms=flops / rate * 1e3,
        max_abs_diff=diff,
        peak_mib=peak_mib(run_ours, MEMORY_STEPS) if mode == "train" else None,
    )


# -- reporting ---------------------------------------------------------------------------
def machine_info(threads: int, rate: float, load: float) -> dict[str, Any]:
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return {
        "numpy": np.__version__,
        "numpy_blas": f"{blas.get('name')} {blas.get('version')}",
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "torch": torch.__version__,
        "torch_threads": threads,
        "convlens_threads": nn.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [load, *os.getloadavg()[1:]],
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy_gemm_gflops": rate / 1e9,
    }


def format_table(results: list[CaseResult]) -> str:
    headers = (
        "workload",
        "convlens ms [min–max]",
        "torch ms [min–max]",
        "ratio",
        "floor ms",
        "peak MiB",
    )
    rows = [
        (
            r.label,
            r.convlens.summary(),
            r.torch.summary(),
            f"{r.ratio:.2f}x",
            f"{r.floor_ms:.2f}",
            "-" if r.peak_mib is None else f"{r.peak_mib:.1f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]

    def line(cells: tuple[str, ...]) -> str:
        aligned = [cells[0].ljust(widths[0])]  # the label left-aligned, numbers right
        aligned += [cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(aligned)

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, help="timed repeats per case (default 30)")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch and convlens threads (default 2)"
    )
    parser.add_argument("--quick", action="store_true", help="3 repeats, 1 warm-up: smoke run")
    parser.add_argument(
        "--memory-steps", type=int, default=1000, help="training steps for the memory check"
    )
    parser.add_argument(
        "--only",
        metavar="TEXT",
        help='run only the cases whose label contains TEXT (e.g. "MNIST train"); '
        "nothing is written to bench/results",
    )
    args = parser.parse_args(argv)
    cases = [c for c in CASES if args.only is None or args.only in case_label(*c)]
    if not cases:
        parser.error(f"no case label contains {args.only!r}")
    repeats = args.repeats or (3 if args.quick else 30)
    warmup = 1 if args.quick else 3

    # a run whose results the README may quote starts on a quiet machine (bench/quiet.py)
    load = os.getloadavg()[0] if args.only or args.quick else wait_for_quiet()
    torch.set_num_threads(args.threads)
    nn.set_num_threads(args.threads)
    nn.keep_freed_memory()  # as the trainer does; both frameworks allocate through it
    rate = gemm_rate()
    info = machine_info(args.threads, rate, load)
    print(
        f"numpy {info['numpy']} ({info['numpy_blas']}, "
        f"OPENBLAS_NUM_THREADS={info['OPENBLAS_NUM_THREADS'] or 'unset'}), "
        f"torch {info['torch']}, torch and convlens threads {args.threads}, "
        f"{info['cpu_count']} CPUs, "
        f"NumPy float32 GEMM {info['numpy_gemm_gflops']:.1f} GFLOP/s, "
        f"load average {info['load_average_at_start'][0]:.2f}"
    )
    print(
        f"float32, {repeats} interleaved repeats after {warmup} warm-up(s) per case, "
        f"each a {SETTLE_S} s sleep, {WARM_S} s of untimed calls and {RUN_LENGTH} timed calls\n"
    )

    results = [run_case(w, mode, n, repeats, warmup, rate) for w, mode, n in cases]
    print(format_table(results))
    if args.only is not None:
        return
    steps = 20 if args.quick else args.memory_steps
    memory = memory_growth(steps)
    print(
        f"\nmemory over {steps} MNIST-net training steps (batch 32): "
        f"{memory['held_mib_after_10']:.2f} MiB held after 10 steps, "
        f"{memory[f'held_mib_after_{steps}']:.2f} MiB after {steps}; "
        f"peak RSS {memory['max_rss_mib']:.0f} MiB"
    )

    report = {
        "machine": {**info, "load_average_at_end": os.getloadavg()},
        "settings": {
            "repeats": repeats,
            "warmup": warmup,
            "settle_s": SETTLE_S,
            "warm_s": WARM_S,
            "run_length": RUN_LENGTH,
            "lr": LR,
            "momentum": MOMENTUM,
        },
        "cases": [r.to_json() for r in results],
        "memory": memory,
    }
    write_results("engine", report)


if __name__ == "__main__":
    main()
