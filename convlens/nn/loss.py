"""Losses: a scalar from predictions and targets, and its gradient for backward."""

from __future__ import annotations

from typing import Any

import numpy as np

from .activation import Softmax, log_softmax


class Loss:
    """A loss keeps what ``backward()`` needs from its last ``forward``."""

    _cache = None

    def __call__(self, prediction: np.ndarray, target: np.ndarray) -> float:
        return self.forward(prediction, target)

    def forward(self, prediction: np.ndarray, target: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def _saved(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}: backward() called before forward()")
        return self._cache


class CrossEntropyLoss(Loss):
    """Softmax and negative log-likelihood fused, averaged over the batch.

    ``L = (1/N) Σ_n [ logsumexp(z_n) − z_n[t_n] ]`` and ``dL/dz = (softmax(z) − onehot(t)) / N``
    — the famous ``p − y``. Computing ``log softmax`` directly (never ``log(softmax)``) keeps
    it finite for logits of any size.

    ``forward(logits (N, K), target int (N,)) -> float``; ``backward() -> (N, K)``.
    """

    def forward(self, prediction: np.ndarray, target: np.ndarray) -> float:
        logits, target = class_targets(self, prediction, target)
        log_p = log_softmax(logits)  # (N, K)
        rows = np.arange(len(target))
        self._cache = (log_p, target)
        return float(-log_p[rows, target].mean())

    def backward(self) -> np.ndarray:
        log_p, target = self._saved()
        grad = np.exp(log_p)  # p
        grad[np.arange(len(target)), target] -= 1  # p − y
        return grad / len(target)


def class_targets(loss: Loss, logits: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """``logits (N, K)`` and integer ``target (N,)`` in ``0..K−1`` as arrays, or a ValueError
    naming the loss."""
    logits, target = np.asarray(logits), np.asarray(target)
    who = type(loss).__name__
    if logits.ndim != 2 or target.shape != (len(logits),):
        raise ValueError(
            f"{who}: expected logits (N, K) and integer targets (N,), "
            f"got shapes {logits.shape} and {target.shape}"
        )
    if not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"{who}: targets must be class indices, got {target.dtype}")
    K = logits.shape[1]
    if len(target) and (target.min() < 0 or target.max() >= K):
        raise ValueError(
            f"{who}: targets must lie in 0..{K - 1} for {K} classes, "
            f"got values from {target.min()} to {target.max()}"
        )
    return logits, target


class MSELoss(Loss):
    """Mean squared error over every element: ``L = mean((ŷ − y)²)``, ``dL/dŷ = 2(ŷ − y)/size``."""

    def forward(self, prediction: np.ndarray, target: np.ndarray) -> float:
        prediction, target = np.asarray(prediction), np.asarray(target)
        if prediction.shape != target.shape:
            raise ValueError(
                f"MSELoss: prediction shape {prediction.shape} and target shape "
                f"{target.shape} differ"
            )
        diff = prediction - target
        self._cache = diff
        return float(np.mean(diff * diff))

    def backward(self) -> np.ndarray:
        diff = self._saved()
        return 2 * diff / diff.size


class SoftmaxMSELoss(Loss):
    r"""Mean squared error between class probabilities and one-hot targets: the loss the
    backpropagation series trains with first, before it turns to cross-entropy.

    With ``p = softmax(z)`` and ``y = onehot(t)``, over N samples and K classes:

    ``L = 1/(N·K) · Σ_n Σ_k (p[n,k] − y[n,k])²``,
    ``dL/dp = 2 (p − y) / (N·K)``,
    ``dL/dz = p ⊙ (dL/dp − Σ_k dL/dp_k · p_k)`` (the softmax's Jacobian applied to it).

    It is :class:`~convlens.nn.Softmax` followed by :class:`MSELoss`, forward and backward,
    so the model keeps ending in logits (accuracy and the explainer see the same model for
    either loss). For two classes the softmax *is* the series' sigmoid:
    ``p[1] = 1 / (1 + e^−(z₁ − z₀)) = σ(z₁ − z₀)`` and ``p[0] = 1 − p[1]``, so
    ``L = 1/N · Σ_n (σ(z₁ − z₀) − t_n)²`` — one sigmoid output trained towards 0 for the
    first class and 1 for the second. The series writes ``E = Σ ½ (y − ŷ)²``; the mean
    differs from it by the constant factor ``2/(N·K)``, a rescaled learning rate.

    ``forward(logits (N, K), target int (N,)) -> float``; ``backward() -> (N, K)``.
    """

    def __init__(self) -> None:
        self.softmax, self.mse = Softmax(), MSELoss()

    def forward(self, prediction: np.ndarray, target: np.ndarray) -> float:
        logits, target = class_targets(self, prediction, target)
        p = self.softmax.forward(logits)  # (N, K)
        onehot = np.zeros_like(p)
        onehot[np.arange(len(target)), target] = 1
        self._cache = p.shape  # the softmax and the MSE keep the rest
        return self.mse.forward(p, onehot)

    def backward(self) -> np.ndarray:
        self._saved()  # a clear error before any forward
        return self.softmax.backward(self.mse.backward())
