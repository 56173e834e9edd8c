"""The hyperparameter sandbox: one small convolution with chosen settings, run by the engine,
forward and (with a δ) backward."""

from __future__ import annotations

from typing import Any

import numpy as np

from convlens import nn
from convlens.nn.conv import correlate, effective_kernel, full_padded_delta, weight_grad
from convlens.nn.window import pad_or_crop


def sandbox(
    input_size: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    padding: Any = 0,
    dilation: tuple[int, int] = (1, 1),
    anchor: tuple[int, int] | None = None,
    mode: str = "correlation",
    delta: Any = None,
) -> dict[str, Any]:
    """Run one convolution of a small numbered input with a numbered kernel, by the engine.

    Parameters
    ----------
    input_size, kernel_size, stride, padding, dilation, anchor, mode
        As for :class:`convlens.nn.Conv2D` (one input and one output channel, no bias).
    delta : None, "ones" or (i, j)
        With a δ = dL/dy the answer has a ``backward`` part too: δ is 1 at output cell
        (i, j) and 0 elsewhere, or 1 everywhere (``"ones"``).

    Invalid settings raise the engine's own ValueError, which explains them; so does an
    output cell outside the output.
    """
    H, W = input_size
    conv = nn.Conv2D(1, 1, kernel_size, stride, padding, dilation, anchor, mode, bias=False)
    kh, kw = conv.kernel_size
    # small integers so that every product can be checked by hand
    conv.weight.data = (np.arange(kh * kw) % 3 - 1).reshape(1, 1, kh, kw).astype(np.float32)
    x = ((np.arange(H * W) * 7) % 10).reshape(1, 1, H, W).astype(np.float32)
    y = conv.forward(x)
    result = {
        "padding": [list(p) for p in conv.padding2d],
        "anchor": list(conv.anchor),
        "output_size": list(y.shape[2:]),
        "input": x[0, 0].tolist(),
        "kernel": conv.weight.data[0, 0].tolist(),
        "effective_kernel": effective_kernel(conv.weight.data, conv.mode)[0, 0].tolist(),
        "output": y[0, 0].tolist(),
    }
    if delta is not None:
        result["backward"] = _backward(conv, x, _delta(delta, y.shape[2:]))
    return result


def _delta(spec: Any, out: tuple[int, int]) -> np.ndarray:
    """δ of shape (1, 1, H', W'): ones, or 1 at one output cell."""
    Ho, Wo = out
    if isinstance(spec, str):
        if spec != "ones":
            raise ValueError(f"delta must be 'ones' or an output cell [i, j], got {spec!r}")
        return np.ones((1, 1, Ho, Wo), np.float32)
    try:
        i, j = (int(v) for v in spec)
    except (TypeError, ValueError):
        raise ValueError(f"delta must be 'ones' or an output cell [i, j], got {spec!r}") from None
    if not (0 <= i < Ho and 0 <= j < Wo):
        raise ValueError(
            f"the output cell ({i}, {j}) for δ lies outside the {Ho}x{Wo} output "
            f"(rows 0..{Ho - 1}, columns 0..{Wo - 1})"
        )
    dy = np.zeros((1, 1, Ho, Wo), np.float32)
    dy[0, 0, i, j] = 1.0
    return dy


def _backward(conv: nn.Conv2D, x: np.ndarray, dy: np.ndarray) -> dict[str, Any]:
    """The engine's backward pass for δ = ``dy`` and the steps the page draws.

    ``input_grad`` is ``conv.backward(dy)`` and ``weight_grad`` is ``conv.weight.grad``;
    beside them, the textbook recipe for dL/dx in the engine's own functions: δ spread by the
    stride, padded by d·(k − 1) on every side (``full_delta``), correlated with the rotated
    kernel (``padded_input_grad``, the gradient of the padded input: rows and columns no
    window reached stay 0), then cropped by the forward padding. ``effective_weight_grad`` is
    the padded input correlated with δ: the gradient of the kernel as applied (in convolution
    mode the stored kernel's gradient is it turned by 180°).
    """
    H, W = x.shape[2:]
    (top, bottom), (left, right) = conv.padding2d
    stride, dilation, kernel = conv.stride, conv.dilation, conv.kernel_size
    dx = conv.backward(dy)  # (1, 1, H, W); adds into conv.weight.grad, zero until now
    Ho, Wo = dy.shape[2:]
    ext = (dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1))
    spread = (stride[0] * (Ho - 1) + 1, stride[1] * (Wo - 1) + 1)
    # with no forward padding and the input exactly as large as the windows reach,
    # full_padded_delta pads by d·(k − 1) on every side: the textbook "full" padding
    reach = (spread[0] + ext[0], spread[1] + ext[1])
    plain = ((0, 0), (0, 0))
    spread_delta = full_padded_delta(dy, (1, 1), spread, plain, stride, (1, 1))  # no padding
    full = full_padded_delta(dy, kernel, reach, plain, stride, dilation)  # (1, 1, G + 2·ext)
    rotated = effective_kernel(conv.weight.data, conv.mode)[:, :, ::-1, ::-1]
    reached = correlate(full, rotated, None, (1, 1), dilation, reach)  # (1, 1, G + ext)
    Hp, Wp = H + top + bottom, W + left + right
    padded_grad = pad_or_crop(reached, ((0, Hp - reach[0]), (0, Wp - reach[1])))  # (1, 1, Hp, Wp)
    xp = pad_or_crop(x, conv.padding2d)
    d_kernel = weight_grad(dy, xp, conv.weight.data.shape, stride, dilation)
    return {
        "delta": dy[0, 0].tolist(),
        "spread_delta": spread_delta[0, 0].tolist(),
        "full_padding": list(ext),
        "full_delta": full[0, 0].tolist(),
        "rotated_kernel": rotated[0, 0].tolist(),
        "reach": list(reach),
        "padded_input_grad": padded_grad[0, 0].tolist(),
        "input_grad": dx[0, 0].tolist(),
        "effective_weight_grad": d_kernel[0, 0].tolist(),
        "weight_grad": conv.weight.grad[0, 0].tolist(),
    }
