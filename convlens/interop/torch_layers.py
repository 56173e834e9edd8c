"""PyTorch modules for convlens layers that ``torch.nn`` has no class for.

Imported only by :func:`convlens.interop.to_torch` (it imports PyTorch); a module of its own
so that a model holding one can be saved whole with ``torch.save`` and loaded back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Padding2D = tuple[tuple[int, int], tuple[int, int]]


class PaddedConv2d(torch.nn.Module):
    """A 2-D convolution with its own zero padding on each side, in either mode.

    ``forward`` pads the input by ``((top, bottom), (left, right))`` (negative amounts crop,
    as in convlens), then cross-correlates it with the kernel, rotated 180° first in
    ``"convolution"`` mode: the twin of a :class:`convlens.nn.Conv2D` whose padding is not
    the same on both sides, or that convolves. ``weight`` is ``(out, in, kh, kw)`` as stored
    by convlens (not rotated), ``bias`` ``(out,)`` or None.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
        stride: tuple[int, int], padding: Padding2D, dilation: tuple[int, int],
        mode: str = "correlation", bias: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.padding, self.mode = padding, mode
        self.weight = torch.nn.Parameter(torch.zeros(out_channels, in_channels, *kernel_size))
        self.bias = torch.nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.flip(-2, -1) if self.mode == "convolution" else self.weight
        (top, bottom), (left, right) = self.padding
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, weight, self.bias, self.stride, 0, self.dilation)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"mode={self.mode!r}, bias={self.bias is not None}"
        )


class PaddedPool2d(torch.nn.Module):
    """A max or average pool with its own padding on each side: the twin of a
    :class:`convlens.nn.MaxPool2D` or :class:`convlens.nn.AvgPool2D` whose padding PyTorch's
    pools do not take (different sides, more than half the kernel, or negative).

    ``forward`` pads the input by ``((top, bottom), (left, right))`` — with −∞ for
    ``"max"``, zeros (counted in the mean) for ``"avg"``; negative amounts crop — then pools
    with no padding of its own.
    """

    def __init__(
        self, kind: str, kernel_size: tuple[int, int], stride: tuple[int, int], padding: Padding2D
    ) -> None:
        super().__init__()
        self.kind, self.kernel_size, self.stride, self.padding = kind, kernel_size, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (top, bottom), (left, right) = self.padding
        value = float("-inf") if self.kind == "max" else 0.0
        x = F.pad(x, (left, right, top, bottom), value=value)
        pool = F.max_pool2d if self.kind == "max" else F.avg_pool2d
        return pool(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return (
            f"{self.kind!r}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}"
        )
