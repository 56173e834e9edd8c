"""A convlens model as a PyTorch module computing the same function with the same weights.

Used to check convlens against PyTorch (tests, ``bench/``): the twin's parameters are copies
of ours in the same order, so ``zip(model.parameters(), twin.parameters())`` pairs them.
PyTorch is imported only when this is called; convlens itself does not need it.
"""

from __future__ import annotations

from typing import Any

from convlens import nn


def to_torch(model: nn.Sequential) -> Any:
    """Build ``torch.nn.Sequential`` with copies of ``model``'s weights (dtype kept).

    Conv2D with symmetric padding in correlation mode becomes ``torch.nn.Conv2d``; any other
    padding, and convolution mode (a 180°-rotated kernel), goes through explicit ``F.pad`` and
    a flipped kernel, so every convlens configuration has a twin.
    """
    import torch

    return torch.nn.Sequential(*(_twin(layer) for layer in model.layers))


def _twin(layer: nn.Layer) -> Any:
    import torch

    simple = {
        nn.ReLU: torch.nn.ReLU,
        nn.Sigmoid: torch.nn.Sigmoid,
        nn.Tanh: torch.nn.Tanh,
        nn.Flatten: torch.nn.Flatten,
    }
    if type(layer) in simple:
        return simple[type(layer)]()
    if isinstance(layer, nn.Softmax):
        return torch.nn.Softmax(dim=-1)
    if isinstance(layer, nn.Dropout):
        return torch.nn.Dropout(layer.p)
    if isinstance(layer, nn.MaxPool2D):
        return torch.nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, nn.AvgPool2D):
        return torch.nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, nn.Dense):
        twin = torch.nn.Linear(layer.in_features, layer.out_features, layer.bias is not None)
    elif isinstance(layer, nn.Conv2D):
        twin = _conv_twin(layer)
    elif isinstance(layer, nn.Sequential):
        return to_torch(layer)
    else:
        raise ValueError(f"to_torch: no PyTorch twin for {layer!r}")
    for name, p in layer.named_parameters():
        setattr(twin, name, torch.nn.Parameter(torch.tensor(p.data.copy())))
    return twin


def _conv_twin(layer: nn.Conv2D) -> Any:
    import torch
    import torch.nn.functional as F

    (top, bottom), (left, right) = layer.padding2d
    if layer.mode == "correlation" and top == bottom and left == right:
        return torch.nn.Conv2d(
            layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
            (top, left), layer.dilation, bias=layer.bias is not None,
        )  # fmt: skip

    class PaddedConv(torch.nn.Module):
        """F.pad by the resolved padding, then correlate (with the rotated kernel if needed)."""

        def __init__(self) -> None:
            super().__init__()
            self.weight = self.bias = None

        def forward(self, x):
            weight = self.weight.flip(-2, -1) if layer.mode == "convolution" else self.weight
            x = F.pad(x, (left, right, top, bottom))
            return F.conv2d(x, weight, self.bias, layer.stride, 0, layer.dilation)

    return PaddedConv()
