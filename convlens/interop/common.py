"""What the converters share: a convolution's settings that other formats do not keep.

ONNX and PyTorch know a convolution by its resolved padding (one amount per side) and its
cross-correlation kernel. convlens also knows how the padding was written (``"same"``,
``"full"``, an int), the anchor and the mode (correlation or convolution). Export keeps
those three in a small *hint*; import rebuilds the layer from the hint only where it
describes exactly the arithmetic the file holds, so a stale or altered hint changes nothing.
Pools have a hint too: their padding as written and their anchor.
"""

from __future__ import annotations

from typing import Any

from convlens import nn

Padding2D = tuple[tuple[int, int], tuple[int, int]]


def conv_hint(layer: nn.Conv2D) -> dict[str, Any]:
    """The settings other formats lose: the padding as written, the anchor and the mode."""
    return {"padding": layer.padding, "anchor": list(layer.anchor), "mode": layer.mode}


def padding_spec(padding: Padding2D) -> Any:
    """``(top, left)`` where each axis pads both sides alike, else the padding as given."""
    (top, bottom), (left, right) = padding
    return (top, left) if top == bottom and left == right else padding


def hinted_conv(
    hint: Any, in_channels: int, out_channels: int, kernel: Any, stride: Any,
    padding: Padding2D, dilation: Any, bias: bool,
) -> nn.Conv2D | None:  # fmt: skip
    """The Conv2D ``hint`` describes, if it pads exactly ``padding``; else None.

    Sizes come from the file, never from the hint, so a hint allocates nothing new.
    """
    if not isinstance(hint, dict):
        return None
    try:
        layer = nn.Conv2D(
            in_channels, out_channels, kernel, stride, hint["padding"], dilation,
            hint["anchor"], hint["mode"], bias,
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    return layer if layer.padding2d == tuple(map(tuple, padding)) else None


def pool_hint(layer: nn.MaxPool2D | nn.AvgPool2D) -> dict[str, Any]:
    """A pool's settings other formats lose: the padding as written and the anchor."""
    config = layer.config()
    return {"padding": config["padding"], "anchor": config["anchor"]}


def hinted_pool(
    hint: Any, kind: type, kernel: Any, stride: Any, padding: Padding2D
) -> nn.MaxPool2D | nn.AvgPool2D:
    """The pool ``hint`` describes if it pads exactly ``padding``; else the pool of
    ``padding`` as it is (default anchor)."""
    if isinstance(hint, dict):
        try:
            layer = kind(kernel, stride, hint["padding"], hint["anchor"])
        except (ValueError, KeyError, TypeError, RecursionError):
            layer = None
        if layer is not None and layer.padding2d == tuple(map(tuple, padding)):
            return layer
    return kind(kernel, stride, padding_spec(padding))


def compose_padding(
    before: Padding2D, value: float, padding: Padding2D, fill: float
) -> Padding2D | None:
    """The padding of a layer that does both a constant pad ``before`` it (of ``value``)
    and its own ``padding`` (of ``fill``: 0 for a convolution or average, −∞ for a
    maximum), or None where the two do not compose into one: the pad's value is not
    ``fill`` wherever it pads, or a side is cropped by one and padded by the other."""
    (t, b), (l, r) = before
    (ot, ob), (ol, orr) = padding
    sides = [(t, ot), (b, ob), (l, ol), (r, orr)]  # (the pad's, the layer's) per side
    if (max(t, b, l, r) > 0 and value != fill) or any(p * q < 0 for p, q in sides):
        return None
    return (t + ot, b + ob), (l + ol, r + orr)
