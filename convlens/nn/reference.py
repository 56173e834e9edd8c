"""Literal loop implementations, line by line from the formulas.

These are slow on purpose: one output value at a time, one product at a time, so that a
reader can put each line next to its formula. They are the oracle the fast layers are
tested against, and nothing else in convlens calls them.

Notation: ``x`` is the input ``(N, C, H, W)``, ``W`` the kernel ``(O, C, kh, kw)``, ``s`` the
stride, ``d`` the dilation, ``xp`` the zero-padded input, ``δ = dL/dy`` the gradient that
arrives from the layer above.
"""

from __future__ import annotations

import numpy as np

Pair = tuple[int, int]
Padding2D = tuple[Pair, Pair]


def pad(x: np.ndarray, padding: Padding2D, value: float = 0.0) -> np.ndarray:
    """Surround every channel with ``top, bottom, left, right`` rows and columns of ``value``.

    ``xp[n, c, r, q] = x[n, c, r − top, q − left]`` where that lies inside ``x``, else
    ``value``. A negative side makes ``xp`` smaller: it crops that many rows or columns.
    """
    (top, bottom), (left, right) = padding
    N, C, H, W = x.shape
    xp = np.full((N, C, top + H + bottom, left + W + right), value, dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for r in range(xp.shape[2]):
                for q in range(xp.shape[3]):
                    row, col = r - top, q - left
                    if 0 <= row < H and 0 <= col < W:
                        xp[n, c, r, q] = x[n, c, row, col]
    return xp


def unpad(dxp: np.ndarray, padding: Padding2D, size: Pair) -> np.ndarray:
    """The gradient of :func:`pad`: ``dx[n, c, row, col] = dxp[n, c, row + top, col + left]``
    where that lies inside ``xp`` (padding is dropped); cropped pixels get 0."""
    (top, _), (left, _) = padding
    N, C = dxp.shape[:2]
    dx = np.zeros((N, C, *size), dtype=dxp.dtype)
    for n in range(N):
        for c in range(C):
            for row in range(size[0]):
                for col in range(size[1]):
                    r, q = row + top, col + left
                    if 0 <= r < dxp.shape[2] and 0 <= q < dxp.shape[3]:
                        dx[n, c, row, col] = dxp[n, c, r, q]
    return dx


def rotate180(kernel: np.ndarray) -> np.ndarray:
    """``R[o, c, a, b] = W[o, c, kh−1−a, kw−1−b]``: flip rows, then columns."""
    kh, kw = kernel.shape[-2:]
    rotated = np.empty_like(kernel)
    for a in range(kh):
        for b in range(kw):
            rotated[:, :, a, b] = kernel[:, :, kh - 1 - a, kw - 1 - b]
    return rotated


def output_size(size: int, kernel: int, stride: int, dilation: int, pad_total: int) -> int:
    """``⌊(H + pad − d·(k−1) − 1) / s⌋ + 1``: how many times the window fits, stepping by s."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: Pair,
    padding: Padding2D,
    dilation: Pair,
    mode: str = "correlation",
) -> np.ndarray:
    """``y[n,o,i,j] = b[o] + Σ_c Σ_a Σ_b K[o,c,a,b] · xp[n, c, i·s + a·d, j·s + b·d]``.

    ``K = W`` for cross-correlation; ``K = rotate180(W)`` for convolution.
    """
    N, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    (sh, sw), (dh, dw) = stride, dilation
    K = rotate180(weight) if mode == "convolution" else weight
    xp = pad(x, padding)
    Ho = output_size(H, kh, sh, dh, sum(padding[0]))
    Wo = output_size(W, kw, sw, dw, sum(padding[1]))
    y = np.zeros((N, O, Ho, Wo), dtype=np.result_type(x, weight))
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    total = bias[o] if bias is not None else 0.0
                    for c in range(C):
                        for a in range(kh):
                            for b in range(kw):
                                total += K[o, c, a, b] * xp[n, c, i * sh + a * dh, j * sw + b * dw]
                    y[n, o, i, j] = total
    return y


def conv2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    stride: Pair,
    padding: Padding2D,
    dilation: Pair,
    mode: str = "correlation",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chain rule, one product at a time. Returns ``(dL/dx, dL/dW, dL/db)``.

    Every output ``y[n,o,i,j]`` received ``K[o,c,a,b] · xp[n,c,p,q]`` with ``p = i·s + a·d``,
    ``q = j·s + b·d``. So that product sends ``δ[n,o,i,j] · xp[n,c,p,q]`` to ``dK[o,c,a,b]``
    and ``δ[n,o,i,j] · K[o,c,a,b]`` to ``dxp[n,c,p,q]``. Gathered from the side of one input
    pixel, the second sum is the seeds' *full convolution of δ with the 180°-rotated kernel*;
    the fast :func:`convlens.nn.conv.input_grad` computes it that way. Finally the padding
    rows and columns are cut off: they were not part of the input (and rows a negative
    padding cropped get 0: no output read them).
    """
    N, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    (sh, sw), (dh, dw) = stride, dilation
    K = rotate180(weight) if mode == "convolution" else weight
    xp = pad(x, padding)
    dxp = np.zeros_like(xp, dtype=np.result_type(dy, weight))
    dK = np.zeros_like(K, dtype=np.result_type(dy, x))
    db = np.zeros(O, dtype=dy.dtype)
    _, _, Ho, Wo = dy.shape
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    g = dy[n, o, i, j]
                    db[o] += g
                    for c in range(C):
                        for a in range(kh):
                            for b in range(kw):
                                p, q = i * sh + a * dh, j * sw + b * dw
                                dK[o, c, a, b] += g * xp[n, c, p, q]
                                dxp[n, c, p, q] += g * K[o, c, a, b]
    dW = rotate180(dK) if mode == "convolution" else dK
    return unpad(dxp, padding, (H, W)), dW, db  # strip the padding, give back the crop


def conv2d_anchored_same(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: Pair,
    dilation: Pair,
    anchor: Pair,
    mode: str = "correlation",
) -> np.ndarray:
    """``"same"`` convolution straight from the anchor's definition, with no padding arithmetic.

    Output (i, j) belongs to input pixel (i·s, j·s), where the anchor element (ay, ax) sits.
    Kernel element (a, b) then lies ``(a − ay, b − ax)`` taps away from it; pixels outside the
    image count as zero:

    * correlation: ``y[i, j] = Σ W[a, b] · x[i·s + (a − ay)·d, j·s + (b − ax)·d]``
    * convolution: ``y[i, j] = Σ W[a, b] · x[i·s − (a − ay)·d, j·s − (b − ax)·d]``
    """
    N, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    (sh, sw), (dh, dw), (ay, ax) = stride, dilation, anchor
    sign = 1 if mode == "correlation" else -1
    Ho, Wo = -(-H // sh), -(-W // sw)  # ⌈H / s⌉
    y = np.zeros((N, O, Ho, Wo), dtype=np.result_type(x, weight))
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    total = bias[o] if bias is not None else 0.0
                    for c in range(C):
                        for a in range(kh):
                            for b in range(kw):
                                row = i * sh + sign * (a - ay) * dh
                                col = j * sw + sign * (b - ax) * dw
                                if 0 <= row < H and 0 <= col < W:
                                    total += weight[o, c, a, b] * x[n, c, row, col]
                    y[n, o, i, j] = total
    return y


def maxpool2d_forward(
    x: np.ndarray, kernel: Pair, stride: Pair, padding: Padding2D = ((0, 0), (0, 0))
) -> tuple[np.ndarray, np.ndarray]:
    """``y[n,c,i,j] = max_{a,b} xp[n, c, i·s + a, j·s + b]`` (``xp`` padded with −∞).

    Returns ``y`` and the mask: for each window, the row-major index ``a·kw + b`` of its
    first maximum (integers, never coordinates as strings).
    """
    N, C, H, W = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    xp = pad(x, padding, value=-np.inf)
    Ho, Wo = output_size(H, kh, sh, 1, sum(padding[0])), output_size(W, kw, sw, 1, sum(padding[1]))
    y = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    argmax = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    best, winner = -np.inf, 0
                    for a in range(kh):
                        for b in range(kw):
                            value = xp[n, c, i * sh + a, j * sw + b]
                            if value > best:  # strictly greater: ties keep the first
                                best, winner = value, a * kw + b
                    y[n, c, i, j], argmax[n, c, i, j] = best, winner
    return y, argmax


def maxpool2d_backward(
    dy: np.ndarray,
    x_shape: tuple[int, ...],
    argmax: np.ndarray,
    kernel: Pair,
    stride: Pair,
    padding: Padding2D = ((0, 0), (0, 0)),
) -> np.ndarray:
    """Route each ``δ[n,c,i,j]`` to the winner of its window; the rest of the window gets 0.

    A pixel that wins several overlapping windows collects all of their gradients (``+=``).
    """
    N, C, H, W = x_shape
    (_, kw), (sh, sw), ((top, bottom), (left, right)) = kernel, stride, padding
    dxp = np.zeros((N, C, top + H + bottom, left + W + right), dtype=dy.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    a, b = divmod(int(argmax[n, c, i, j]), kw)
                    dxp[n, c, i * sh + a, j * sw + b] += dy[n, c, i, j]
    return unpad(dxp, padding, (H, W))


def avgpool2d_forward(
    x: np.ndarray, kernel: Pair, stride: Pair, padding: Padding2D = ((0, 0), (0, 0))
) -> np.ndarray:
    """``y[n,c,i,j] = (1 / (kh·kw)) · Σ_{a,b} xp[n, c, i·s + a, j·s + b]`` (zeros count)."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    xp = pad(x, padding)
    Ho, Wo = output_size(H, kh, sh, 1, sum(padding[0])), output_size(W, kw, sw, 1, sum(padding[1]))
    y = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    total = 0.0
                    for a in range(kh):
                        for b in range(kw):
                            total += xp[n, c, i * sh + a, j * sw + b]
                    y[n, c, i, j] = total / (kh * kw)
    return y


def avgpool2d_backward(
    dy: np.ndarray,
    x_shape: tuple[int, ...],
    kernel: Pair,
    stride: Pair,
    padding: Padding2D = ((0, 0), (0, 0)),
) -> np.ndarray:
    """Each window member got weight ``1/(kh·kw)``, so it receives ``δ / (kh·kw)``."""
    N, C, H, W = x_shape
    (kh, kw), (sh, sw), ((top, bottom), (left, right)) = kernel, stride, padding
    dxp = np.zeros((N, C, top + H + bottom, left + W + right), dtype=dy.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    for a in range(kh):
                        for b in range(kw):
                            dxp[n, c, i * sh + a, j * sw + b] += dy[n, c, i, j] / (kh * kw)
    return unpad(dxp, padding, (H, W))


def pool2d_anchored_same(
    x: np.ndarray, kernel: Pair, stride: Pair, anchor: Pair, maximum: bool
) -> np.ndarray:
    """``"same"`` pooling straight from the anchor's definition, with no padding arithmetic.

    Window (i, j) holds the input pixels ``x[i·s + a − ay, j·s + b − ax]`` that lie inside the
    image, (ay, ax) the anchor: the maximum of those, or their sum over the full window size
    ``kh·kw`` (the pixels outside count as zeros in the mean).
    """
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ay, ax) = kernel, stride, anchor
    Ho, Wo = -(-H // sh), -(-W // sw)  # ⌈H / s⌉
    y = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    values = []
                    for a in range(kh):
                        for b in range(kw):
                            row, col = i * sh + a - ay, j * sw + b - ax
                            if 0 <= row < H and 0 <= col < W:
                                values.append(x[n, c, row, col])
                    y[n, c, i, j] = max(values) if maximum else sum(values) / (kh * kw)
    return y


# -- the backpropagation series' layout ----------------------------------------------------------
# Its kernel has a *centre element* (ca, cb) at which the kernel's own axes start, so element
# (a, b) of the stored kernel has the index (a − ca, b − cb); a flag chooses convolution
# (g = 1: input (i·s − g·u)) or cross-correlation (g = −1: input (i·s + u)); the input is padded
# by P on every side, and the output has ⌊(H + 2P − kh)/s⌋ + 1 rows.


def series_conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: int,
    padding: int,
    centre: Pair,
    convolution: bool,
) -> np.ndarray:
    """The series' convolution, one product at a time:

    ``y[n, o, i, j] = b[o] + Σ_c Σ_u Σ_v W[o, c, u + ca, v + cb] · yP[n, c, i·s − g·u, j·s − g·v]``

    with ``u`` from ``−ca`` to ``kh − 1 − ca``, ``yP`` the input zero-padded by P, and pixels
    outside ``yP`` read as 0 (the series skips them).
    """
    N, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    (ca, cb), P, s = centre, padding, stride
    g = 1 if convolution else -1
    yP = pad(x, ((P, P), (P, P)))
    Ho, Wo = (H + 2 * P - kh) // s + 1, (W + 2 * P - kw) // s + 1
    y = np.zeros((N, O, Ho, Wo), dtype=np.result_type(x, weight))
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    total = bias[o] if bias is not None else 0.0
                    for c in range(C):
                        for u in range(-ca, kh - ca):
                            for v in range(-cb, kw - cb):
                                row, col = i * s - g * u, j * s - g * v
                                if 0 <= row < yP.shape[2] and 0 <= col < yP.shape[3]:
                                    total += weight[o, c, u + ca, v + cb] * yP[n, c, row, col]
                    y[n, o, i, j] = total
    return y


def series_maxpool2d(
    x: np.ndarray, window: Pair, stride: int, padding: int, centre: Pair, convolution: bool
) -> np.ndarray:
    """The series' max-pool: its window is a kernel with a centre element and the same flag,

    ``y[n, c, i, j] = max_{u, v} yP[n, c, i·s − g·u, j·s − g·v]``

    over the pixels of ``yP`` (the input padded by P with −∞) the window reaches.
    """
    N, C, H, W = x.shape
    (kh, kw), (ca, cb), P, s = window, centre, padding, stride
    g = 1 if convolution else -1
    yP = pad(x, ((P, P), (P, P)), value=-np.inf)
    Ho, Wo = (H + 2 * P - kh) // s + 1, (W + 2 * P - kw) // s + 1
    y = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    best = -np.inf
                    for u in range(-ca, kh - ca):
                        for v in range(-cb, kw - cb):
                            row, col = i * s - g * u, j * s - g * v
                            if 0 <= row < yP.shape[2] and 0 <= col < yP.shape[3]:
                                best = max(best, yP[n, c, row, col])
                    y[n, c, i, j] = best
    return y
