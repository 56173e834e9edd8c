"""Optimizers with exactly torch.optim's update rules (same order of operations).

Every update is element-wise, so a large parameter is updated in pieces side by side, one
per thread (:func:`~convlens.nn.threads.in_pieces`), with the same numbers."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import numpy as np

from .checks import integer
from .parameter import Parameter
from .threads import in_pieces

#: Every this many steps an optimizer sets the subnormal values of its state to zero
#: (:func:`flush_subnormals`).
FLUSH_EVERY = 64


def flush_subnormals(arrays: Iterable[np.ndarray | None]) -> None:
    """Set every subnormal value (0 < |a| < the smallest normal float) of ``arrays`` to 0.

    A momentum entry whose gradient stays 0 (the weights into a dead ReLU unit) shrinks by
    μ every step until it reaches the smallest subnormal float, where μ·v rounds back to v,
    and stays there for good. x86 cores then take a slow microcode path for every
    operation on it: with 5 % of the MNIST net's velocity subnormal (as after 2,000 steps
    on random batches) its SGD update took 3.4× as long. Such a value moves no weight
    (η·v vanishes against any normal θ), so zeroing it changes no parameter.
    """
    for a in arrays:
        if a is not None:
            a[np.abs(a) < np.finfo(a.dtype).tiny] = 0


class Optimizer:
    """Holds the parameters to update; ``step()`` updates them in place from ``.grad``."""

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        first: dict[int, int] = {}
        for i, p in enumerate(self.params):
            if first.setdefault(id(p), i) != i:
                raise ValueError(
                    f"{type(self).__name__}: parameter {i} ({p.name or 'unnamed'}, shape "
                    f"{p.shape}) is parameter {first[id(p)]} again, and would be updated "
                    "twice a step"
                )
        if not lr >= 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be >= 0, got {lr}")
        self.lr = float(lr)

    def step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict[str, float | int]]:
        """The optimizer's state: its arrays by name, and its scalars (JSON-able).

        Together with the parameters this is everything needed to continue training
        bit-exactly (see :meth:`load_state_dict`).
        """
        return {}, {}

    def load_state_dict(self, arrays: dict[str, np.ndarray], scalars: dict[str, float]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def zero_grad(self) -> None:
        """Clear every parameter's accumulated gradient."""
        for p in self.params:
            p.zero_grad()

    def _restored(
        self, arrays: dict[str, np.ndarray], prefix: str, required: bool = True
    ) -> list[np.ndarray | None]:
        """Copies of ``arrays[f"{prefix}.{i}"]``, one per parameter i (None where absent and
        not ``required``); a ValueError names any array that is missing or whose shape is
        not its parameter's — a checkpoint is a file, and files can be wrong."""
        restored = []
        for i, p in enumerate(self.params):
            array = arrays.get(f"{prefix}.{i}")
            if array is None and required:
                raise ValueError(f"{type(self).__name__} state: array {prefix}.{i} is missing")
            if array is not None and array.shape != p.data.shape:
                raise ValueError(
                    f"{type(self).__name__} state: array {prefix}.{i} has shape {array.shape}, "
                    f"its parameter {p.data.shape}"
                )
            restored.append(None if array is None else array.copy())
        return restored


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and weight decay.

    For each parameter θ with gradient g, as ``torch.optim.SGD``::

        g ← g + λ θ                          (weight decay λ)
        v ← g  (first step),  v ← μ v + (1 − τ) g  (later)    (momentum μ, dampening τ)
        g ← g + μ v  if nesterov else v
        θ ← θ − η g

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
        Learning rate η.
    momentum, weight_decay, dampening : float, default 0
    nesterov : bool, default False
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"SGD: momentum and weight_decay must be >= 0, got {momentum}, {weight_decay}"
            )
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening 0")
        self.momentum, self.weight_decay = momentum, weight_decay
        self.dampening, self.nesterov = dampening, nesterov
        self.velocity: list[np.ndarray | None] = [None] * len(self.params)
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        for i, p in enumerate(self.params):
            if not self.momentum:
                in_pieces(self._update, p.data, p.grad)
                continue
            first = self.velocity[i] is None
            if first:
                self.velocity[i] = np.empty_like(p.data)
            in_pieces(partial(self._update, first=first), p.data, p.grad, self.velocity[i])
        if self.steps % FLUSH_EVERY == 0:
            flush_subnormals(self.velocity)

    def _update(
        self, theta: np.ndarray, g: np.ndarray, v: np.ndarray | None = None, first: bool = False
    ) -> None:
        """One parameter's update in place (or a piece's: every operation is element-wise)."""
        if self.weight_decay:
            g = g + self.weight_decay * theta
        if v is not None:
            if first:
                v[...] = g
            else:
                v *= self.momentum
                v += (1 - self.dampening) * g if self.dampening else g
            g = g + self.momentum * v if self.nesterov else v
        theta -= self.lr * g

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict[str, float | int]]:
        arrays = {f"velocity.{i}": v for i, v in enumerate(self.velocity) if v is not None}
        return arrays, {"steps": self.steps}

    def load_state_dict(self, arrays: dict[str, np.ndarray], scalars: dict[str, float]) -> None:
        self.velocity = self._restored(arrays, "velocity", required=False)
        self.steps = integer(scalars.get("steps", 0), "SGD state steps", minimum=0)


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam``. For each parameter θ with gradient g at step t::

        g ← g + λ θ
        m ← m + (1 − β₁)(g − m)              (= β₁ m + (1 − β₁) g)
        v ← β₂ v + (1 − β₂) g²
        θ ← θ − η / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        if not all(0.0 <= b < 1.0 for b in betas) or eps < 0 or weight_decay < 0:
            raise ValueError(
                f"Adam: betas must lie in [0, 1) and eps, weight_decay be >= 0; "
                f"got betas={betas}, eps={eps}, weight_decay={weight_decay}"
            )
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay
        self.t = 0
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]

    def step(self) -> None:
        self.t += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1**self.t)
        correction2_sqrt = (1 - beta2**self.t) ** 0.5
        update = partial(self._update, step_size=step_size, correction2_sqrt=correction2_sqrt)
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            in_pieces(update, p.data, p.grad, m, v)
        if self.t % FLUSH_EVERY == 0:
            flush_subnormals([*self.m, *self.v])

    def _update(
        self,
        theta: np.ndarray,
        g: np.ndarray,
        m: np.ndarray,
        v: np.ndarray,
        step_size: float,
        correction2_sqrt: float,
    ) -> None:
        """One parameter's update in place (or a piece's: every operation is element-wise)."""
        beta1, beta2 = self.betas
        if self.weight_decay:
            g = g + self.weight_decay * theta
        m += (1 - beta1) * (g - m)
        v *= beta2
        v += (1 - beta2) * (g * g)
        denom = np.sqrt(v) / correction2_sqrt + self.eps
        theta -= step_size * (m / denom)

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict[str, float | int]]:
        arrays = {f"m.{i}": m for i, m in enumerate(self.m)}
        arrays.update({f"v.{i}": v for i, v in enumerate(self.v)})
        return arrays, {"t": self.t}

    def load_state_dict(self, arrays: dict[str, np.ndarray], scalars: dict[str, float]) -> None:
        self.m, self.v = self._restored(arrays, "m"), self._restored(arrays, "v")
        self.t = integer(scalars.get("t"), "Adam state t", minimum=0)
