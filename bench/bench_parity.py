"""Train the MNIST net in convlens and in PyTorch side by side, as the seeds did.

Same initial weights, same batches in the same order, SGD with momentum, one epoch of the
bundled MNIST (4,000 images) per dtype. Prints both loss curves, the largest per-step
difference, the accuracies on the 1,000 held-out images, and the time each framework spent.
Those times come from steps that alternate between the frameworks, so each runs while the
other's BLAS/OpenMP threads are still spinning: read speed from ``bench_engine.py``, which
settles the threads before every timed call.

Run::

    make bench                                   # the engine benchmark, then this
    .venv/bin/python bench/bench_parity.py --epochs 2
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from results_file import write_results

import convlens.nn as nn
from convlens.data import load_dataset
from convlens.models import mnist_net
from convlens.train.parity import ParityResult, run_parity


def held_out() -> tuple[np.ndarray, np.ndarray]:
    parts = [load_dataset("mnist-bundled", split) for split in ("val", "test")]
    x, y = (np.concatenate(p) for p in zip(*parts, strict=True))
    return x, y


def report(name: str, r: ParityResult, every: int) -> str:
    lines = [f"\n{name}: {r.steps} steps", f"{'step':>6}  {'convlens':>10}  {'PyTorch':>10}"]
    for step in [*range(0, r.steps, every), r.steps - 1]:
        lines.append(f"{step + 1:>6}  {r.losses[step]:>10.6f}  {r.torch_losses[step]:>10.6f}")
    lines += [
        f"largest relative loss difference: {r.max_relative_difference:.2e}",
        f"held-out accuracy: convlens {r.accuracy:.4f}, PyTorch {r.torch_accuracy:.4f}",
        f"time in training steps: convlens {r.seconds:.2f} s, PyTorch {r.torch_seconds:.2f} s "
        f"({r.seconds / r.torch_seconds:.2f}x; alternating steps disturb each other's threads, "
        "see bench_engine.py for speed)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--threads", type=int, default=2, help="PyTorch and convlens threads (default 2)"
    )
    parser.add_argument("--every", type=int, default=10, help="print every N-th step's losses")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    nn.set_num_threads(args.threads)
    train, test = load_dataset("mnist-bundled", "train"), held_out()
    results = {}
    for dtype in (np.float64, np.float32):
        r = run_parity(
            mnist_net, train, test, dtype=dtype, epochs=args.epochs, batch_size=args.batch_size
        )
        print(report(np.dtype(dtype).name, r, args.every))
        results[np.dtype(dtype).name] = {
            "losses": r.losses.tolist(),
            "torch_losses": r.torch_losses.tolist(),
            "max_relative_difference": r.max_relative_difference,
            "accuracy": r.accuracy,
            "torch_accuracy": r.torch_accuracy,
            "seconds": r.seconds,
            "torch_seconds": r.torch_seconds,
        }
    write_results("parity", results)


if __name__ == "__main__":
    main()
