"""Losses: a scalar from predictions and targets, and its gradient for backward."""

from __future__ import annotations

import numpy as np

from .activation import log_softmax


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
        logits, target = np.asarray(prediction), np.asarray(target)
        if logits.ndim != 2 or target.shape != (len(logits),):
            raise ValueError(
                f"CrossEntropyLoss: expected logits (N, K) and integer targets (N,), "
                f"got shapes {logits.shape} and {target.shape}"
            )
        if not np.issubdtype(target.dtype, np.integer):
            raise ValueError(f"CrossEntropyLoss: targets must be class indices, got {target.dtype}")
        K = logits.shape[1]
        if len(target) and (target.min() < 0 or target.max() >= K):
            raise ValueError(
                f"CrossEntropyLoss: targets must lie in 0..{K - 1} for {K} classes, "
                f"got values from {target.min()} to {target.max()}"
            )
        log_p = log_softmax(logits)  # (N, K)
        rows = np.arange(len(target))
        self._cache = (log_p, target)
        return float(-log_p[rows, target].mean())

    def backward(self) -> np.ndarray:
        log_p, target = self._saved()
        grad = np.exp(log_p)  # p
        grad[np.arange(len(target)), target] -= 1  # p − y
        return grad / len(target)


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
