"""One helper checks every layer: against PyTorch autograd, and against finite differences.

``check_layer(layer, torch_fn, x, dtype)`` runs our forward and backward with a random
upstream gradient, runs ``torch_fn`` on the same numbers under autograd, and compares the
output, dL/dx and every parameter's gradient. In float64 it also runs
:func:`convlens.nn.gradcheck`. Tolerances are relative to the largest magnitude compared.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

import convlens.nn as nn

TORCH_TOL = {np.float64: 1e-10, np.float32: 1e-5}
FINITE_DIFFERENCE_TOL = 1e-7


def assert_close(ours: np.ndarray, theirs, tol: float, what: str = "") -> None:
    """``max |ours − theirs| ≤ tol · max(|theirs|)`` with matching shapes."""
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    scale = max(float(np.max(np.abs(theirs), initial=0.0)), 1e-30)
    err = float(np.max(np.abs(ours - theirs), initial=0.0)) / scale
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.0e}"


def check_layer(
    layer: nn.Layer,
    torch_fn: Callable[..., torch.Tensor],
    x: np.ndarray,
    dtype: type = np.float64,
    *,
    seed: int = 0,
    gradcheck_max: int | None = 200,
) -> np.ndarray:
    """Compare ``layer`` with ``torch_fn(x_tensor, **parameter_tensors)``; returns our output.

    Parameter tensors are passed by their names in ``layer.named_parameters()``.
    """
    rng = np.random.default_rng(seed)
    layer.astype(dtype)
    x = x.astype(dtype)
    layer.zero_grad()
    y = layer.forward(x.copy())
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    assert y.dtype == dtype and dx.dtype == dtype, (y.dtype, dx.dtype)

    x_t = torch.tensor(x, requires_grad=True)
    params_t = {
        name.replace(".", "_"): torch.tensor(p.data, requires_grad=True)
        for name, p in layer.named_parameters()
    }
    y_t = torch_fn(x_t, **params_t)
    y_t.backward(torch.tensor(dy))

    tol = TORCH_TOL[dtype]
    assert_close(y, y_t, tol, f"{layer!r} forward")
    assert_close(dx, x_t.grad, tol, f"{layer!r} dL/dx")
    for name, p in layer.named_parameters():
        assert p.grad.dtype == dtype
        assert_close(p.grad, params_t[name.replace(".", "_")].grad, tol, f"{layer!r} dL/d{name}")

    if dtype == np.float64:
        result = nn.gradcheck(layer, x, max_checks=gradcheck_max, seed=seed)
        assert result.ok, f"{layer!r}\n{result}"
    return y


def layers_one_by_one(
    model: nn.Sequential, x: np.ndarray, dy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The model's output, dL/dx and parameter gradients with its layers run one by one as
    written (no reordering or fusing, no split batch): what ``Sequential`` must reproduce."""
    y = x
    for layer in model:
        y = layer.forward(y)
    model.zero_grad()
    dx = dy
    for layer in reversed(model.layers):
        dx = layer.backward(dx)
    return y, dx, [p.grad.copy() for p in model.parameters()]
