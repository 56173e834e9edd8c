"""PyTorch in both directions: a convlens model as a ``torch.nn.Sequential`` with the same
weights (:func:`to_torch`), and a ``torch.nn.Sequential`` as a convlens model
(:func:`from_torch`).

The twin's parameters are copies of ours in the same order, so
``zip(model.parameters(), twin.parameters())`` pairs them; the tests and ``bench/`` check
convlens against PyTorch this way. ``from_torch(to_torch(model))`` gives back the same
layers with bit-identical weights: a convolution's twin carries its convlens settings
(padding as written, anchor, mode) in an attribute, used only while it still describes the
module's arithmetic. PyTorch is imported only when these are called; convlens itself does
not need it.
"""

from __future__ import annotations

import math
from math import prod
from typing import Any

import numpy as np

from convlens import nn
from convlens.nn.conv import effective_kernel, resolve_padding

from .common import (
    compose_padding,
    conv_hint,
    hinted_conv,
    hinted_pool,
    padding_spec,
    pool_hint,
)

#: The attribute of a convolution twin that keeps its convlens settings.
HINT = "convlens_settings"
#: The most values one sample's input may have.
MAX_INPUT_VALUES = 2**26
#: What :func:`from_torch` reads, for the refusals.
SUPPORTED = (
    "Conv2d, ReLU, Sigmoid, Tanh, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and "
    "AdaptiveMaxPool2d (whole windows), Flatten, Linear, Dropout, Softmax and Identity, "
    "and ZeroPad2d or ConstantPad2d right before a Conv2d or pool"
)


def to_torch(model: nn.Sequential) -> Any:
    """A ``torch.nn.Sequential`` computing the same function with copies of ``model``'s weights.

    This is the way on when a model outgrows convlens: the twin is an ordinary PyTorch
    module, ready for GPUs, ``torch.compile`` and distributed training. Layers map to their
    ``torch.nn`` namesakes (``Conv2D`` → ``Conv2d``, ``Dense`` → ``Linear``, pools with
    the same padding, ``Softmax(dim=-1)``, ...). A convolution whose padding differs
    between sides, or in convolution mode (a 180°-rotated kernel), becomes a
    :class:`~convlens.interop.torch_layers.PaddedConv2d`, and a pool whose padding
    PyTorch's pools do not take (sides that differ, more than half the kernel, cropping) a
    :class:`~convlens.interop.torch_layers.PaddedPool2d`, so every convlens configuration
    has a twin. Dtypes are kept; nested Sequentials stay nested.

    Parameters
    ----------
    model : nn.Sequential

    Returns
    -------
    torch.nn.Sequential
        In training mode, as PyTorch creates modules; call ``.eval()`` for inference.

    Raises
    ------
    ValueError
        A layer without a PyTorch twin (named).

    Examples
    --------
    >>> import torch
    >>> from convlens.models import pretrained
    >>> twin = to_torch(pretrained()).eval()     # .to("cuda") for a GPU
    >>> twin(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
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
    if isinstance(layer, (nn.MaxPool2D, nn.AvgPool2D)):
        twin = _pool_twin(layer)
        setattr(twin, HINT, pool_hint(layer))
        return twin
    if isinstance(layer, nn.Dense):
        twin = torch.nn.Linear(layer.in_features, layer.out_features, layer.bias is not None)
    elif isinstance(layer, nn.Conv2D):
        twin = _conv_twin(layer)
        setattr(twin, HINT, conv_hint(layer))
    elif isinstance(layer, nn.Sequential):
        return to_torch(layer)
    else:
        raise ValueError(f"to_torch: no PyTorch twin for {layer!r}")
    for name, p in layer.named_parameters():
        setattr(twin, name, torch.nn.Parameter(torch.tensor(p.data.copy())))
    return twin


def _conv_twin(layer: nn.Conv2D) -> Any:
    import torch

    from .torch_layers import PaddedConv2d

    (top, bottom), (left, right) = layer.padding2d
    shared = (layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride)
    if layer.mode == "correlation" and top == bottom and left == right and min(top, left) >= 0:
        return torch.nn.Conv2d(
            *shared, (top, left), layer.dilation, bias=layer.bias is not None
        )  # fmt: skip
    return PaddedConv2d(
        *shared, layer.padding2d, layer.dilation, layer.mode, bias=layer.bias is not None
    )


def _pool_twin(layer: nn.MaxPool2D | nn.AvgPool2D) -> Any:
    """PyTorch's own pool where it pads alike on both sides, by at most half the kernel;
    else a :class:`~convlens.interop.torch_layers.PaddedPool2d`."""
    import torch

    from .torch_layers import PaddedPool2d

    (top, bottom), (left, right) = layer.padding2d
    maximum = isinstance(layer, nn.MaxPool2D)
    kh, kw = layer.kernel_size
    if top == bottom and left == right and 0 <= top <= kh // 2 and 0 <= left <= kw // 2:
        pool = torch.nn.MaxPool2d if maximum else torch.nn.AvgPool2d
        return pool(layer.kernel_size, layer.stride, (top, left))
    kind = "max" if maximum else "avg"
    return PaddedPool2d(kind, layer.kernel_size, layer.stride, layer.padding2d)


# -- from PyTorch -----------------------------------------------------------------------------
def from_torch(
    module: Any, input_shape: tuple[int, int, int], classes: list[str] | None = None
) -> nn.Sequential:
    """A convlens model computing what the ``torch.nn.Sequential`` ``module`` computes.

    Nested Sequentials are flattened. Reads ``Conv2d`` (any stride, dilation and zero
    padding: ints, pairs, ``"valid"``, ``"same"``; group 1), ``ReLU``, ``Sigmoid``,
    ``Tanh``, ``MaxPool2d`` and ``AvgPool2d`` (floor mode; an average pool with padding must
    count it, as PyTorch does by default), ``AdaptiveAvgPool2d``/``AdaptiveMaxPool2d`` where
    the input divides into whole windows, ``Flatten``, ``Linear``, ``Dropout``, ``Softmax``
    over the last axis and ``Identity``. A ``ZeroPad2d`` or ``ConstantPad2d`` right before a
    ``Conv2d`` or pool becomes part of that layer's padding (zeros before a convolution or an
    average, −∞ before a max-pool; negative amounts crop, on sides the layer does not pad).
    No file is read: hand over the module itself (a pickle can run any code; load your
    weights in PyTorch with ``weights_only=True``).

    Parameters
    ----------
    module : torch.nn.Sequential
    input_shape : (C, H, W)
        One sample's shape; checked through every layer.
    classes : list of str, optional
        Class names, one per output.

    Returns
    -------
    nn.Sequential
        Copies of the weights in their dtype (float32 or float64), in training mode if
        ``module`` is, with ``input_shape`` set.

    Raises
    ------
    ValueError
        Not a Sequential, a module convlens does not have or a setting it cannot reproduce
        (named by its position, e.g. ``'2.1'``), or shapes that do not fit ``input_shape``.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding="same"), torch.nn.ReLU(),
    ...                           torch.nn.MaxPool2d(2), torch.nn.Flatten(),
    ...                           torch.nn.Linear(8 * 14 * 14, 10))
    >>> model = from_torch(net, (1, 28, 28))
    >>> [type(layer).__name__ for layer in model.layers]
    ['Conv2D', 'ReLU', 'MaxPool2D', 'Flatten', 'Dense']
    """
    import torch

    if not _is_sequential(module, torch):
        raise ValueError(
            f"from_torch needs a torch.nn.Sequential, got {type(module).__name__}: convlens "
            "cannot read a forward() method; rebuild the network as torch.nn.Sequential(...)"
        )
    shape = _input_shape(input_shape)
    layers: list[nn.Layer] = []
    current = shape
    pad = None  # (position, module) of a ZeroPad2d / ConstantPad2d waiting for its layer
    weighted: dict[int, str] = {}  # id → first position of each module with parameters
    for where, child in _leaves(module, "", torch):
        if any(True for _ in child.parameters()):
            if id(child) in weighted:
                raise ValueError(
                    f"from_torch: layer '{where}' ({type(child).__name__}) is the same module "
                    f"as layer '{weighted[id(child)]}': shared weights are not supported, as "
                    "each convlens layer holds its own"
                )
            weighted[id(child)] = where
        try:
            if isinstance(child, torch.nn.ZeroPad2d | torch.nn.ConstantPad2d):
                if pad is not None:
                    raise ValueError(PAD_PLACE)
                pad = where, child
                continue
            layer = _from_module(child, current, torch)
            if pad is not None:
                layer = _with_pad(layer, pad[1])
                pad = None
            if layer is not None:
                current = layer.output_shape(current)
        except ValueError as err:
            raise ValueError(
                f"from_torch: layer '{where}' ({type(child).__name__}): {err}"
            ) from None
        if layer is not None:
            layers.append(layer)
    if pad is not None:
        raise ValueError(
            f"from_torch: layer '{pad[0]}' ({type(pad[1]).__name__}) ends the network; {PAD_PLACE}"
        )
    model = nn.Sequential(*layers).train(bool(module.training))
    model.input_shape = shape
    if classes is not None:
        if current != (len(classes),):
            raise ValueError(f"from_torch: {len(classes)} class names, the model outputs {current}")
        model.classes = list(classes)
    model.metadata = {"source": "torch"}
    return model


#: Where a padding module may stand, for the error that says it does not.
PAD_PLACE = (
    "convlens pads inside a layer: a ZeroPad2d or ConstantPad2d must come right before a "
    "Conv2d or pool"
)


def _with_pad(layer: nn.Layer | None, pad: Any) -> nn.Layer:
    """``layer`` with the constant padding of the module ``pad`` just before it added to its
    own, where the two compose (see :func:`~convlens.interop.common.compose_padding`)."""
    if not isinstance(layer, nn.Conv2D | nn.MaxPool2D | nn.AvgPool2D):
        raise ValueError(f"it follows a {type(pad).__name__}; {PAD_PLACE}")
    left, right, top, bottom = pad.padding
    value = float(getattr(pad, "value", 0.0))
    fill = -math.inf if isinstance(layer, nn.MaxPool2D) else 0.0
    padding = compose_padding(((top, bottom), (left, right)), value, layer.padding2d, fill)
    if padding is None:
        raise ValueError(
            f"it follows a {type(pad).__name__} of {value} on sides (left, right, top, bottom) "
            f"{list(pad.padding)}, which its own padding {[list(p) for p in layer.padding2d]} "
            f"of {fill} does not continue (the values must match, and no side may be cropped "
            "by one and padded by the other)"
        )
    padded = type(layer)(**{**layer.config(), "padding": padding_spec(padding)})
    for mine, theirs in zip(padded.parameters(), layer.parameters(), strict=True):
        mine.data = theirs.data
    return padded


def _is_sequential(module: Any, torch: Any) -> bool:
    """A ``torch.nn.Sequential`` whose ``forward`` is Sequential's own (not overridden)."""
    return (
        isinstance(module, torch.nn.Sequential)
        and type(module).forward is torch.nn.Sequential.forward
    )


def _leaves(module: Any, prefix: str, torch: Any):
    """``(position, module)`` for each module of a Sequential, nested ones flattened: every
    position, as the Sequential's forward runs them (``named_children`` lists a module used
    at two positions once, so a reused ReLU went missing)."""
    for name, child in module._modules.items():
        where = f"{prefix}{name}"
        if _is_sequential(child, torch):
            yield from _leaves(child, f"{where}.", torch)
        else:
            yield where, child


def _input_shape(value: Any) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in value)
        exact = all(int(v) == v for v in value)
    except (TypeError, ValueError):
        shape, exact = (), False
    if not exact or len(shape) != 3 or min(shape) < 1 or prod(shape) > MAX_INPUT_VALUES:
        raise ValueError(
            f"from_torch: input_shape must be (C, H, W), three positive ints, got {value!r}"
        )
    return shape


def _from_module(m: Any, shape: tuple[int, ...], torch: Any) -> nn.Layer | None:
    """The convlens layer for one module (None for Identity); ValueError if there is none."""
    from .torch_layers import PaddedConv2d, PaddedPool2d

    simple = {torch.nn.ReLU: nn.ReLU, torch.nn.Sigmoid: nn.Sigmoid, torch.nn.Tanh: nn.Tanh}
    kind = type(m)
    if kind in simple:
        return simple[kind]()
    if kind is torch.nn.Identity:
        return None
    if kind in (torch.nn.Conv2d, PaddedConv2d):
        return _conv(m, torch, PaddedConv2d)
    if kind in (torch.nn.MaxPool2d, torch.nn.AvgPool2d):
        return _pool(m, shape, torch)
    if kind is PaddedPool2d:
        pool = nn.MaxPool2D if m.kind == "max" else nn.AvgPool2D
        padding = tuple(map(tuple, m.padding))
        return hinted_pool(getattr(m, HINT, None), pool, m.kernel_size, m.stride, padding)
    if kind in (torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d):
        return _adaptive_pool(m, shape, torch)
    if kind is torch.nn.Flatten:
        if m.start_dim != 1 or m.end_dim not in (-1, len(shape)):
            raise ValueError(
                f"start_dim={m.start_dim}, end_dim={m.end_dim}: convlens flattens each sample "
                "whole (start_dim=1, end_dim=-1)"
            )
        return nn.Flatten()
    if kind is torch.nn.Linear:
        layer = nn.Dense(m.in_features, m.out_features, bias=m.bias is not None)
        _copy(layer, m)
        return layer
    if kind is torch.nn.Dropout:
        return nn.Dropout(m.p)
    if kind is torch.nn.Softmax:
        rank = len(shape) + 1
        dim = m.dim if m.dim is not None else (0 if rank in (0, 1, 3) else 1)  # PyTorch's rule
        if not -rank <= dim < rank or dim % rank != rank - 1:
            raise ValueError(f"dim={m.dim}: convlens's Softmax is over the last axis (dim=-1)")
        return nn.Softmax()
    raise ValueError(f"not supported; convlens reads {SUPPORTED} in a torch.nn.Sequential")


def _conv(m: Any, torch: Any, padded: type) -> nn.Conv2D:
    kernel, stride, dilation = (tuple(m.kernel_size), tuple(m.stride), tuple(m.dilation))
    if padded is type(m):
        padding, mode = tuple(map(tuple, m.padding)), m.mode
    else:
        if m.groups != 1:
            raise ValueError(
                f"grouped convolution (groups={m.groups}) is not supported; convlens "
                "convolves every input channel (groups=1)"
            )
        if m.padding_mode != "zeros":
            raise ValueError(
                f"padding_mode={m.padding_mode!r} is not supported; convlens pads with zeros"
            )
        padding, mode = _torch_padding(m.padding, kernel, dilation), "correlation"
    bias = m.bias is not None
    layer = hinted_conv(
        getattr(m, HINT, None), m.in_channels, m.out_channels, kernel, stride, padding,
        dilation, bias,
    )  # fmt: skip
    if layer is None:  # the padding as PyTorch wrote it, where convlens means the same
        spec = padding_spec(padding)
        if isinstance(m.padding, str) and resolve_padding(m.padding, kernel, dilation) == padding:
            spec = m.padding
        layer = nn.Conv2D(
            m.in_channels, m.out_channels, kernel, stride, spec, dilation, mode=mode, bias=bias
        )
    effective = effective_kernel(_array(m.weight), mode)  # what the module correlates with
    layer.weight.data = np.ascontiguousarray(effective_kernel(effective, layer.mode))
    if bias:
        layer.bias.data = _array(m.bias)
    return layer


def _torch_padding(padding: Any, kernel: tuple[int, int], dilation: tuple[int, int]):
    """PyTorch's padding as ``((top, bottom), (left, right))``: ``"same"`` puts
    ``⌊total/2⌋`` before and the rest after, ``total = d·(k − 1)``."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return tuple((t // 2, t - t // 2) for t in totals)
    ph, pw = padding
    return (ph, ph), (pw, pw)


def _pool(m: Any, shape: tuple[int, ...], torch: Any) -> nn.Layer:
    pair = torch.nn.modules.utils._pair
    kernel, stride, padding = pair(m.kernel_size), pair(m.stride or m.kernel_size), pair(m.padding)
    maximum = type(m) is torch.nn.MaxPool2d
    if maximum and (pair(m.dilation) != (1, 1) or m.return_indices):
        raise ValueError("dilation and return_indices are not supported")
    if not maximum:
        if m.divisor_override is not None:
            raise ValueError("divisor_override is not supported")
        if not m.count_include_pad and padding != (0, 0):
            raise ValueError(
                "count_include_pad=False with padding is not supported; convlens averages over "
                "the whole window, padding included"
            )
    if m.ceil_mode and len(shape) == 3:
        for size, k, s, p in zip(shape[1:], kernel, stride, padding, strict=True):
            if (size + 2 * p - k) % s:
                raise ValueError(
                    "ceil_mode=True adds a partial window here, which convlens pools do not have"
                )
    pool = nn.MaxPool2D if maximum else nn.AvgPool2D
    ph, pw = padding
    return hinted_pool(getattr(m, HINT, None), pool, kernel, stride, ((ph, ph), (pw, pw)))


def _adaptive_pool(m: Any, shape: tuple[int, ...], torch: Any) -> nn.Layer:
    """Whole windows: ``H`` divisible by the output rows, ``W`` by the columns."""
    if len(shape) != 3:
        raise ValueError(f"needs an (N, C, H, W) input, got (N, {', '.join(map(str, shape))})")
    sizes = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,) * 2
    kernel = []
    for size, out in zip(shape[1:], sizes, strict=True):
        out = size if out is None else out
        if size % out:
            raise ValueError(
                f"output size {m.output_size} does not divide the input {shape[1:]} into whole "
                "windows, which convlens pools need"
            )
        kernel.append(size // out)
    if getattr(m, "return_indices", False):
        raise ValueError("return_indices is not supported")
    return (nn.AvgPool2D if type(m) is torch.nn.AdaptiveAvgPool2d else nn.MaxPool2D)(kernel)


def _copy(layer: nn.Layer, m: Any) -> None:
    for name, _ in layer.named_parameters():
        getattr(layer, name).data = _array(getattr(m, name))


def _array(tensor: Any) -> np.ndarray:
    """A parameter's values as a NumPy copy, float32 or float64 only."""
    import torch

    if tensor.dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"parameters of dtype {tensor.dtype} are not supported; call module.float() first"
        )
    if tensor.device.type == "meta":
        raise ValueError("its parameters are on the meta device and hold no values")
    return tensor.detach().cpu().numpy().copy()
