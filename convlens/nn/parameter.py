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
        dL/d(data), same shape and dtype. ``backward`` passes *add* into it;
        ``zero_grad`` clears it.
    """

    def __init__(self, data: np.ndarray, name: str = "") -> None:
        self.name = name
        self._data = np.asarray(data)
        self.grad = np.zeros_like(self._data)

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        value = np.asarray(value)
        if value.shape != self.grad.shape or value.dtype != self.grad.dtype:
            self.grad = np.zeros_like(value)
        self._data = value

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def size(self) -> int:
        return self._data.size

    def zero_grad(self) -> None:
        """Set the accumulated gradient to zero."""
        self.grad[...] = 0

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.shape}, dtype={self.data.dtype})"
