"""Finite-difference gradient checks for any layer or model.

The analytic gradient from ``backward`` is compared with central differences

    ∂L/∂θ_k ≈ (L(θ + ε e_k) − L(θ − ε e_k)) / 2ε

of a scalar ``L``: either a given loss, or ``L = Σ y ⊙ r`` for a fixed random ``r`` (so every
output contributes with its own weight). Run it in float64: in float32 the rounding error
of the differences is larger than what is being measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .layer import Layer
from .loss import Loss


@dataclass
class GradcheckResult:
    """Relative error ``‖analytic − numeric‖ / max(‖analytic‖, ‖numeric‖)`` per tensor.

    Truthy when every error is at most ``tolerance``.
    """

    errors: dict[str, float] = field(default_factory=dict)
    tolerance: float = 1e-7

    @property
    def ok(self) -> bool:
        return all(e <= self.tolerance for e in self.errors.values())

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        rows = [
            f"{name:<16} {err:.2e} {'ok' if err <= self.tolerance else 'FAIL'}"
            for name, err in self.errors.items()
        ]
        return "\n".join([f"gradcheck (tolerance {self.tolerance:.0e})", *rows])


def gradcheck(
    layer: Layer,
    x: np.ndarray,
    *,
    loss: Loss | None = None,
    target: np.ndarray | None = None,
    eps: float = 1e-5,
    tolerance: float = 1e-7,
    max_checks: int | None = None,
    seed: int = 0,
) -> GradcheckResult:
    """Check ``layer.backward`` against central finite differences.

    Parameters
    ----------
    layer : Layer
        Any layer or ``Sequential``, with float64 parameters (``layer.astype(np.float64)``).
        It must be deterministic (a ``Dropout`` in training mode is not).
    x : np.ndarray
        A float64 input batch.
    loss, target : optional
        If given, ``L = loss(layer(x), target)``; otherwise ``L = Σ layer(x) ⊙ r``.
    eps : float, default 1e-5
        The finite-difference step. Smaller steps lose digits to rounding (the error grows
        like 1/ε); larger ones to truncation (like ε²). 1e-5 balances the two in float64.
    tolerance : float, default 1e-7
        Largest acceptable relative error.
    max_checks : int, optional
        Check at most this many randomly chosen elements per tensor (all by default).
    seed : int, default 0
        Seeds ``r`` and the choice of elements.

    Returns
    -------
    GradcheckResult
        Errors for ``"input"`` and for every parameter, by name.
    """
    x = np.array(x)  # our own copy: its elements are nudged in place
    params = dict(layer.named_parameters())
    tensors = {"input": x, **{name: p.data for name, p in params.items()}}
    not64 = [name for name, t in tensors.items() if t.dtype != np.float64]
    if not64:
        raise ValueError(
            f"gradcheck needs float64 everywhere; these are not: {not64}. "
            "Use layer.astype(np.float64) and a float64 input."
        )
    rng = np.random.default_rng(seed)

    def objective() -> float:
        y = layer.forward(x)
        return loss.forward(y, target) if loss is not None else float(np.sum(y * r))

    r = rng.standard_normal(layer.forward(x).shape)
    layer.zero_grad()
    objective()
    dy = loss.backward() if loss is not None else r
    analytic = {"input": layer.backward(dy)}
    analytic.update({name: p.grad.copy() for name, p in params.items()})

    result = GradcheckResult(tolerance=tolerance)
    for name, tensor in tensors.items():
        picks = _pick(tensor.size, max_checks, rng)
        numeric = np.array([_central_difference(objective, tensor, k, eps) for k in picks])
        result.errors[name] = _relative_error(analytic[name].ravel()[picks], numeric)
    return result


def _pick(size: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or size <= limit:
        return np.arange(size)
    return np.sort(rng.choice(size, limit, replace=False))


def _central_difference(f: Callable[[], float], tensor: np.ndarray, k: int, eps: float) -> float:
    flat = tensor.reshape(-1)  # a view: nudging it nudges the tensor the layer reads
    original = flat[k]
    flat[k] = original + eps
    up = f()
    flat[k] = original - eps
    down = f()
    flat[k] = original
    return (up - down) / (2 * eps)


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)
