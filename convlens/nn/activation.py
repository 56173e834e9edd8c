"""Element-wise non-linearities and softmax. Each backward is the local derivative times δ."""

from __future__ import annotations

from typing import Any

import numpy as np

from .layer import Layer


class _Elementwise(Layer):
    """Layers that apply one function to every value independently."""

    def explain(self, x: np.ndarray, index: tuple[int, ...]) -> dict[str, Any]:
        """``y[index] = f(x[index])``: the input and the output."""
        value = x[tuple(index)]
        output = self.forward(np.array([value]))[0]
        return {
            "operation": self.operation,
            "index": list(index),
            "input": float(value),
            "value": float(output),
        }

    def explain_gradient(
        self, x: np.ndarray, dy: np.ndarray, index: tuple[int, ...]
    ) -> dict[str, Any]:
        """``dL/dx[index] = δ[index] · f'(x[index])``, f' found by this layer's backward."""
        value = x[tuple(index)]
        self.forward(np.array([value]))
        derivative = self.backward(np.ones(1, np.asarray(value).dtype))[0]
        delta = dy[tuple(index)]
        return {
            "operation": self.operation,
            "index": list(index),
            "input": float(value),
            "delta": float(delta),
            "local_derivative": float(derivative),
            "value": float(delta * derivative),
        }


class ReLU(_Elementwise):
    """``y = max(0, x)``;  ``dL/dx = δ · [x > 0]`` (the gradient at exactly 0 is 0).

    In eval mode backward reads the ``y`` that forward returned (``y > 0`` is the mask), so
    change that array in place and a later backward changes with it, as PyTorch's autograd
    would refuse; in training mode the mask is kept on its own.
    """

    operation = "relu"

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = np.maximum(x, 0)  # (np.where with a scalar 0 is ~10x slower)
        # Training keeps the mask, which backward reads fastest (1 byte a value). In eval
        # mode (inference, the explainer) a backward pass is the exception: keep y, which
        # the next layer holds anyway, and find the mask y > 0 (= x > 0) only if asked.
        self._cache = x > 0 if self.training else y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        saved = self._saved()
        self._check_grad_shape(dy, saved.shape)
        return dy * (saved if saved.dtype == bool else saved > 0)


class Sigmoid(_Elementwise):
    """``y = 1 / (1 + e^(−x))``;  ``dL/dx = δ · y · (1 − y)``.

    Evaluated as ``1/(1+e^(−|x|))`` or ``e^(−|x|)/(1+e^(−|x|))`` by sign, so no exponent
    overflows and tiny outputs keep full relative precision.
    """

    operation = "sigmoid"

    def forward(self, x: np.ndarray) -> np.ndarray:
        e = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1, e) / (1 + e)
        self._cache = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        y = self._saved()
        self._check_grad_shape(dy, y.shape)
        return dy * y * (1 - y)


class Tanh(_Elementwise):
    """``y = tanh(x)``;  ``dL/dx = δ · (1 − y²)``."""

    operation = "tanh"

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = np.tanh(x)
        self._cache = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        y = self._saved()
        self._check_grad_shape(dy, y.shape)
        return dy * (1 - y * y)


class Softmax(Layer):
    """Softmax over the last axis: ``y_k = e^(x_k − m) / Σ_j e^(x_j − m)``, ``m = max_j x_j``.

    Subtracting the maximum changes nothing mathematically and keeps ``e^(·) ≤ 1``.
    Backward (the Jacobian ``diag(y) − y yᵀ`` applied to δ):
    ``dL/dx = y ⊙ (δ − Σ_k δ_k y_k)``.
    """

    operation = "softmax"

    def explain(self, x: np.ndarray, index: tuple[int, ...]) -> dict[str, Any]:
        """``y[k] = e^(x_k − m) / Σ_j e^(x_j − m)``: the scores, their exponentials and sum."""
        k = int(index[-1])
        shifted = x - np.max(x)
        exps = np.exp(shifted)
        return {
            "operation": self.operation,
            "index": [k],
            "inputs": x.tolist(),
            "max": float(np.max(x)),
            "exps": exps.tolist(),
            "sum": float(exps.sum()),
            "value": float(exps[k] / exps.sum()),
        }

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = softmax(x)
        self._cache = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        y = self._saved()
        self._check_grad_shape(dy, y.shape)
        return softmax_backward(y, dy)


def softmax(x: np.ndarray) -> np.ndarray:
    """Max-subtracted softmax over the last axis."""
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dL/dx of ``y = softmax(x)`` over the last axis: ``y ⊙ (δ − Σ_k δ_k y_k)``."""
    return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))


def log_softmax(x: np.ndarray) -> np.ndarray:
    """``x − logsumexp(x)`` over the last axis, stable for any magnitude."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
