"""Losses: a scalar from predictions and targets, and its gradient for backward.

Every loss here is a mean of terms that each depend on one sample's row alone, so a batch
may be cut into pieces (:meth:`convlens.nn.Sequential.forward_backward`): each piece
finds its rows' terms and gradient on its own (:meth:`Loss.keep`, :meth:`Loss.gradient`
with the whole batch's size), and the loss over the pieces, joined in batch order
(:meth:`Loss.joined`), is the same number as a forward of the whole batch gives.
"""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np

from .activation import log_softmax, softmax, softmax_backward

#: What a loss keeps of a forward for its backward: arrays with one row per sample.
Kept = tuple[np.ndarray, ...]


class Loss:
    """A loss keeps what ``backward()`` needs from its last ``forward``.

    A loss defines four steps, which ``forward`` and ``backward`` run in turn:
    :meth:`checked_target`, :meth:`keep` (what backward needs, row by row), :meth:`value`
    and :meth:`gradient`.
    """

    _cache: Kept | None = None

    def __call__(self, prediction: np.ndarray, target: np.ndarray) -> float:
        return self.forward(prediction, target)

    def forward(self, prediction: np.ndarray, target: np.ndarray) -> float:
        """The loss of ``prediction`` against ``target``; keeps what backward needs."""
        prediction = np.asarray(prediction)
        target = self.checked_target(prediction.shape, target)
        self._cache = self.keep(prediction, target)
        return self.value(self._cache)

    def backward(self) -> np.ndarray:
        """dL/dprediction for the last forward."""
        return self.gradient(self._saved())

    def joined(self, pieces: list[Kept]) -> float:
        """The loss of a whole batch from what :meth:`keep` returned for its pieces, in
        batch order; kept for ``backward`` as a forward of the whole batch keeps it."""
        if len(pieces) == 1:
            self._cache = pieces[0]
        else:  # each kept array in batch order
            self._cache = tuple(np.concatenate(parts) for parts in zip(*pieces, strict=True))
        return self.value(self._cache)

    def splits_batch(self) -> bool:
        """Whether pieces of a batch may find their rows of the gradient on their own: a
        loss that defines :meth:`keep` (and so :meth:`value` and :meth:`gradient`). One
        that only defines ``forward`` and ``backward`` sees the whole batch."""
        return type(self).keep is not Loss.keep

    def checked_target(self, prediction_shape: tuple[int, ...], target: Any) -> np.ndarray:
        """``target`` as an array fit for predictions of this shape, or a ValueError
        naming both shapes."""
        raise NotImplementedError

    def keep(self, prediction: np.ndarray, target: np.ndarray) -> Kept:
        """What backward needs of these samples (a batch or a piece of one), row by row.
        Pieces call it (and :meth:`gradient`) on several threads at once, so it changes
        nothing of the loss itself."""
        raise NotImplementedError

    def value(self, kept: Kept) -> float:
        """The loss over every sample in ``kept``."""
        raise NotImplementedError

    def gradient(self, kept: Kept, batch_size: int | None = None) -> np.ndarray:
        """dL/dprediction for the samples in ``kept``, a piece of a batch of ``batch_size``
        samples (default: ``kept`` holds the whole batch)."""
        raise NotImplementedError

    def _saved(self) -> Kept:
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

    def checked_target(self, prediction_shape: tuple[int, ...], target: Any) -> np.ndarray:
        return class_targets(self, prediction_shape, target)

    def keep(self, prediction: np.ndarray, target: np.ndarray) -> Kept:
        return log_softmax(prediction), target  # log p (N, K), t (N,)

    def value(self, kept: Kept) -> float:
        log_p, target = kept
        return float(-log_p[np.arange(len(target)), target].mean())

    def gradient(self, kept: Kept, batch_size: int | None = None) -> np.ndarray:
        log_p, target = kept
        grad = np.exp(log_p)  # p
        grad[np.arange(len(target)), target] -= 1  # p − y
        return grad / (len(target) if batch_size is None else batch_size)


def class_targets(loss: Loss, logits_shape: tuple[int, ...], target: Any) -> np.ndarray:
    """Integer ``target (N,)`` in ``0..K−1`` for logits of shape ``(N, K)``, as an array, or
    a ValueError naming the loss."""
    target = np.asarray(target)
    who = type(loss).__name__
    if len(logits_shape) != 2 or target.shape != logits_shape[:1]:
        raise ValueError(
            f"{who}: expected logits (N, K) and integer targets (N,), "
            f"got shapes {tuple(logits_shape)} and {target.shape}"
        )
    if not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"{who}: targets must be class indices, got {target.dtype}")
    K = logits_shape[1]
    if len(target) and (target.min() < 0 or target.max() >= K):
        raise ValueError(
            f"{who}: targets must lie in 0..{K - 1} for {K} classes, "
            f"got values from {target.min()} to {target.max()}"
        )
    return target


class MSELoss(Loss):
    """Mean squared error over every element: ``L = mean((ŷ − y)²)``, ``dL/dŷ = 2(ŷ − y)/size``."""

    def checked_target(self, prediction_shape: tuple[int, ...], target: Any) -> np.ndarray:
        target = np.asarray(target)
        if tuple(prediction_shape) != target.shape:
            raise ValueError(
                f"MSELoss: prediction shape {tuple(prediction_shape)} and target shape "
                f"{target.shape} differ"
            )
        return target

    def keep(self, prediction: np.ndarray, target: np.ndarray) -> Kept:
        return (prediction - target,)

    def value(self, kept: Kept) -> float:
        (diff,) = kept
        return float(np.mean(diff * diff))

    def gradient(self, kept: Kept, batch_size: int | None = None) -> np.ndarray:
        (diff,) = kept
        size = diff.size if batch_size is None else batch_size * prod(diff.shape[1:])
        return 2 * diff / size


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
        self.mse = MSELoss()

    def checked_target(self, prediction_shape: tuple[int, ...], target: Any) -> np.ndarray:
        return class_targets(self, prediction_shape, target)

    def keep(self, prediction: np.ndarray, target: np.ndarray) -> Kept:
        p = softmax(prediction)  # (N, K)
        onehot = np.zeros_like(p)
        onehot[np.arange(len(target)), target] = 1
        return p, *self.mse.keep(p, onehot)

    def value(self, kept: Kept) -> float:
        return self.mse.value(kept[1:])

    def gradient(self, kept: Kept, batch_size: int | None = None) -> np.ndarray:
        return softmax_backward(kept[0], self.mse.gradient(kept[1:], batch_size))  # p, dL/dp
