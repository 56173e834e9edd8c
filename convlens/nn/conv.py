r"""2-D convolution: forward as a matrix product, backward as the seeds' full convolution.

With ``xp`` the input zero-padded by ((top, bottom), (left, right)), stride s and dilation d,

.. math::

    y[n,o,i,j] = b[o] + \sum_c \sum_a \sum_b W[o,c,a,b]\;
                 xp[n,\, c,\, i s_h + a d_h,\, j s_w + b d_w]

is a *cross-correlation* (``mode="correlation"``, what every framework calls convolution).
``mode="convolution"`` uses the kernel rotated by 180°, ``W[o, c, kh−1−a, kw−1−b]``: the
textbook convolution. Both modes run the same code on an *effective* kernel.

Backward, with ``δ = dL/dy`` (at stride 1 :func:`weight_grad` and, for layers with many
outputs, :func:`input_grad` compute the same sums by faster routes, each documented there):

* ``dL/db[o]       = Σ_{n,i,j} δ[n,o,i,j]``
* ``dL/dW[o,c,a,b] = Σ_{n,i,j} δ[n,o,i,j] · xp[n, c, i·s + a·d, j·s + b·d]`` — the input
  correlated with δ spread out by the stride;
* ``dL/dx`` = the *full* convolution of δ (stride-dilated: s−1 zeros between neighbours)
  with the 180°-rotated kernel, channels swapped, then cropped by the forward padding.

The literal loop versions of all three live in :mod:`convlens.nn.reference`.
"""

from __future__ import annotations

import threading
from math import prod
from typing import Any, Literal

import numpy as np

from .checks import choice, flag, integer
from .layer import Layer, default_rng, init_uniform
from .window import (
    Padding2D,
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
    sliding_windows,
    strided_view,
)

Mode = Literal["correlation", "convolution"]
MODES = ("correlation", "convolution")


def effective_kernel(weight: np.ndarray, mode: Mode) -> np.ndarray:
    """The kernel that is cross-correlated with the input: rotated 180° for convolution."""
    return weight[..., ::-1, ::-1] if mode == "convolution" else weight


#: The im2col matrix and products of a block of samples take about this many bytes. Once
#: the scratch buffers were kept between calls, fewer and larger blocks paid: Tiny VGG at
#: batch 32 on 2 threads (a block of 16 samples) with 2 MiB blocks instead took 1.09× the
#: time to run forward and 1.06× a training step (alternating processes); 32 MiB blocks
#: gained nothing more. (Before those buffers, 2 MiB blocks paid for freshly mapped
#: memory: 7.3 → 3.3 ms on the second conv.)
BLOCK_BYTES = 2**24


def im2col(
    xp: np.ndarray,
    kernel: Pair,
    stride: Pair,
    dilation: Pair,
    out: Pair,
    into: np.ndarray | None = None,
) -> np.ndarray:
    """Every receptive field as a column: ``(N, C·kh·kw, H'·W')``, written into ``into``
    when given.

    ``cols[n, (c, a, b), (i, j)] = xp[n, c, i·sh + a·dh, j·sw + b·dw]``.
    """
    windows = sliding_windows(xp, kernel, stride, dilation, out)  # (N, C, kh, kw, H', W')
    return _as_matrix(windows, into)


def _as_matrix(windows: np.ndarray, into: np.ndarray | None) -> np.ndarray:
    """Copy a view ``(N, C, kh, kw, …)`` of windows into one matrix ``(N, C·kh·kw, P)``."""
    N, C, kh, kw = windows.shape[:4]
    if into is None:
        return windows.reshape(N, C * kh * kw, -1)  # copies
    np.copyto(into.reshape(windows.shape, copy=False), windows)
    return into


def im2col_rows(
    xp: np.ndarray, kernel: Pair, dilation: Pair, out: Pair, into: np.ndarray | None = None
) -> np.ndarray:
    """Stride-1 receptive fields read along whole padded rows: ``(N, C·kh·kw, L)``.

    With the padded input flattened per channel (row length ``Wp``),
    ``cols[n, (c, a, b), t] = xp[n, c].flat[t + a·dh·Wp + b·dw]`` and
    ``L = (H'−1)·Wp + W'``. Column ``t = i·Wp + j`` is output (i, j) when ``j < W'``; the
    ``Wp − W'`` columns between two output rows wrap around the image's right edge and are
    dropped from the result. The price is those few extra columns; the gain is that each
    row of ``cols`` is one contiguous run of the input, so the copy runs at memory speed
    where :func:`im2col` copies runs of only ``W'`` values.
    """
    N, C, Hp, Wp = xp.shape
    length = (out[0] - 1) * Wp + out[1]
    flat = np.ascontiguousarray(xp).reshape(N, C, Hp * Wp)
    sN, sC, s1 = flat.strides
    windows = strided_view(
        flat,
        (N, C, kernel[0], kernel[1], length),
        (sN, sC, dilation[0] * Wp * s1, dilation[1] * s1, s1),
    )
    return _as_matrix(windows, into)


_workspace = threading.local()  # this thread's scratch buffers, by name

#: The largest scratch buffer a thread keeps between calls, so each thread keeps at most
#: two of this size ("columns" and "products"). Training needs at most :data:`BLOCK_BYTES`
#: per buffer (Tiny VGG at batch 32: 15 MB, its second conv's 16 samples); a larger
#: request, such as one sample under a huge dilation with "same" padding (390 MB at
#: dilation 2000 on 28×28), gets a buffer for that call alone, so that no call leaves the
#: process larger for good.
SCRATCH_KEEP_BYTES = 64 * 2**20


def _scratch(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A buffer of this thread, reused by every block and call (valid until the next
    request of the same name): a fresh megabyte for every block, hundreds of times a
    training step, made the allocator map and fault in new pages each time (about a
    quarter of a Tiny VGG step, measured). Buffers over :data:`SCRATCH_KEEP_BYTES` are
    not kept."""
    nbytes = prod(shape) * np.dtype(dtype).itemsize
    if nbytes > SCRATCH_KEEP_BYTES:
        return np.empty(shape, dtype)
    buffer = getattr(_workspace, name, None)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = np.empty(nbytes, np.uint8)
        setattr(_workspace, name, buffer)
    return buffer[:nbytes].view(dtype).reshape(shape)


def _columns(
    xp: np.ndarray,
    kernel: Pair,
    stride: Pair,
    dilation: Pair,
    out: Pair,
    width: int,
    ones: bool = False,
):
    """im2col of a block of samples, in a scratch buffer, with ``width`` columns per output
    row: the padded width (:func:`im2col_rows`, stride 1 only) or the output width
    (:func:`im2col`). With ``ones``, a last row of ones follows, for the bias."""
    length = (out[0] - 1) * width + out[1]
    rows = xp.shape[1] * kernel[0] * kernel[1]
    buffer = _scratch("columns", (len(xp), rows + ones, length), xp.dtype)
    if ones:
        buffer[:, rows] = 1
    into = buffer[:, :rows]
    if width == out[1]:
        im2col(xp, kernel, stride, dilation, out, into)
    else:
        im2col_rows(xp, kernel, dilation, out, into)
    return buffer


def _blocks(n_samples: int, sample_bytes: int):
    """Slices of the batch whose working matrices, ``sample_bytes`` per sample, fit in
    :data:`BLOCK_BYTES`."""
    step = max(1, BLOCK_BYTES // max(sample_bytes, 1))
    return [slice(start, start + step) for start in range(0, n_samples, step)]


#: :func:`correlate` uses the kernel row by row only where the whole im2col matrix would
#: take at least this many bytes (see :func:`_by_kernel_rows`).
ROWS_MIN_BYTES = 2**19


def _by_kernel_rows(in_channels: int, out_channels: int, kernel_width: int, im2col_bytes: int):
    """Whether :func:`correlate` at stride 1 pays for using the kernel row by row, given
    the bytes the whole im2col matrix of the call would take.

    Measured at batch 16 with 3×3 kernels (time by rows / time whole): it pays where the
    whole product's M = O is at most 16 and its K per kernel row, C·kw, is at least 3·O —
    0.82 at C = O = 10 (Tiny VGG), 0.88 at 64 → 16 — and costs where O is larger
    (1.19 at 64 → 64) or C·kw small (1.25 at 3 → 10, 2.3 at 1 → 16). Where the whole
    im2col matrix is small enough to stay in the cache, the kh shifted adds cost more
    than the smaller gather saves: for one image, Tiny VGG's 10 → 10 convs on 30×30 took
    1.47× as long by rows (302 kB of im2col), 1.07 on 38×38 (492 kB), 0.96 on 46×46
    (729 kB) and 0.70 on 62×62; 16 → 16 on 30×30 1.10 (484 kB), 32 → 16 0.82 (968 kB).
    """
    return (
        out_channels <= 16
        and in_channels * kernel_width >= 3 * out_channels
        and im2col_bytes >= ROWS_MIN_BYTES
    )


def correlate(
    xp: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    stride: Pair,
    dilation: Pair,
    out: Pair,
) -> np.ndarray:
    """Cross-correlate an already padded input with ``kernel (O, C, kh, kw)``: ``(N, O, H', W')``.

    One matrix product per block of samples, ``(O, C·kh·kw) @ im2col(block)``. At stride 1
    (every dL/dx, and most forward passes) each kernel row ``a`` is used on its own, as a
    1×kw kernel over an output taller by ``dh·(kh−1)`` rows, and the kh results are added,
    row ``a``'s shifted up by ``a·dh`` rows:

    ``y[o, i, j] = Σ_a Z[(o, a), i + a·dh, j]`` with
    ``Z = W[o, c, a, b] as (O·kh, C·kw) @ im2col_rows(xp, 1×kw)``.

    The gathered matrix is kh times smaller and the product's M is O·kh instead of O,
    which suits BLAS far better for the small channel counts of teaching networks (Tiny
    VGG's second conv forward: 3.2 → 2.6 ms at batch 16); see :func:`_by_kernel_rows`.
    """
    O, C, kh, kw = kernel.shape
    im2col_bytes = len(xp) * C * kh * kw * out[0] * out[1] * xp.itemsize
    taps = kh if stride == (1, 1) and _by_kernel_rows(C, O, kw, im2col_bytes) else 1
    # Whole padded rows (width Wp) make the gather one long copy per row of cols, but the
    # output then carries Wp − W' wrapped columns per row and is copied once more to drop
    # them. That pays where cols are the bigger matrix, K = C·kh·kw > O; a first layer
    # with one channel and more filters than taps (the MNIST net's 1 → 16, K = 9) gathers
    # directly instead: its forward 0.77 → 0.37 ms at 16 samples, the same numbers.
    along_rows = stride == (1, 1) and (taps > 1 or C * kh * kw > O)
    width = xp.shape[3] if along_rows else out[1]
    if taps > 1:
        matrix = kernel.transpose(0, 2, 1, 3).reshape(O * kh, C * kw)  # [(o, a), (c, b)]
        gathered, size = (1, kw), (out[0] + dilation[0] * (kh - 1), out[1])
    else:
        matrix = kernel.reshape(O, C * kh * kw)
        gathered, size = (kh, kw), out
    dtype = np.result_type(xp, kernel)
    if bias is not None:  # b[o] as one more column, against a row of ones in cols
        column = np.zeros((O, taps), dtype)
        column[:, 0] = bias  # once per output: on kernel row 0 only
        matrix = np.concatenate([matrix, column.reshape(O * taps, 1)], axis=1)
    length = (out[0] - 1) * width + out[1]
    y = np.empty((len(xp), O, out[0] * width), dtype)
    computed = y[:, :, :length]  # the rest is the last row's wrapped columns
    columns = (size[0] - 1) * width + size[1]  # L'
    scratch_rows = matrix.shape[1] + (matrix.shape[0] if taps > 1 else 0)  # cols, products
    for block in _blocks(len(xp), scratch_rows * columns * xp.itemsize):
        cols = _columns(xp[block], gathered, stride, dilation, size, width, bias is not None)
        if taps == 1:
            np.matmul(matrix, cols, out=computed[block])  # (O, K) @ (n, K, L)
            continue
        shape = (len(cols), O * taps, columns)
        products = np.matmul(matrix, cols, out=_scratch("products", shape, y.dtype))
        by_row = products.reshape(len(cols), O, taps, columns)  # Z: (n, O, kh, L')
        shifted = [by_row[:, :, a, a * dilation[0] * width :][..., :length] for a in range(taps)]
        np.add(shifted[0], shifted[1], out=computed[block])
        for part in shifted[2:]:
            computed[block] += part
    rows = y.reshape(len(xp), O, out[0], width)
    return rows if width == out[1] else np.ascontiguousarray(rows[..., : out[1]])


def weight_grad(
    dy: np.ndarray, xp: np.ndarray, kernel_shape: tuple[int, ...], stride: Pair, dilation: Pair
) -> np.ndarray:
    """The effective kernel's gradient:

    ``dW[o, c, a, b] = Σ_{n,i,j} δ[n,o,i,j] · xp[n, c, i·s + a·d, j·s + b·d]``.

    At stride 1, where ``C·kh·kw > O``, each tap is one matrix product with no copy of the
    input (:func:`_weight_grad_by_taps`); otherwise δ multiplies the im2col matrix, block by
    block of samples.
    """
    O, C, kh, kw = kernel_shape
    N, _, Ho, Wo = dy.shape
    K = C * kh * kw
    if stride == (1, 1) and K > O:
        return _weight_grad_by_taps(dy, xp, (kh, kw), dilation)
    delta = dy.reshape(N, O, Ho * Wo)
    dw_t = np.zeros((K, O), np.result_type(dy, xp))  # dWᵀ
    for block in _blocks(N, K * Ho * Wo * xp.itemsize):
        cols = _columns(xp[block], (kh, kw), stride, dilation, (Ho, Wo), Wo)  # (n, K, H'·W')
        dw_t += (cols @ delta[block].transpose(0, 2, 1)).sum(axis=0)  # (n, K, P) @ (n, P, O)
    return dw_t.T.reshape(kernel_shape)


def bias_grad(dy: np.ndarray) -> np.ndarray:
    """``dL/db[o] = Σ_{n,i,j} δ[n,o,i,j]``: one matrix-vector product ``δ (N·O, H'·W') @ 1``,
    then each filter's N sums added. NumPy's ``dy.sum(axis=(0, 2, 3))`` reduces across
    strided axes and took 7× as long on Tiny VGG's maps (0.23 against 0.034 ms at 16
    samples)."""
    N, O, Ho, Wo = dy.shape
    per_map = np.ascontiguousarray(dy).reshape(N * O, Ho * Wo) @ np.ones(Ho * Wo, dy.dtype)
    return per_map.reshape(N, O).sum(axis=0)


def _weight_grad_by_taps(dy: np.ndarray, xp: np.ndarray, kernel: Pair, dilation: Pair):
    """:func:`weight_grad` at stride 1, one product per sample and tap, read in place.

    With the padded input flattened per channel (row length ``Wp``), what tap (a, b) reads
    for output t = i·Wp + j is ``xp[n, c].flat[t + a·dh·Wp + b·dw]``: for each (n, a, b)
    a strided view ``(L, C)`` of the input itself, ``L = (H'−1)·Wp + W'``, so

    ``dW[:, :, a, b] = Σ_n δ_n (O, L) @ view(n, a, b) (L, C)``

    with δ laid out on the same rows, zero in the ``Wp − W'`` wrapped columns. Nothing of
    the input is copied: measured at batch 16, Tiny VGG's 10 → 10 conv took 4.9 ms by
    im2col and 2.3 ms this way.
    """
    (kh, kw), (dh, dw) = kernel, dilation
    N, C, Hp, Wp = xp.shape
    delta = _on_rows(dy, Wp)[:, None, None]  # (N, 1, 1, O, L)
    length = delta.shape[-1]
    flat = np.ascontiguousarray(xp).reshape(N, C, Hp * Wp)
    sN, sC, s1 = flat.strides
    taps = strided_view(
        flat, (N, kh, kw, length, C), (sN, dh * Wp * s1, dw * s1, s1, sC)
    )  # taps[n, a, b, t, c] = xp[n, c].flat[t + a·dh·Wp + b·dw]
    by_sample = np.matmul(delta, taps)  # (N, kh, kw, O, C)
    return by_sample.sum(axis=0).transpose(2, 3, 0, 1)  # (O, C, kh, kw)


def _on_rows(dy: np.ndarray, width: int) -> np.ndarray:
    """δ laid out on rows ``width`` long, zero in the columns past W': ``(N, O, L)`` with
    ``L = (H'−1)·width + W'``, so that output (i, j) is column ``i·width + j``."""
    N, O, Ho, Wo = dy.shape
    rows = np.zeros((N, O, Ho, width), dy.dtype)
    rows[..., :Wo] = dy
    return rows.reshape(N, O, Ho * width)[..., : (Ho - 1) * width + Wo]


def full_padded_delta(
    dy: np.ndarray,
    kernel_size: Pair,
    input_size: Pair,
    padding: Padding2D,
    stride: Pair,
    dilation: Pair,
) -> np.ndarray:
    """Steps 1 and 2 of :func:`input_grad`: δ spread out by the stride and padded for a full
    convolution, less the forward padding. ``(N, O, H + d·(kh−1), W + d·(kw−1))``."""
    N, O, Ho, Wo = dy.shape
    H, W = input_size
    (top, _), (left, _) = padding
    if stride == (1, 1):
        spread = dy
    else:  # (N, O, s·(H'−1)+1, s·(W'−1)+1)
        spread = np.zeros((N, O, stride[0] * (Ho - 1) + 1, stride[1] * (Wo - 1) + 1), dy.dtype)
        spread[:, :, :: stride[0], :: stride[1]] = dy
    ext_h, ext_w = dilation[0] * (kernel_size[0] - 1), dilation[1] * (kernel_size[1] - 1)
    gh, gw = spread.shape[2:]
    return pad_or_crop(spread, ((ext_h - top, H + top - gh), (ext_w - left, W + left - gw)))


def input_grad(
    dy: np.ndarray,
    kernel: np.ndarray,
    input_size: Pair,
    padding: Padding2D,
    stride: Pair,
    dilation: Pair,
) -> np.ndarray:
    """dL/dx as the full convolution of the stride-dilated δ with the 180°-rotated kernel.

    1. dilate δ by the stride: put ``s − 1`` zeros between neighbouring values;
    2. pad it by ``d·(k−1)`` on every side (a *full* convolution), less the forward padding
       (which crops the rows that belonged to padding instead of input);
    3. cross-correlate with the effective kernel rotated 180°, in and out channels swapped.

    At stride 1 with at least twice as many outputs as inputs the same sum is found the
    other way round (:func:`_input_grad_by_taps`).
    """
    O, C, kh, kw = kernel.shape
    if stride == (1, 1) and O >= 2 * C:
        return _input_grad_by_taps(dy, kernel, input_size, padding, dilation)
    full = full_padded_delta(dy, (kh, kw), input_size, padding, stride, dilation)
    rotated = kernel[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, O, kh, kw)
    return correlate(full, rotated, None, (1, 1), dilation, input_size)


def _input_grad_by_taps(
    dy: np.ndarray, kernel: np.ndarray, input_size: Pair, padding: Padding2D, dilation: Pair
) -> np.ndarray:
    """:func:`input_grad` at stride 1 as the adjoint of the forward gather: each output sent
    back to the input values its window read.

    On the padded input flattened per channel (``P = Hp·Wp`` values, rows ``Wp`` long),
    output t = i·Wp + j read ``xp[c].flat[t + s]`` through tap (a, b), ``s = a·dh·Wp + b·dw``:

    ``dxp[c].flat[t + s] += Σ_o W[o, c, a, b] · δ[o].flat[t]``

    with δ laid out on the same ``P`` positions, zero where there is no output: one
    product ``W (kh·kw·C, O) @ δ (O, P)`` per sample, then one shifted add per tap. A
    sample's C channels follow one another in both, and no tap sends a nonzero value past
    its own channel (t + s < P wherever δ is not 0), so each add is one run of C·P values
    per sample. No zero border of a *full* convolution is multiplied: the MNIST net's
    16 → 32 conv (δ 11×11, input 13×13) at batch 16 took 0.69 ms as that full
    convolution, 0.53 ms with one add per channel and tap, and 0.35 ms this way. With as
    many outputs as inputs the product's K = O is too thin to pay (1.6× slower at 10 → 10).
    """
    O, C, kh, kw = kernel.shape
    (top, bottom), (left, right) = padding
    N, (Ho, Wo) = len(dy), dy.shape[2:]
    Hp, Wp = input_size[0] + top + bottom, input_size[1] + left + right
    size = C * Hp * Wp  # one sample's padded input
    delta = np.zeros((N, O, Hp, Wp), dy.dtype)
    delta[:, :, :Ho, :Wo] = dy
    by_tap = kernel.transpose(2, 3, 1, 0).reshape(kh * kw * C, O)  # [(a, b, c), o]
    spread = np.matmul(by_tap, delta.reshape(N, O, Hp * Wp)).reshape(N, kh * kw, size)
    shifts = [a * dilation[0] * Wp + b * dilation[1] for a in range(kh) for b in range(kw)]
    dxp = np.empty((N, size + shifts[-1]), spread.dtype)  # room for the last tap's shift
    dxp[:, :size] = spread[:, 0]  # tap (0, 0): no shift
    dxp[:, size:] = 0
    for tap, shift in enumerate(shifts[1:], 1):
        dxp[:, shift : shift + size] += spread[:, tap]
    dxp = dxp[:, :size].reshape(N, C, Hp, Wp)
    return pad_or_crop(dxp, ((-top, -bottom), (-left, -right)))


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | Pair = 1,
    padding: PaddingSpec = 0,
    dilation: int | Pair = 1,
    anchor: Pair | None = None,
    mode: Mode = "correlation",
) -> np.ndarray:
    """Functional 2-D convolution: the same arithmetic as :class:`Conv2D`, no state.

    Parameters
    ----------
    x : np.ndarray
        Input ``(N, C, H, W)``.
    weight : np.ndarray
        Kernel ``(O, C, kh, kw)``.
    bias : np.ndarray, optional
        ``(O,)``.
    stride, padding, dilation, anchor, mode
        As for :class:`Conv2D`.

    Returns
    -------
    np.ndarray
        ``(N, O, H', W')``.
    """
    return Conv2D.from_weights(weight, bias, stride, padding, dilation, anchor, mode).forward(x)


class Conv2D(Layer):
    r"""2-D convolution layer over batches in NCHW.

    ``y[n,o,i,j] = b[o] + Σ_c Σ_a Σ_b W[o,c,a,b] · xp[n, c, i·s + a·d, j·s + b·d]``
    (correlation; ``mode="convolution"`` rotates W by 180°). Output size per axis:
    ``⌊(H + top + bottom − d·(k−1) − 1) / s⌋ + 1``.

    Parameters
    ----------
    in_channels, out_channels : int
        C and O.
    kernel_size : int or (int, int)
        ``(kh, kw)``.
    stride : int or (int, int), default 1
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid", "same" or "full"
        ``"same"`` keeps ``⌈H / s⌉`` and is split by the anchor (see :func:`resolve_padding`).
    dilation : int or (int, int), default 1
        Gap between kernel taps: tap (a, b) reads input offset ``(a·dh, b·dw)``.
    anchor : (int, int), optional
        The kernel element that sits on the output's own input pixel. Default: the centre
        ``((kh−1)//2, (kw−1)//2)``. Only ``"same"`` padding depends on it.
    mode : {"correlation", "convolution"}
    bias : bool, default True
    rng : np.random.Generator, optional
        For the initial weights, ``U(−1/√(C·kh·kw), +1/√(C·kh·kw))`` as in PyTorch.

    Attributes
    ----------
    weight : Parameter ``(O, C, kh, kw)``
    bias : Parameter ``(O,)`` or None
    padding2d : ((int, int), (int, int))
        The resolved padding.
    """

    param_names = ("weight", "bias")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Pair,
        stride: int | Pair = 1,
        padding: PaddingSpec = 0,
        dilation: int | Pair = 1,
        anchor: Pair | None = None,
        mode: Mode = "correlation",
        bias: bool = True,
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.in_channels = integer(in_channels, "Conv2D in_channels", minimum=1)
        self.out_channels = integer(out_channels, "Conv2D out_channels", minimum=1)
        self.kernel_size = pair(kernel_size, "Conv2D kernel_size")
        self.stride = pair(stride, "Conv2D stride")
        self.dilation = pair(dilation, "Conv2D dilation")
        self.mode: Mode = choice(mode, "Conv2D mode", MODES)
        kh, kw = self.kernel_size
        self.anchor = anchor_in(self.kernel_size, anchor, "Conv2D anchor")
        self.padding2d = resolve_padding(
            padding, self.kernel_size, self.dilation, self.anchor, self.mode, "Conv2D padding"
        )
        self.padding = padding if isinstance(padding, str) else _as_lists(padding)
        bias = flag(bias, "Conv2D bias")
        rng = default_rng() if rng is None else rng
        fan_in = self.in_channels * kh * kw
        shape = (self.out_channels, self.in_channels, kh, kw)
        self.weight = init_uniform(shape, fan_in, rng, "weight", repr(self))
        self.bias = init_uniform(shape[:1], fan_in, rng, "bias", repr(self)) if bias else None

    @classmethod
    def from_weights(
        cls,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        stride: int | Pair = 1,
        padding: PaddingSpec = 0,
        dilation: int | Pair = 1,
        anchor: Pair | None = None,
        mode: Mode = "correlation",
    ) -> Conv2D:
        """A layer holding the given kernel ``(O, C, kh, kw)`` and bias ``(O,)``."""
        O, C, kh, kw = np.shape(weight)
        layer = cls(C, O, (kh, kw), stride, padding, dilation, anchor, mode, bias is not None)
        layer.weight.data = np.asarray(weight)
        if bias is not None:
            layer.bias.data = np.asarray(bias)
        return layer

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding,
            "dilation": list(self.dilation),
            "anchor": list(self.anchor),
            "mode": self.mode,
            "bias": self.bias is not None,
        }

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        H, W = self._check_input_shape(tuple(input_shape), batched=False)
        out = conv_output_size(
            (H, W), self.kernel_size, self.stride, self.dilation, self.padding2d, self
        )
        return (self.out_channels, *out)

    def forward(self, x: np.ndarray) -> np.ndarray:
        H, W = self._check_input_shape(x.shape, batched=True)
        out = conv_output_size(
            (H, W), self.kernel_size, self.stride, self.dilation, self.padding2d, self
        )
        xp = pad_or_crop(x, self.padding2d)  # (N, C, H + t + b, W + l + r)
        kernel = effective_kernel(self._checked_weight(), self.mode)
        bias = None if self.bias is None else self.bias.data
        y = correlate(xp, kernel, bias, self.stride, self.dilation, out)
        self._cache = (x.shape, xp, y.shape)  # backward re-gathers windows from xp
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        self.backward_parameters(dy)
        return self.input_gradient(dy)

    def input_gradient(self, dy: np.ndarray) -> np.ndarray:
        x_shape, _, y_shape = self._saved()
        self._check_grad_shape(dy, y_shape)
        kernel = effective_kernel(self.weight.data, self.mode)
        return input_grad(dy, kernel, x_shape[2:], self.padding2d, self.stride, self.dilation)

    def backward_parameters(self, dy: np.ndarray) -> None:
        """Add dL/dW and dL/db into ``.grad``."""
        _, xp, y_shape = self._saved()
        self._check_grad_shape(dy, y_shape)
        d_kernel = weight_grad(dy, xp, self.weight.data.shape, self.stride, self.dilation)
        self.weight.accumulate(effective_kernel(d_kernel, self.mode))
        if self.bias is not None:
            self.bias.accumulate(bias_grad(dy))

    # -- checks ------------------------------------------------------------------------
    def _check_input_shape(self, shape: tuple[int, ...], batched: bool) -> tuple[int, int]:
        """The spatial size (H, W), after checking the rank and the channel count."""
        expected = "(N, C, H, W)" if batched else "(C, H, W)"
        if len(shape) != (4 if batched else 3):
            raise ValueError(f"{self!r}: expected input of shape {expected}, got shape {shape}")
        if shape[-3] != self.in_channels:
            raise ValueError(
                f"{self!r}: expected {self.in_channels} input channels, got {shape[-3]} "
                f"(input shape {shape}, layout {expected})"
            )
        return shape[-2], shape[-1]

    def _checked_weight(self) -> np.ndarray:
        expected = (self.out_channels, self.in_channels, *self.kernel_size)
        if self.weight.data.shape != expected:
            raise ValueError(
                f"{self!r}: weight has shape {self.weight.data.shape}, expected {expected}"
            )
        return self.weight.data

    # -- explaining one value ----------------------------------------------------------
    operation = "convolution"

    def explain(self, x: np.ndarray, index: tuple[int, ...]) -> dict[str, Any]:
        """Output ``y[o, i, j]`` of one sample: its input window, kernel, products and sums.

        ``rows``/``cols`` are the input positions each kernel tap reads (outside the image:
        padding, read as 0, marked ``False`` in ``inside``); ``kernel`` is the effective
        kernel (rotated 180° in convolution mode), ``weights`` the stored one.
        ``channel_shares[c]`` is input channel c correlated with its kernel slice over the
        whole output map: the shares summed, plus the bias, are output channel o.
        """
        o, i, j = (int(v) for v in index)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        (top, _), (left, _) = self.padding2d
        rows = [i * sh + a * dh - top for a in range(kh)]
        cols = [j * sw + b * dw - left for b in range(kw)]
        window, inside = gather(x, rows, cols)  # (C, kh, kw)
        kernel = effective_kernel(self.weight.data, self.mode)[o]  # (C, kh, kw)
        products = window * kernel
        sums = products.sum(axis=(1, 2))  # one per input channel
        bias = 0.0 if self.bias is None else float(self.bias.data[o])
        out = self.output_shape(x.shape)[1:]
        xp = pad_or_crop(x[None], self.padding2d)
        windows = sliding_windows(xp, self.kernel_size, self.stride, self.dilation, out)[0]
        shares = np.einsum("cabij,cab->cij", windows, kernel)  # (C, H', W'): each channel's part
        return {
            "operation": self.operation,
            "index": [o, i, j],
            "rows": rows,
            "cols": cols,
            "inside": inside.tolist(),
            "inputs": window.tolist(),
            "kernel": kernel.tolist(),
            "weights": self.weight.data[o].tolist(),
            "products": products.tolist(),
            "channel_sums": sums.tolist(),
            "channel_shares": shares.tolist(),
            "bias": bias,
            "value": float(sums.sum()) + bias,
        }

    def explain_gradient(
        self, x: np.ndarray, dy: np.ndarray, index: tuple[int, ...]
    ) -> dict[str, Any]:
        """``dL/dx[c, h, w]`` as one step of the full convolution with the rotated kernel.

        ``deltas[o, a, b]`` is the stride-dilated, fully padded δ under the rotated kernel
        ``rotated_kernel[o, a, b]`` (that is, ``W[o, c, kh−1−a, kw−1−b]`` of the effective
        kernel); their products summed over every output channel give the value.
        """
        c, h, w = (int(v) for v in index)
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        full = full_padded_delta(
            dy[None], self.kernel_size, x.shape[1:], self.padding2d, self.stride, self.dilation
        )[0]  # (O, H + d·(kh−1), W + d·(kw−1))
        deltas = full[:, h : h + dh * (kh - 1) + 1 : dh, w : w + dw * (kw - 1) + 1 : dw]
        rotated = effective_kernel(self.weight.data, self.mode)[:, c, ::-1, ::-1]  # (O, kh, kw)
        products = deltas * rotated
        sums = products.sum(axis=(1, 2))
        return {
            "operation": self.operation,
            "index": [c, h, w],
            "deltas": deltas.tolist(),
            "rotated_kernel": rotated.tolist(),
            "products": products.tolist(),
            "channel_sums": sums.tolist(),
            "value": float(sums.sum()),
        }

    def explain_parameter_gradient(
        self, x: np.ndarray, dy: np.ndarray, parameter: str, index: tuple[int, ...]
    ) -> dict[str, Any]:
        """``dL/dW[o, c, a, b]`` of one sample as the input correlated with δ, or ``dL/db[o]``.

        The stored weight ``W[o, c, a, b]`` is the effective kernel's tap ``(ta, tb)`` (the
        same, or rotated 180° in convolution mode), and that tap reads
        ``xp[c, i·s + ta·d, j·s + tb·d]`` for every output position (i, j). So
        ``dL/dW[o, c, a, b] = Σ_{i,j} δ[o, i, j] · xp[c, i·s + ta·d, j·s + tb·d]``:
        ``inputs`` holds those input values on the output grid (``rows``/``cols`` are the
        input positions; outside the image they are padding, 0, ``False`` in ``inside``),
        ``deltas`` is δ[o], ``products`` their product. A bias adds to every output of its
        channel, so ``dL/db[o] = Σ_{i,j} δ[o, i, j]``.
        """
        o = int(index[0])
        deltas = dy[o]  # (H', W')
        found = {"operation": self.operation, "parameter": parameter, "index": list(index)}
        if parameter == "bias":
            return {**found, "deltas": deltas.tolist(), "value": float(deltas.sum(dtype=float))}
        c, a, b = (int(v) for v in index[1:])
        kh, kw = self.kernel_size
        ta, tb = (a, b) if self.mode == "correlation" else (kh - 1 - a, kw - 1 - b)
        (sh, sw), (dh, dw) = self.stride, self.dilation
        (top, _), (left, _) = self.padding2d
        rows = [i * sh + ta * dh - top for i in range(deltas.shape[0])]
        cols = [j * sw + tb * dw - left for j in range(deltas.shape[1])]
        window, inside = gather(x[c : c + 1], rows, cols)
        inputs = window[0]  # (H', W'): what tap (ta, tb) read for each output
        products = inputs.astype(float) * deltas
        return {
            **found,
            "tap": [ta, tb],
            "stride": list(self.stride),
            "dilation": list(self.dilation),
            "padding": [list(p) for p in self.padding2d],
            "mode": self.mode,
            "rows": rows,
            "cols": cols,
            "inside": inside.tolist(),
            "inputs": inputs.tolist(),
            "deltas": deltas.tolist(),
            "products": products.tolist(),
            "value": float(products.sum()),
        }

    def __repr__(self) -> str:
        extras = [f"kernel={show(self.kernel_size)}"]
        if self.stride != (1, 1):
            extras.append(f"stride={show(self.stride)}")
        if self.padding not in (0, [0, 0]):
            extras.append(f"padding={self.padding!r}")
        if self.dilation != (1, 1):
            extras.append(f"dilation={show(self.dilation)}")
        if self.anchor != default_anchor(self.kernel_size):
            extras.append(f"anchor={self.anchor}")
        if self.mode != "correlation":
            extras.append(f"mode={self.mode!r}")
        return f"Conv2D({self.in_channels}→{self.out_channels}, {', '.join(extras)})"


def _as_lists(value: Any) -> Any:
    """Tuples to lists, recursively, so that a config survives a JSON round trip unchanged."""
    if isinstance(value, (tuple, list)):
        return [_as_lists(v) for v in value]
    return int(value)
