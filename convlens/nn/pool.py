r"""Pooling: the maximum or the mean of each window, channel by channel.

With ``xp`` the input padded by ((top, bottom), (left, right)) and stride s:

Max-pool:  ``y[n,c,i,j] = max_{a,b} xp[n, c, i·sh + a, j·sw + b]`` with ``xp`` padded by −∞.
Its gradient flows only to the element that won: backward routes ``δ[n,c,i,j]`` to the
argmax of window (i, j) — the *mask* — and where windows overlap the contributions are
summed (``+=``, never ``=``). Ties go to the first maximum in row-major order, as in PyTorch.

Avg-pool:  ``y[n,c,i,j] = 1/(kh·kw) · Σ_{a,b} xp[n, c, i·sh + a, j·sw + b]`` with zero padding
counted in the mean; backward spreads ``δ / (kh·kw)`` evenly over the window.

Padding is written as for :class:`~convlens.nn.Conv2D`: an int, ``(ph, pw)``,
``((top, bottom), (left, right))`` (a negative side crops), ``"valid"``, ``"same"`` or
``"full"``. The *anchor* (ay, ax) is the window element that sits on the input pixel an
output belongs to; ``"same"`` splits the padding by it, ``top = ay, bottom = kh−1−ay``, so
output (i, j) sits on input (i·s, j·s). Any other padding is the same whatever the anchor.

Both loop over the kh·kw window *elements* (a handful), never over pixels: each step is one
strided view of the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from itertools import product
from typing import Any

import numpy as np

from .checks import brief
from .layer import Layer
from .window import (
    PaddingSpec,
    Pair,
    anchor_in,
    conv_output_size,
    default_anchor,
    gather,
    pad_or_crop,
    pair,
    resolve_padding,
    show,
    window_slice,
    written_padding,
)


class _Pool2D(Layer):
    """What both pools share: window size, stride, padding split by the anchor, shape checks."""

    pad_value = 0.0

    def __init__(
        self,
        kernel_size: int | Pair,
        stride: int | Pair | None = None,
        padding: PaddingSpec = 0,
        anchor: Pair | None = None,
    ) -> None:
        name = type(self).__name__  # MaxPool2D or AvgPool2D, in messages
        self.kernel_size = pair(kernel_size, f"{name} kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, f"{name} stride")
        self.anchor = anchor_in(self.kernel_size, anchor, f"{name} anchor")
        self.padding2d = resolve_padding(
            padding, self.kernel_size, (1, 1), self.anchor, name=f"{name} padding"
        )
        self.padding = written_padding(padding, self.padding2d)

    def config(self) -> dict[str, Any]:
        padding = self.padding
        if not isinstance(padding, str):  # JSON: lists of plain ints
            padding = [list(side) if isinstance(side, tuple) else side for side in padding]
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": padding,
            "anchor": list(self.anchor),
        }

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise ValueError(f"{self!r}: expected input (C, H, W), got shape {tuple(input_shape)}")
        C, H, W = input_shape
        return (C, *self._out_size((H, W)))

    def _out_size(self, size: Pair) -> Pair:
        return conv_output_size(size, self.kernel_size, self.stride, (1, 1), self.padding2d, self)

    def _padded(self, x: np.ndarray) -> tuple[np.ndarray, Pair]:
        if x.ndim != 4:
            raise ValueError(f"{self!r}: expected input (N, C, H, W), got shape {x.shape}")
        out = self._out_size(x.shape[2:])  # checks the sizes before any padding is made
        return pad_or_crop(x, self.padding2d, self.pad_value), out

    def _windows(self, out: Pair) -> tuple[tuple[int, tuple[slice, ...]], ...]:
        """``(k, slice)`` for each window element k = a·kw + b, in row-major order."""
        return _window_slices(self.kernel_size, self.stride, tuple(out))

    def __repr__(self) -> str:
        parts = [f"kernel={show(self.kernel_size)}"]
        if self.stride != self.kernel_size:
            parts.append(f"stride={show(self.stride)}")
        if self.padding not in ((0, 0), "valid"):
            shown = show(self.padding) if _is_pair(self.padding) else repr(self.padding)
            parts.append(f"padding={shown}")
        if self.anchor != default_anchor(self.kernel_size):
            parts.append(f"anchor={self.anchor}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _origin(self, i: int, j: int) -> Pair:
        """The input position of window (i, j)'s element (0, 0): ``(i·sh − top, j·sw − left)``."""
        (top, _), (left, _) = self.padding2d
        return i * self.stride[0] - top, j * self.stride[1] - left

    def _window(self, x: np.ndarray, index: tuple[int, ...], fill: float):
        """Channel ``c``'s window for output (i, j): the explanation's common fields (positions,
        inside mask), the window's values (``fill`` outside) and the inside mask."""
        c, i, j = (int(v) for v in index)
        (kh, kw), (row, col) = self.kernel_size, self._origin(i, j)
        rows = [row + a for a in range(kh)]
        cols = [col + b for b in range(kw)]
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
        """dL/dx from dL/dxp: padded rows and columns dropped, cropped ones given back as 0."""
        (top, bottom), (left, right) = self.padding2d
        return pad_or_crop(dxp, ((-top, -bottom), (-left, -right)))


@lru_cache(maxsize=256)
def _window_slices(kernel: Pair, stride: Pair, out: Pair) -> tuple[tuple[int, tuple], ...]:
    """:meth:`_Pool2D._windows`, remembered per size (a pool meets the same sizes every call)."""
    taps = enumerate(product(*map(range, kernel)))
    return tuple((k, window_slice(a, b, stride, (1, 1), out)) for k, (a, b) in taps)


def _is_pair(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, int) for v in value)


class MaxPool2D(_Pool2D):
    """Max pooling; backward through the argmax mask.

    ``y[n,c,i,j] = max_{a,b} xp[n, c, i·sh + a, j·sw + b]``, ``xp`` padded with −∞.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size`` (non-overlapping windows).
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid", "same" or "full"
        Padded with −∞, so padding never wins; a negative side crops. A window holding only
        padding would output −∞: such settings are refused (at construction where the
        first window is, else when the input size shows it).
    anchor : (int, int), optional
        The window element that sits on the output's own input pixel; default the centre
        ``((kh−1)//2, (kw−1)//2)``. Only ``"same"`` padding depends on it.

    Attributes
    ----------
    argmax : np.ndarray or None
        After ``forward``: ``(N, C, H', W')``, the row-major index ``a·kw + b`` of each
        window's winner — the mask that backward routes gradients through. Forward keeps
        only the input and the maxima (``np.maximum`` over the kh·kw strided views); the
        mask is found from them when backward or a view needs it.

    Notes
    -----
    The backpropagation series' max-pool takes a centre element (ca, cb) and the
    convolution / cross-correlation flag of its convolution. With the flag at
    cross-correlation its window is ``[i·s − ca, i·s − ca + kh)``: ``anchor=(ca, cb)``.
    With the flag at convolution the window is mirrored about the centre element,
    ``[i·s + ca − kh + 1, i·s + ca]``: ``anchor=(kh−1−ca, kw−1−cb)``. With its padding P the
    layout is ``padding=((P + ay, P − ay), (P + ax, P − ax))`` for that anchor (negative
    sides crop). The maxima are the same; only a tie may pick a different winner, since
    convlens takes the first maximum in row-major order (as PyTorch does) while the
    series' loop, in convolution mode, walks the window backwards.
    """

    pad_value = -np.inf
    operation = "max-pool"

    def __init__(
        self,
        kernel_size: int | Pair,
        stride: int | Pair | None = None,
        padding: PaddingSpec = 0,
        anchor: Pair | None = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, anchor)
        sides = zip(self.padding2d, self.kernel_size, ("top", "left"), strict=True)
        for (before, _), k, side in sides:
            if before >= k:
                raise ValueError(
                    f"MaxPool2D padding {brief(padding)}: {before} on the {side} >= kernel {k}, "
                    f"so the first window would hold only −∞ padding and output −∞; pad the "
                    f"{side} by less than {k}"
                )

    def _out_size(self, size: Pair) -> Pair:
        """The output size, after checking that the last window of each axis holds input:
        it starts at ``(n−1)·s``, the input at ``top`` and runs for the cropped size."""
        out = super()._out_size(size)
        for axis, (lines, side) in enumerate((("rows", "bottom"), ("columns", "right"))):
            before, after = self.padding2d[axis]
            kept = size[axis] - max(-before, 0) - max(-after, 0)  # input left after cropping
            if (out[axis] - 1) * self.stride[axis] >= max(before, 0) + kept:
                raise ValueError(
                    f"{self!r}: with input {size[0]}x{size[1]} the last window of {lines} "
                    f"would hold only −∞ padding and output −∞; pad the {side} by less"
                )
        return out

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
        a, b = np.divmod(self.argmax[0, c], self.kernel_size[1])  # (H', W'): each winner
        row, col = self._origin(*np.indices(a.shape))  # (H', W') each: window origins
        chose = (row + a == h) & (col + b == w)
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
        taps = [xp[where] for _, where in self._windows(out)]  # kh·kw views (N, C, H', W')
        y = np.maximum(taps[0], taps[1]) if len(taps) > 1 else taps[0].copy()
        for tap in taps[2:]:
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
        for index, where in reversed(self._windows(y.shape[2:])):
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
        windows = self._windows(out)
        taps = (xp[where] for _, where in windows)
        for (_, where), won in zip(windows, first_maxima(taps, y), strict=True):
            if overlapping:
                dxp[where] += dy * won  # a pixel may win several windows: += adds them up
            else:
                np.multiply(dy, won, out=dxp[where])
        return self._unpad(dxp)


def first_maxima(taps: Iterator[np.ndarray], maxima: np.ndarray) -> Iterator[np.ndarray]:
    """For each window element in row-major order (``taps``, each ``maxima``'s shape), the
    mask of the windows whose *first* maximum it is: ties go to the earliest element, as in
    PyTorch, and a window holding NaN has none. The mask yielded is one buffer, rewritten
    for the next element: use it before asking for the next."""
    unclaimed = np.ones(maxima.shape, bool)  # windows whose maximum is not yet found
    won = np.empty(maxima.shape, bool)
    for tap in taps:
        np.equal(tap, maxima, out=won)
        won &= unclaimed
        unclaimed ^= won  # (won ⊆ unclaimed, so this clears the windows just won)
        yield won


class AvgPool2D(_Pool2D):
    """Average pooling; zero padding counts in the mean (PyTorch's default).

    ``y[n,c,i,j] = 1/(kh·kw) · Σ_{a,b} xp[n, c, i·sh + a, j·sw + b]``, ``xp`` zero-padded:
    every window divides by its full size kh·kw, the padding's zeros included (so an edge
    window of ``"same"`` padding averages its input values with zeros). Cropped rows and
    columns are not in the input at all.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid", "same" or "full"
        Zero padding; a negative side crops. A window of only padding averages to 0.
    anchor : (int, int), optional
        As for :class:`MaxPool2D`: only ``"same"`` padding depends on it.
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
