"""Fully connected layers: Flatten, Dense, Dropout."""

from __future__ import annotations

from functools import partial
from math import prod
from typing import Any

import numpy as np

from . import threads
from .checks import flag, fraction, integer
from .layer import Layer, default_rng, init_uniform

#: The whole-batch weight gradient is computed in blocks of columns of at least this many
#: weights, which the threads take as they come.
BLOCK_VALUES = 2**17


class Flatten(Layer):
    """``(N, C, H, W) → (N, C·H·W)`` in C order (channel, then row, then column).

    Backward reshapes δ back to the input's shape: flattening moves no numbers.
    """

    operation = "flatten"

    def explain(self, x: np.ndarray, index: tuple[int, ...]) -> dict[str, Any]:
        """Output ``y[k]`` is the input value at ``source = unravel(k)`` (channel, row, column)."""
        source = [int(v) for v in np.unravel_index(int(index[0]), x.shape)]
        return {
            "operation": self.operation,
            "index": [int(index[0])],
            "source": source,
            "value": float(x[tuple(source)]),
        }

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._cache = x.shape
        return x.reshape(len(x), prod(x.shape[1:]))  # (N, -1) is ambiguous for N = 0

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x_shape = self._saved()
        self._check_grad_shape(dy, (x_shape[0], prod(x_shape[1:])))
        return dy.reshape(x_shape)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (prod(input_shape),)


class Dense(Layer):
    """Fully connected layer ``y = x Wᵀ + b``.

    Backward: ``dL/dW = δᵀ x``, ``dL/db = Σ_n δ_n``, ``dL/dx = δ W``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    rng : np.random.Generator, optional
        Initial weights ``U(−1/√in, +1/√in)``, as in PyTorch.

    Attributes
    ----------
    weight : Parameter ``(out_features, in_features)``
    bias : Parameter ``(out_features,)`` or None
    """

    param_names = ("weight", "bias")
    operation = "dense"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.in_features = integer(in_features, "Dense in_features", minimum=1)
        self.out_features = integer(out_features, "Dense out_features", minimum=1)
        bias = flag(bias, "Dense bias")
        rng = default_rng() if rng is None else rng
        shape = (self.out_features, self.in_features)
        self.weight = init_uniform(shape, self.in_features, rng, "weight", repr(self))
        self.bias = (
            init_uniform(shape[:1], self.in_features, rng, "bias", repr(self)) if bias else None
        )

    def config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
        }

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self._check_features(tuple(input_shape))
        return (self.out_features,)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2:
            raise ValueError(
                f"{self!r}: expected input (N, {self.in_features}), got shape {x.shape}; "
                "put a Flatten() before a Dense layer that follows a convolution"
            )
        self._check_features(x.shape[1:])
        # yᵀ = W xᵀ: (out, in) @ (in, N). The same products as x @ Wᵀ, which OpenBLAS runs
        # slower for a thin batch: 0.45-0.58 against 0.31 ms for 16 × 3872 → 128.
        y = (self.weight.data @ x.T).T  # (N, out)
        if self.bias is not None:
            y += self.bias.data
        self._cache = (x, y.shape)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        self.backward_parameters(dy)
        return self.input_gradient(dy)

    def input_gradient(self, dy: np.ndarray) -> np.ndarray:
        _, y_shape = self._saved()
        self._check_grad_shape(dy, y_shape)
        # δ W: (N, out) @ (out, in), in row order, which the layer below reads fastest
        # (Wᵀ δᵀ transposed, as forward does, left a column-order array: the MNIST net's
        # ReLU backward then took 66 µs instead of 26 at 16 samples)
        return dy @ self.weight.data

    #: Set by :class:`Sequential` while the pieces of a batch split over threads run back:
    #: the piece's ``(x, dy)`` is kept instead of its weight gradient being computed, and
    #: :meth:`whole_batch_grads` computes the whole batch's at once, its rows shared out
    #: over the threads.
    defer_parameter_grads = False

    def backward_parameters(self, dy: np.ndarray) -> None:
        x, y_shape = self._saved()
        self._check_grad_shape(dy, y_shape)
        if self.defer_parameter_grads:
            self._deferred = (x, dy)
            return
        self._add_parameter_grads(x, dy, [slice(0, self.out_features)])

    @staticmethod
    def deferred_deltas(pieces: list[Dense]) -> np.ndarray:
        """The whole batch's δ, joined from ``pieces`` (a layer and its replicas, in batch
        order, each holding its deferred ``(x, dy)``)."""
        return np.concatenate([piece._deferred[1] for piece in pieces])

    def whole_batch_grads(
        self,
        pieces: list[Dense],
        columns: slice,
        dy: np.ndarray,
        grad: np.ndarray,
        fresh: bool,
        bias: bool,
    ) -> None:
        """Columns ``columns`` of dL/dW, into ``grad`` (overwritten if ``fresh``, else added
        to), and dL/db if ``bias``, for a batch that ran as ``pieces`` (see
        :meth:`deferred_deltas`; ``dy`` is their joined δ): one product over the whole
        batch, ``δᵀ x[:, columns]``. Per piece, each thin product (K = the piece's samples)
        would write the whole ``(out, in)`` matrix, and adding the pieces' matrices would
        cost as much again: for the MNIST net's 3872 × 128 layer, about 0.5 ms of a 6 ms
        step. Only these columns of the pieces' x are joined, so blocks of columns computed
        on different threads copy x once between them."""
        x = np.concatenate([piece._deferred[0][:, columns] for piece in pieces])
        _product(dy.T, x, grad[:, columns], fresh)
        if bias and self.bias is not None:
            self.bias.accumulate(dy.sum(axis=0))

    def _add_parameter_grads(self, x: np.ndarray, dy: np.ndarray, rows: list[slice]) -> None:
        """``dW += δᵀ x`` (out, N) @ (N, in), each slice of rows of W on its own thread,
        written straight into the gradient when it is still zero; ``db += Σ_n δ``."""
        grad, fresh = self.weight.gradient_target()
        products = [partial(_product, dy[:, r].T, x, grad[r], fresh) for r in rows]
        threads.run_side_by_side(products)
        if self.bias is not None:
            self.bias.accumulate(dy.sum(axis=0))

    def explain(self, x: np.ndarray, index: tuple[int, ...]) -> dict[str, Any]:
        """Output ``y[o] = Σ_k W[o, k] x[k] + b[o]``: inputs, weights, products, bias."""
        o = int(index[0])
        products = self.weight.data[o] * x
        bias = 0.0 if self.bias is None else float(self.bias.data[o])
        return {
            "operation": self.operation,
            "index": [o],
            "inputs": x.tolist(),
            "weights": self.weight.data[o].tolist(),
            "products": products.tolist(),
            "bias": bias,
            "value": float(products.sum()) + bias,
        }

    def explain_gradient(
        self, x: np.ndarray, dy: np.ndarray, index: tuple[int, ...]
    ) -> dict[str, Any]:
        """``dL/dx[k] = Σ_o δ[o] W[o, k]``: the deltas, the weights of input k, the products."""
        k = int(index[0])
        products = dy * self.weight.data[:, k]
        return {
            "operation": self.operation,
            "index": [k],
            "deltas": dy.tolist(),
            "weights": self.weight.data[:, k].tolist(),
            "products": products.tolist(),
            "value": float(products.sum()),
        }

    def explain_parameter_gradient(
        self, x: np.ndarray, dy: np.ndarray, parameter: str, index: tuple[int, ...]
    ) -> dict[str, Any]:
        """For one sample, ``dL/dW[i, j] = x[j] · δ[i]`` and ``dL/db[i] = δ[i]``."""
        i = int(index[0])
        found = {"operation": self.operation, "parameter": parameter, "index": list(index)}
        if parameter == "bias":
            return {**found, "delta": float(dy[i]), "value": float(dy[i])}
        j = int(index[1])
        return {
            **found,
            "input": float(x[j]),
            "delta": float(dy[i]),
            "value": float(np.float64(x[j]) * np.float64(dy[i])),
        }

    def _check_features(self, shape: tuple[int, ...]) -> None:
        if shape != (self.in_features,):
            raise ValueError(
                f"{self!r}: expected {self.in_features} input features, got shape {shape}"
            )

    def __repr__(self) -> str:
        return f"Dense({self.in_features}→{self.out_features})"


def _product(a: np.ndarray, b: np.ndarray, out: np.ndarray, overwrite: bool) -> None:
    """``out = a @ b`` if ``overwrite``, else ``out += a @ b``.

    A batch of one makes the product an outer product (inner size 1), which NumPy's matmul
    does not hand to BLAS: for the MNIST net's 128 × 3872 weights it took 0.96 ms against
    0.10 ms as ``np.multiply.outer``, with the same numbers (one product per element)."""
    if a.shape[1] == 1:
        product = partial(np.multiply.outer, a[:, 0], b[0])
    else:
        product = partial(np.matmul, a, b)
    if overwrite:
        product(out=out)
    else:
        out += product()


class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability p and scale the rest
    by ``1/(1 − p)``; in evaluation, the identity. Backward applies the same mask to δ.

    Parameters
    ----------
    p : float, default 0.5
        Drop probability, ``0 ≤ p ≤ 1``.
    rng : np.random.Generator, optional
        Source of the masks (default: the generator :func:`convlens.nn.manual_seed` sets).
    """

    operation = "dropout"

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None) -> None:
        self.p = fraction(p, "Dropout p")
        self.rng = rng

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def splits_batch(self) -> bool:
        return not self.training or self.p == 0.0  # one random stream, drawn in batch order

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            scale = np.ones((), x.dtype)  # broadcasts: identity
        elif self.p == 1.0:
            scale = np.zeros(x.shape, x.dtype)
        else:
            rng = default_rng() if self.rng is None else self.rng
            keep = rng.random(x.shape) >= self.p
            scale = keep.astype(x.dtype) / x.dtype.type(1.0 - self.p)
        self._cache = (scale, x.shape)
        return x * scale

    def backward(self, dy: np.ndarray) -> np.ndarray:
        scale, x_shape = self._saved()
        self._check_grad_shape(dy, x_shape)
        return dy * scale
