"""Trainable tensors: a value and the gradient accumulated into it."""

from __future__ import annotations

import numpy as np


class Parameter:
    """A trainable array with its gradient.

    Parameters
    ----------
    data : np.ndarray
        The value. Its dtype decides the dtype of the layer's computation.
    name : str, optional
        A readable name such as ``"weight"`` or ``"bias"``.

    Attributes
    ----------
    data : np.ndarray
        The value. Assigning an array of another shape or dtype resets ``grad``
        to zeros of the new shape and dtype, so float64 weights get float64 gradients.
    grad : np.ndarray
        dL/d(data), same shape and dtype. ``backward`` passes *add* into it (through
        :meth:`accumulate`); ``zero_grad`` clears it.

    Notes
    -----
    ``zero_grad`` writes nothing: it marks the gradient as zero, and the first
    :meth:`accumulate` after it *assigns* instead of adding, so a training step neither
    clears the buffer nor reads it back. Reading ``grad`` while it is marked clears the
    buffer then, so what anyone reads is always the true value.
    """

    def __init__(self, data: np.ndarray, name: str = "") -> None:
        self.name = name
        self._data = np.asarray(data)
        self.grad = np.zeros_like(self._data)

    @property
    def grad(self) -> np.ndarray:
        if self._grad_is_zero:
            self._grad[...] = 0
            self._grad_is_zero = False
        return self._grad

    @grad.setter
    def grad(self, value: np.ndarray) -> None:
        self._grad, self._grad_is_zero = value, False

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        value = np.asarray(value)
        if value.shape != self._grad.shape or value.dtype != self._grad.dtype:
            self.grad = np.zeros_like(value)
        self._data = value

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def size(self) -> int:
        return self._data.size

    def zero_grad(self) -> None:
        """Set the accumulated gradient to zero (lazily: see the notes above)."""
        self._grad_is_zero = True

    def accumulate(self, value: np.ndarray) -> None:
        """``grad += value``; just after ``zero_grad``, ``grad = value`` (one pass fewer)."""
        target, fresh = self.gradient_target()
        if fresh:
            np.copyto(target, value)
        else:
            target += value

    def gradient_target(self) -> tuple[np.ndarray, bool]:
        """The gradient's buffer for a caller that accumulates into it itself, and whether
        it is to be *overwritten* (it is marked zero, with stale values in it) rather than
        added to. From then on the gradient counts as written."""
        fresh, self._grad_is_zero = self._grad_is_zero, False
        return self._grad, fresh

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.shape}, dtype={self.data.dtype})"
