"""The convolution's per-thread scratch buffers stay bounded: one huge call (a huge dilation
with "same" padding, say) must not leave the process larger for good."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import convlens.nn as nn
from convlens.nn import conv as conv_module

#: Measures how much larger a process stays after one convolution forward and backward
#: with the given dilation, against the same after a small warm-up convolution (MiB).
RSS_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import convlens.nn as nn

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    warm = nn.Conv2D(1, 1, 3, padding="same")
    warm.backward(np.ones_like(warm.forward(x)))
    before = rss()
    conv = nn.Conv2D(1, 1, 3, padding="same", dilation=int(sys.argv[1]))
    conv.backward(np.ones_like(conv.forward(x)))
    del conv
    print((rss() - before) / 2**20)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_a_huge_call_does_not_leave_the_process_larger():
    """Dilation 2000 on 28×28 needs scratch matrices of 195 MB each; kept, they held the
    process 370 MB larger for good. Now it stays within a few MB of where it was."""
    result = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, "2000"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CONVLENS_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    grown = float(result.stdout)
    assert grown < 32, f"the process stayed {grown:.0f} MiB larger"


def kept_bytes() -> dict[str, int]:
    """This thread's scratch buffers, by name, as kept between calls."""
    workspace = vars(conv_module._workspace)
    return {name: buffer.nbytes for name, buffer in workspace.items()}


@pytest.mark.parametrize("seed", range(4))
def test_kept_buffers_stay_under_the_budget_and_big_calls_compute_the_same(seed, monkeypatch):
    """With a small budget every conv here needs more than it: each call then gets fresh
    buffers, keeps none over the budget, and computes exactly what kept buffers compute."""
    rng = np.random.default_rng(seed)
    layer = nn.Conv2D(
        int(rng.integers(1, 4)), int(rng.integers(1, 20)), int(rng.integers(1, 4)),
        padding="same", dilation=int(rng.integers(1, 6)),
    )  # fmt: skip
    x = rng.standard_normal((3, layer.in_channels, 12, 11)).astype(np.float32)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    grad = layer.weight.grad.copy()

    budget = 256
    monkeypatch.setattr(conv_module, "SCRATCH_KEEP_BYTES", budget)
    monkeypatch.setattr(conv_module, "_workspace", type(conv_module._workspace)())
    layer.zero_grad()
    np.testing.assert_array_equal(layer.forward(x), y)
    np.testing.assert_array_equal(layer.backward(dy), dx)
    np.testing.assert_array_equal(layer.weight.grad, grad)
    assert all(size <= budget for size in kept_bytes().values()), kept_bytes()


def test_typical_buffers_are_kept_and_reused():
    """Reuse is what makes training fast: a second call of the same size allocates nothing."""
    layer = nn.Conv2D(3, 10, 3, padding="same")
    x = np.zeros((8, 3, 32, 32), np.float32)
    layer.forward(x)
    first = {name: buffer.ctypes.data for name, buffer in vars(conv_module._workspace).items()}
    layer.forward(x)
    again = {name: buffer.ctypes.data for name, buffer in vars(conv_module._workspace).items()}
    assert first and again == first
    assert max(kept_bytes().values()) <= conv_module.SCRATCH_KEEP_BYTES
