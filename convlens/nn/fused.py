r"""A convolution and the max-pool after it, run as one step by a Sequential.

A max-pool whose windows tile its input (stride = window, no padding) reads each window's
``T = ph·pw`` values from ``T`` strided views of the convolution's output, steps of 2 along
short rows that NumPy walks slowly, and its backward writes dL/dx through the same views.
Where the convolution gathers its input directly into the im2col matrix (a first layer:
``C·kh·kw ≤ O``, see :func:`~convlens.nn.conv.correlate`), the order of that matrix's
columns is free. :class:`ConvMaxPool` gathers them window element by window element,

``cols[n, (c, a, b), (p, q, i, j)] = xp[n, c, (i·ph + p)·sh + a·dh, (j·pw + q)·sw + b·dw]``,

so the product ``W @ cols`` holds each pool window element's values as one contiguous
block ``(N, O, T, H'·W')``: the maxima are found, and δ is routed back, block by block, and
the weight gradient reads δ in that same column order. Outputs and gradients are the two
layers' own; conv outputs that no window covers (the last rows and columns when the size is
not a multiple of the window) are neither computed nor given a gradient, as they feed
nothing. On the MNIST net's first conv and pool, at 16 samples on one thread, a forward and
backward took 0.52 ms this way and 0.81 ms as the two layers; the net's training step at
batch 32, 0.91 of the time (alternating processes).
"""

from __future__ import annotations

import numpy as np

from .conv import Conv2D, effective_kernel, input_grad
from .pool import MaxPool2D, first_maxima
from .window import conv_output_size, pad_or_crop, strided_view


class ConvMaxPool:
    """``pool(conv(x))`` as one step; the layers' parameters and ``.grad`` are theirs.

    The layers' own caches are cleared by :meth:`forward` (their own ``backward`` then asks
    for a forward first), so that nothing stale is read; this step keeps what its
    backward needs on the convolution, as ``conv._fused``.
    """

    def __init__(self, conv: Conv2D, pool: MaxPool2D) -> None:
        self.conv, self.pool = conv, pool

    @staticmethod
    def fits(conv: object, pool: object) -> bool:
        """Whether ``pool`` right after ``conv`` can run fused: a Conv2D that gathers its
        input directly and a MaxPool2D whose windows tile without padding."""
        if type(conv) is not Conv2D or type(pool) is not MaxPool2D:
            return False
        kh, kw = conv.kernel_size
        gathers_directly = conv.in_channels * kh * kw <= conv.out_channels
        unpadded = pool.padding2d == ((0, 0), (0, 0))
        return gathers_directly and unpadded and pool.stride == pool.kernel_size

    def forward(self, x: np.ndarray) -> np.ndarray:
        conv, pool = self.conv, self.pool
        H, W = conv._check_input_shape(x.shape, batched=True)
        args = (conv.kernel_size, conv.stride, conv.dilation, conv.padding2d, conv)
        out = conv_output_size((H, W), *args)
        pooled = pool._out_size(out)  # (H', W'), after the pool's own checks
        xp = pad_or_crop(x, conv.padding2d)
        kernel = effective_kernel(conv._checked_weight(), conv.mode)
        O, C, kh, kw = kernel.shape
        (ph, pw), N = pool.kernel_size, len(x)
        matrix = kernel.reshape(O, C * kh * kw)
        if conv.bias is not None:  # one more column, against a row of ones in cols
            matrix = np.concatenate([matrix, conv.bias.data[:, None]], axis=1)
        cols = np.empty((N, matrix.shape[1], ph * pw * pooled[0] * pooled[1]), xp.dtype)
        cols[:, C * kh * kw :] = 1
        (sh, sw), (dh, dw) = conv.stride, conv.dilation
        sN, sC, sH, sW = xp.strides
        windows = strided_view(
            xp,
            (N, C, kh, kw, ph, pw, *pooled),
            (sN, sC, dh * sH, dw * sW, sh * sH, sw * sW, ph * sh * sH, pw * sw * sW),
        )  # [n, c, a, b, p, q, i, j] = xp[n, c, (i·ph + p)·sh + a·dh, (j·pw + q)·sw + b·dw]
        np.copyto(cols[:, : C * kh * kw].reshape(windows.shape, copy=False), windows)
        blocks = np.matmul(matrix, cols).reshape(N, O, ph * pw, pooled[0] * pooled[1])  # T blocks
        maxima = np.maximum(blocks[:, :, 0], blocks[:, :, 1]) if ph * pw > 1 else blocks[:, :, 0]
        for k in range(2, ph * pw):
            np.maximum(maxima, blocks[:, :, k], out=maxima)  # NaN propagates, as in MaxPool2D
        conv._cache = pool._cache = None
        conv._fused = (x.shape, out, pooled, cols, blocks, maxima)
        return maxima.reshape(N, O, *pooled)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        deltas = self._deltas(dy)
        self._add_parameter_grads(deltas)
        return self._input_grad(deltas)

    def backward_parameters(self, dy: np.ndarray) -> None:
        self._add_parameter_grads(self._deltas(dy))

    def input_gradient(self, dy: np.ndarray) -> np.ndarray:
        return self._input_grad(self._deltas(dy))

    def _deltas(self, dy: np.ndarray) -> np.ndarray:
        """dL/d(conv output) on the blocks ``(N, O, T, H'·W')``: each window's δ goes to its
        first maximum in row-major order (ties as in MaxPool2D), nothing to the rest."""
        _, _, pooled, _, blocks, maxima = self._saved()
        self.pool._check_grad_shape(dy, (*maxima.shape[:2], *pooled))
        delta = dy.reshape(maxima.shape)
        deltas = np.empty(blocks.shape, np.result_type(dy, blocks))
        taps = (blocks[:, :, k] for k in range(blocks.shape[2]))
        for k, won in enumerate(first_maxima(taps, maxima)):
            np.multiply(delta, won, out=deltas[:, :, k])
        return deltas

    def _add_parameter_grads(self, deltas: np.ndarray) -> None:
        """``dW = Σ_n δ_n @ cols_nᵀ`` with δ in the columns' own order; its last column is
        dL/db when there is a bias (the row of ones)."""
        conv = self.conv
        cols = self._saved()[3]
        N, O = deltas.shape[:2]
        by_column = deltas.reshape(N, O, cols.shape[2])
        d_matrix = np.matmul(by_column, cols.transpose(0, 2, 1)).sum(axis=0)  # (O, K [+1])
        K = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        d_kernel = d_matrix[:, :K].reshape(conv.weight.data.shape)
        conv.weight.accumulate(effective_kernel(d_kernel, conv.mode))
        if conv.bias is not None:
            conv.bias.accumulate(d_matrix[:, K])

    def _input_grad(self, deltas: np.ndarray) -> np.ndarray:
        """dL/dx: δ put back on the conv's output grid (0 where no window reads), then the
        convolution's own input gradient."""
        conv, (ph, pw) = self.conv, self.pool.kernel_size
        x_shape, out, (Hq, Wq) = self._saved()[:3]
        N, O = deltas.shape[:2]
        grid = np.zeros((N, O, *out), deltas.dtype)
        tiles = grid[:, :, : Hq * ph, : Wq * pw].reshape(N, O, Hq, ph, Wq, pw, copy=False)
        np.copyto(tiles.transpose(0, 1, 3, 5, 2, 4), deltas.reshape(N, O, ph, pw, Hq, Wq))
        kernel = effective_kernel(conv.weight.data, conv.mode)
        args = (conv.padding2d, conv.stride, conv.dilation)
        return input_grad(grid, kernel, x_shape[2:], *args)

    def _saved(self) -> tuple:
        saved = getattr(self.conv, "_fused", None)
        if saved is None or self.conv._cache is not None:
            raise RuntimeError(f"{self.conv!r}: call forward() before backward()")
        return saved
