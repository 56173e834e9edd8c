r"""Pooling: the maximum or the mean of each window, channel by channel.

Max-pool:  ``y[n,c,i,j] = max_{a,b} xp[n, c, i·sh + a, j·sw + b]`` with ``xp`` padded by −∞.
Its gradient flows only to the element that won: backward routes ``δ[n,c,i,j]`` to the
argmax of window (i, j) — the *mask* — and where windows overlap the contributions are
summed (``+=``, never ``=``). Ties go to the first maximum in row-major order, as in PyTorch.

Avg-pool:  ``y[n,c,i,j] = 1/(kh·kw) · Σ_{a,b} xp[n, c, i·sh + a, j·sw + b]`` with zero padding
counted in the mean; backward spreads ``δ / (kh·kw)`` evenly over the window.

Both loop over the kh·kw kernel *elements* (a handful), never over pixels: each step is one
strided view of the whole batch.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np

from .layer import Layer
from .window import Pair, conv_output_size, gather, pad_or_crop, pair, show, window_slice


class _Pool2D(Layer):
    """What both pools share: window size, stride, symmetric padding, shape checks."""

    pad_value = 0.0

    def __init__(
        self, kernel_size: int | Pair, stride: int | Pair | None = None, padding: int | Pair = 0
    ) -> None:
        name = type(self).__name__  # MaxPool2D or AvgPool2D, in messages
        self.kernel_size = pair(kernel_size, f"{name} kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, f"{name} stride")
        self.padding = pair(padding, f"{name} padding", minimum=0)
        for k, p in zip(self.kernel_size, self.padding, strict=True):
            if p > k // 2:
                raise ValueError(
                    f"{name}: padding {self.padding} must be at most half the kernel "
                    f"{self.kernel_size}, or a window could hold only padding"
                )
        (ph, pw) = self.padding
        self.padding2d = ((ph, ph), (pw, pw))

    def config(self) -> dict[str, Any]:
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
        }

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise ValueError(f"{self!r}: expected input (C, H, W), got shape {tuple(input_shape)}")
        C, H, W = input_shape
        return (C, *self._out_size((H, W)))

    def _out_size(self, size: Pair) -> Pair:
        return conv_output_size(
            size, self.kernel_size, self.stride, (1, 1), self.padding2d, repr(self)
        )

    def _padded(self, x: np.ndarray) -> tuple[np.ndarray, Pair]:
        if x.ndim != 4:
            raise ValueError(f"{self!r}: expected input (N, C, H, W), got shape {x.shape}")
        return pad_or_crop(x, self.padding2d, self.pad_value), self._out_size(x.shape[2:])

    def _windows(self, out: Pair):
        """``(k, slice)`` for each kernel element k = a·kw + b, in row-major order."""
        for k, (a, b) in enumerate(product(*map(range, self.kernel_size))):
            yield k, window_slice(a, b, self.stride, (1, 1), out)

    def __repr__(self) -> str:
        parts = [f"kernel={show(self.kernel_size)}"]
        if self.stride != self.kernel_size:
            parts.append(f"stride={show(self.stride)}")
        if self.padding != (0, 0):
            parts.append(f"padding={show(self.padding)}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _window(self, x: np.ndarray, index: tuple[int, ...], fill: float):
        """Channel ``c``'s window for output (i, j): the explanation's common fields (positions,
        inside mask), the window's values (``fill`` outside) and the inside mask."""
        c, i, j = (int(v) for v in index)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        rows = [i * sh + a - ph for a in range(kh)]
        cols = [j * sw + b - pw for b in range(kw)]
        window, inside = gather(x[c : c + 1], rows, cols, fill)
        head = {
            "operation": self.operation,
            "index": [c, i, j],
            "rows": rows,
            "cols": cols,
            "inside": inside.tolist(),
        }
        return head, window[0], inside

    def _unpad(self, dxp: np.ndarray) -> np.ndarray:
        (ph, pw) = self.padding
        return pad_or_crop(dxp, ((-ph, -ph), (-pw, -pw)))


class MaxPool2D(_Pool2D):
    """Max pooling; backward through the argmax mask.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size`` (non-overlapping windows).
    padding : int or (int, int), default 0
        Padded with −∞, so padding never wins; at most half the kernel.

    Attributes
    ----------
    argmax : np.ndarray or None
        After ``forward``: ``(N, C, H', W')``, the row-major index ``a·kw + b`` of each
        window's winner — the mask that backward routes gradients through. Forward keeps
        only the input and the maxima (``np.maximum`` over the kh·kw strided views); the
        mask is found from them when backward or a view needs it.
    """

    pad_value = -np.inf
    operation = "max-pool"

    def explain(self, x: np.ndarray, index: tuple[int, ...]) -> dict[str, Any]:
        """Output ``y[c, i, j]``: the window's values (None for padding) and its winner."""
        head, window, inside = self._window(x, index, -np.inf)
        a, b = divmod(int(np.argmax(window)), self.kernel_size[1])  # first maximum
        return {
            **head,
            "inputs": [
                [float(v) if ok else None for v, ok in zip(row, keep, strict=True)]
                for row, keep in zip(window, inside, strict=True)
            ],  # None (JSON null) marks padding
            "winner": [a, b],
            "value": float(window[a, b]),
        }

    def explain_gradient(
        self, x: np.ndarray, dy: np.ndarray, index: tuple[int, ...]
    ) -> dict[str, Any]:
        """``dL/dx[c, h, w]``: the sum of δ over every window whose maximum sat at (h, w)."""
        c, h, w = (int(v) for v in index)
        self.forward(x[None])
        (_, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        a, b = np.divmod(self.argmax[0, c], kw)  # (H', W'): each window's winner
        i, j = np.indices(a.shape)
        chose = (i * sh + a - ph == h) & (j * sw + b - pw == w)
        windows = [[int(r), int(q)] for r, q in zip(*np.nonzero(chose), strict=True)]
        deltas = [float(dy[c, r, q]) for r, q in windows]
        return {
            "operation": self.operation,
            "index": [c, h, w],
            "windows": windows,
            "deltas": deltas,
            "value": float(sum(deltas)),
        }

    def explain_state(self) -> dict[str, np.ndarray]:
        return {} if self.argmax is None else {"argmax": self.argmax[0]}

    def forward(self, x: np.ndarray) -> np.ndarray:
        xp, out = self._padded(x)
        taps = (xp[where] for _, where in self._windows(out))  # kh·kw views (N, C, H', W')
        y = next(taps).copy()
        for tap in taps:
            np.maximum(y, tap, out=y)  # NaN propagates, as in PyTorch
        self._cache = (xp, y)
        return y

    @property
    def argmax(self) -> np.ndarray | None:
        """The mask of the last forward: each window's first maximum, row-major ``a·kw + b``."""
        if self._cache is None:
            return None
        xp, y = self._cache
        k = self.kernel_size[0] * self.kernel_size[1]
        argmax = np.full(y.shape, k - 1, np.min_scalar_type(k))
        for index, where in reversed(list(self._windows(y.shape[2:]))):
            np.copyto(argmax, index, where=xp[where] == y)  # earlier taps overwrite later ones
        return argmax

    def backward(self, dy: np.ndarray) -> np.ndarray:
        xp, y = self._saved()
        self._check_grad_shape(dy, y.shape)
        out = y.shape[2:]
        overlapping = any(s < k for s, k in zip(self.stride, self.kernel_size, strict=True))
        tiling = self.stride == self.kernel_size and xp.shape[2:] == tuple(
            s * o for s, o in zip(self.stride, out, strict=True)
        )  # every pixel lies in exactly one window, so every dxp value is written below
        dxp = (np.empty if tiling else np.zeros)(xp.shape, dy.dtype)
        unclaimed = np.ones(y.shape, bool)  # windows whose maximum is not yet found
        won = np.empty(y.shape, bool)
        for _, where in self._windows(out):
            np.equal(xp[where], y, out=won)
            won &= unclaimed  # ties: the first maximum in row-major order takes it
            unclaimed ^= won  # (won ⊆ unclaimed, so this clears the windows just won)
            if overlapping:
                dxp[where] += dy * won  # a pixel may win several windows: += adds them up
            else:
                np.multiply(dy, won, out=dxp[where])
        return self._unpad(dxp)


class AvgPool2D(_Pool2D):
    """Average pooling; zero padding counts in the mean (PyTorch's default).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int), default 0
        Zero padding, at most half the kernel.
    """

    operation = "avg-pool"

    def explain(self, x: np.ndarray, index: tuple[int, ...]) -> dict[str, Any]:
        """Output ``y[c, i, j]``: the window's values (padding counts as 0) and their mean."""
        head, window, _ = self._window(x, index, 0.0)
        return {
            **head,
            "inputs": window.tolist(),
            "count": int(window.size),
            "value": float(window.mean()),
        }

    def forward(self, x: np.ndarray) -> np.ndarray:
        xp, out = self._padded(x)
        total = sum(xp[where] for _, where in self._windows(out))  # (N, C, H', W')
        self._cache = (xp.shape, total.shape)
        return total / (self.kernel_size[0] * self.kernel_size[1])

    def backward(self, dy: np.ndarray) -> np.ndarray:
        xp_shape, y_shape = self._saved()
        self._check_grad_shape(dy, y_shape)
        share = dy / (self.kernel_size[0] * self.kernel_size[1])
        dxp = np.zeros(xp_shape, share.dtype)
        for _, where in self._windows(y_shape[2:]):
            dxp[where] += share
        return self._unpad(dxp)
