"""Sliding windows: the bookkeeping that convolution and pooling share.

Sizes are per axis (rows, columns). Padding is always resolved to
``((top, bottom), (left, right))`` before any arithmetic happens.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeAlias

import numpy as np

from .checks import brief, integer, is_integer

Pair: TypeAlias = tuple[int, int]
Padding2D: TypeAlias = tuple[Pair, Pair]
PaddingSpec: TypeAlias = int | tuple | str


def pair(value: Any, name: str, minimum: int | None = 1) -> Pair:
    """``3 -> (3, 3)``; ``(2, 3) -> (2, 3)``; anything else, or a value below ``minimum``
    (``None``: no bound), is a ValueError naming ``name``."""
    items = (value, value) if is_integer(value) else value
    if not (isinstance(items, (tuple, list)) and len(items) == 2 and all(map(is_integer, items))):
        raise ValueError(
            f"{name} must be an int or a pair (rows, columns) of ints, got {brief(value)}"
        )
    out = (int(items[0]), int(items[1]))
    if minimum is not None and min(out) < minimum:
        raise ValueError(f"{name} must be >= {minimum} on both axes, got {brief(value)}")
    return out


def show(size: Pair) -> str:
    """``(3, 2) -> "3x2"``: how sizes appear in layer names and error messages."""
    return f"{size[0]}x{size[1]}"


#: Every way to write padding, for error messages.
PADDING_FORMS = "'valid', 'same', 'full', an int, (ph, pw) or ((top, bottom), (left, right))"


def explicit_padding(padding: Any, name: str = "padding", minimum: int | None = None) -> Padding2D:
    """``p``, ``(ph, pw)`` or ``((top, bottom), (left, right))`` as ``((t, b), (l, r))``.

    Every amount is an integer, and may be negative (it crops) unless ``minimum`` says
    otherwise. Anything else, a mix of the forms such as ``((1, 1), 2)`` included, is a
    ValueError naming ``name``.
    """
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        nested = [isinstance(side, (tuple, list)) for side in padding]
        if all(nested):
            (t, b), (l, r) = pair(padding[0], name, minimum), pair(padding[1], name, minimum)
            return (t, b), (l, r)
        if not any(nested):
            ph, pw = pair(padding, name, minimum)
            return (ph, ph), (pw, pw)
    elif is_integer(padding):
        p = integer(padding, name, minimum)
        return (p, p), (p, p)
    raise ValueError(f"{name} must be {PADDING_FORMS}; got {brief(padding)}")


def default_anchor(kernel: Pair) -> Pair:
    """The kernel's centre element, rounding up-left for even sizes: ``((kh−1)//2, (kw−1)//2)``."""
    return (kernel[0] - 1) // 2, (kernel[1] - 1) // 2


def anchor_in(kernel: Pair, anchor: Any, name: str) -> Pair:
    """``anchor`` as a pair (row, column) inside ``kernel``; None is :func:`default_anchor`.

    Anything else, or an element outside the kernel, is a ValueError naming ``name``.
    """
    if anchor is None:
        return default_anchor(kernel)
    ay, ax = pair(anchor, name, 0)
    if not (ay < kernel[0] and ax < kernel[1]):
        raise ValueError(
            f"{name} {(ay, ax)} lies outside the {show(kernel)} kernel "
            f"(rows 0..{kernel[0] - 1}, columns 0..{kernel[1] - 1})"
        )
    return ay, ax


def resolve_padding(
    padding: PaddingSpec,
    kernel: Pair,
    dilation: Pair = (1, 1),
    anchor: Pair | None = None,
    mode: str = "correlation",
    name: str = "padding",
) -> Padding2D:
    """Turn any padding spec into ``((top, bottom), (left, right))``.

    ``"valid"`` is no padding; ``"full"`` is ``d·(k−1)`` on every side; ``"same"`` places
    the anchor element on the input pixel each output belongs to, so output (i, j) sits on
    input (i·s, j·s): for correlation ``top = ay·d, bottom = (kh−1−ay)·d``, for convolution
    the kernel is rotated so the split is mirrored. Ints and pairs are explicit padding,
    negative amounts crop. Anything else is a ValueError naming ``name``.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "full":
            ext = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
            return (ext[0], ext[0]), (ext[1], ext[1])
        if padding == "same":
            anchor = default_anchor(kernel) if anchor is None else anchor
            sides = []
            for k, d, a in zip(kernel, dilation, anchor, strict=True):
                before, after = a * d, (k - 1 - a) * d
                sides.append((before, after) if mode == "correlation" else (after, before))
            return sides[0], sides[1]
        raise ValueError(f"{name} must be {PADDING_FORMS}; got {brief(padding)}")
    return explicit_padding(padding, name)


def written_padding(padding: PaddingSpec, resolved: Padding2D) -> str | Pair | Padding2D:
    """The padding as a layer keeps it: a name as it is, explicit padding as ``(ph, pw)``
    where both sides of each axis agree, else ``((top, bottom), (left, right))``."""
    if isinstance(padding, str):
        return padding
    (t, b), (l, r) = resolved
    return (t, l) if t == b and l == r else resolved


def conv_output_size(
    size: Pair, kernel: Pair, stride: Pair, dilation: Pair, padding: Padding2D, who: object
) -> Pair:
    """Output size ``⌊(H + top + bottom − d·(k−1) − 1) / s⌋ + 1`` per axis.

    Raises a ValueError naming every size involved when the dilated kernel does not
    fit in the padded input, or when a negative padding crops more than the input holds.
    ``who`` (a layer, or its name) begins the message; a layer is formatted only then.
    """
    try:
        return _output_size(tuple(size), kernel, stride, dilation, padding)
    except _Misfit as misfit:
        raise ValueError(f"{who}: {misfit}") from None


class _Misfit(Exception):
    """A kernel that does not fit its input: the message, less the layer's name."""


@lru_cache(maxsize=1024)
def _output_size(size: Pair, kernel: Pair, stride: Pair, dilation: Pair, padding: Padding2D):
    """:func:`conv_output_size`, remembered: a layer meets the same few input sizes on every
    call, and working the sizes out again took a tenth of a small layer's forward."""
    out = []
    for axis, lines in enumerate(("rows", "columns")):
        padded = size[axis] + sum(padding[axis])
        span = dilation[axis] * (kernel[axis] - 1) + 1
        if -min(padding[axis]) > size[axis]:
            raise _Misfit(
                f"padding {padding} crops {-min(padding[axis])} {lines} from one side, "
                f"but the input is only {size[0]}x{size[1]}"
            )
        if padded < span:
            raise _Misfit(
                f"the kernel {kernel[0]}x{kernel[1]} with dilation "
                f"{dilation[0]}x{dilation[1]} spans {span} {lines}, "
                f"but the input is only {size[0]}x{size[1]} and "
                f"{padded} {lines} after padding {padding} "
                f"(stride {stride[0]}x{stride[1]})"
            )
        out.append((padded - span) // stride[axis] + 1)
    return out[0], out[1]


def pad_or_crop(x: np.ndarray, padding: Padding2D, value: float = 0.0) -> np.ndarray:
    """Pad the last two axes by ``((t, b), (l, r))``; negative amounts crop instead."""
    (t, b), (l, r) = padding
    if min(t, b, l, r) < 0:
        H, W = x.shape[-2:]
        x = x[..., max(-t, 0) : H - max(-b, 0), max(-l, 0) : W - max(-r, 0)]
        t, b, l, r = max(t, 0), max(b, 0), max(l, 0), max(r, 0)
    if t == b == l == r == 0:
        return x
    *lead, H, W = x.shape
    padded = np.full((*lead, t + H + b, l + W + r), value, x.dtype)  # (np.pad is slower)
    padded[..., t : t + H, l : l + W] = x
    return padded


def sliding_windows(xp: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair, out: Pair):
    """A read-only view ``(N, C, kh, kw, H', W')`` of every window of ``xp``.

    ``view[n, c, a, b, i, j] = xp[n, c, i·sh + a·dh, j·sw + b·dw]`` — no copy is made.
    """
    N, C = xp.shape[:2]
    sN, sC, sH, sW = xp.strides
    return strided_view(
        xp,
        (N, C, kernel[0], kernel[1], out[0], out[1]),
        (sN, sC, dilation[0] * sH, dilation[1] * sW, stride[0] * sH, stride[1] * sW),
    )


def strided_view(a: np.ndarray, shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """A read-only view of ``a``'s memory with these shape and strides (bytes), as
    ``np.lib.stride_tricks.as_strided`` makes; for a contiguous ``a`` built directly, which
    takes 0.5 µs instead of its 4 (a convolution makes one or two per call)."""
    if not a.flags.c_contiguous:
        return np.lib.stride_tricks.as_strided(a, shape, strides, writeable=False)
    view = np.ndarray(shape, a.dtype, a, 0, strides)
    view.flags.writeable = False
    return view


def window_slice(a: int, b: int, stride: Pair, dilation: Pair, out: Pair) -> tuple[slice, ...]:
    """Index of the input pixels that kernel element (a, b) touches, for all outputs at once.

    ``xp[window_slice(a, b, ...)]`` has shape ``(N, C, H', W')`` and its element
    ``[n, c, i, j]`` is ``xp[n, c, i·sh + a·dh, j·sw + b·dw]``.
    """
    top, left = a * dilation[0], b * dilation[1]
    return (
        Ellipsis,
        slice(top, top + stride[0] * (out[0] - 1) + 1, stride[0]),
        slice(left, left + stride[1] * (out[1] - 1) + 1, stride[1]),
    )


def gather(x: np.ndarray, rows: list[int], cols: list[int], fill: float = 0.0):
    """``x[:, rows][:, :, cols]`` for one sample ``(C, H, W)``; positions outside are ``fill``.

    Returns the window ``(C, len(rows), len(cols))`` and the mask of positions inside the image.
    """
    C, H, W = x.shape
    r, c = np.asarray(rows), np.asarray(cols)
    inside = ((r >= 0) & (r < H))[:, None] & ((c >= 0) & (c < W))[None, :]
    window = np.full((C, len(r), len(c)), fill, dtype=np.result_type(x, np.float32))
    rr, cc = np.nonzero(inside)
    window[:, rr, cc] = x[:, r[rr], c[cc]]
    return window, inside
