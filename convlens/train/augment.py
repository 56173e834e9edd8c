"""Data augmentation: small random changes to training images that keep their labels."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Move each image by up to ``max_shift`` pixels up/down and left/right, filling with zeros.

    Parameters
    ----------
    x : np.ndarray
        Images ``(N, C, H, W)``.
    max_shift : int
        Largest shift per axis; each image draws its own shift from ``-max_shift..max_shift``.
    rng : np.random.Generator

    Returns
    -------
    np.ndarray
        ``(N, C, H, W)``, a new array.
    """
    if max_shift == 0:
        return x
    N, _, H, W = x.shape
    m = max_shift
    padded = np.pad(x, ((0, 0), (0, 0), (m, m), (m, m)))  # (N, C, H + 2m, W + 2m)
    windows = sliding_window_view(padded, (H, W), axis=(2, 3))  # (N, C, 2m+1, 2m+1, H, W)
    rows, cols = rng.integers(0, 2 * m + 1, N), rng.integers(0, 2 * m + 1, N)
    return windows[np.arange(N), :, rows, cols]  # one window per image: (N, C, H, W)
