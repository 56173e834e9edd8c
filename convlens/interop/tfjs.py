"""Reading TensorFlow.js "layers-model" files (``model.json`` + binary weight shards).

This is how CNN Explainer ships its Tiny VGG. The topology is Keras JSON; the weights are
little-endian arrays concatenated in manifest order across the shard files. Keras stores
NHWC: conv kernels as (kh, kw, in, out), dense kernels as (in, out), and ``Flatten`` walks
rows, then columns, then channels. convlens is NCHW with (out, in, kh, kw) kernels and
flattens channel, row, column — so kernels are transposed, and the rows of the first dense
layer after a flatten are permuted, until the converted network computes exactly the same
function.

TensorFlow's ``padding="same"`` puts ``⌊total/2⌋`` before and the rest after, with
``total = max((⌈H/s⌉ − 1)·s + d·(k − 1) + 1 − H, 0)``: it depends on the input size when
the stride exceeds 1, so it is converted to explicit padding for the size the layer sees.
"""

from __future__ import annotations

import json
import os
from math import ceil, prod
from pathlib import Path
from typing import Any

import numpy as np

from convlens import nn

ACTIVATIONS = {
    "linear": None,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softmax": nn.Softmax,
}
DTYPES = {"float32": "<f4"}


def load_tfjs(path: str | os.PathLike, classes: list[str] | None = None) -> nn.Sequential:
    """Load a TF.js layers-model as a :class:`convlens.nn.Sequential` computing the same function.

    Parameters
    ----------
    path : path-like
        The ``model.json``; its weight shards are read from the same folder.
    classes : list of str, optional
        Class names to attach to the model.

    Returns
    -------
    nn.Sequential
        NCHW, float32, with ``input_shape`` (C, H, W); ends in ``Softmax`` when the last
        Keras layer had a softmax activation.

    Raises
    ------
    ValueError
        A malformed file, a missing or wrongly sized shard, a shape mismatch, or a layer,
        activation, padding or dtype convlens does not support — named in the message.
    FileNotFoundError
        No such ``model.json``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no TF.js model at {path}")
    try:
        document = json.loads(path.read_text())
        topology = document["modelTopology"]
        config = topology.get("model_config", topology)
        manifest = document["weightsManifest"]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a TF.js layers-model ({err!r})") from None
    if config.get("class_name") != "Sequential":
        raise ValueError(
            f"{path}: only Sequential models are supported, got {config.get('class_name')!r}"
        )
    layer_specs = (
        config["config"]["layers"] if isinstance(config["config"], dict) else config["config"]
    )
    weights = read_weights(manifest, path.parent)
    model = _convert(layer_specs, weights, path)
    if classes is not None:
        out = model.output_shape(model.input_shape)
        if out != (len(classes),):
            raise ValueError(f"{len(classes)} class names given, but the model outputs {out}")
        model.classes = list(classes)
    model.metadata = {"source": "tfjs", "file": path.name}
    return model


def read_weights(manifest: list[dict[str, Any]], folder: Path) -> dict[str, np.ndarray]:
    """Every weight of the manifest by name: each group's shards, concatenated, sliced in order."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        blobs = []
        for name in group["paths"]:
            shard = folder / name
            if not shard.is_file():
                raise ValueError(f"weight shard {name} is missing (looked in {folder})")
            blobs.append(shard.read_bytes())
        data = b"".join(blobs)
        offset = 0
        for entry in group["weights"]:
            dtype = entry.get("dtype", "float32")
            if dtype not in DTYPES or "quantization" in entry:
                kind = "quantized " + dtype if "quantization" in entry else dtype
                raise ValueError(
                    f"weight {entry['name']}: {kind} weights are not supported (float32 only)"
                )
            shape = tuple(entry["shape"])
            size = prod(shape) * np.dtype(DTYPES[dtype]).itemsize
            if offset + size > len(data):
                raise ValueError(
                    f"weight shards {group['paths']} hold {len(data)} bytes, too few: "
                    f"{entry['name']} {list(shape)} ends at byte {offset + size}"
                )
            array = np.frombuffer(data, DTYPES[dtype], prod(shape), offset).reshape(shape)
            weights[entry["name"]] = array.astype(np.float32)
            offset += size
        if offset != len(data):
            raise ValueError(
                f"weight shards {group['paths']} hold {len(data)} bytes, "
                f"the manifest describes {offset}"
            )
    return weights


def _convert(
    specs: list[dict[str, Any]], weights: dict[str, np.ndarray], path: Path
) -> nn.Sequential:
    shape = _input_shape(specs, path)  # (C, H, W) or (features,)
    input_shape, layers = shape, []
    flattened_from: tuple[int, ...] | None = None  # (C, H, W) at the last Flatten
    for spec in specs:
        kind, cfg = spec["class_name"], spec["config"]
        name = cfg.get("name", kind)
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise ValueError(f"layer {name}: only channels_last models are supported")
        if kind == "InputLayer":
            continue
        if kind == "Conv2D":
            layer = _conv(cfg, weights, shape)
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            layer = _pool(kind, cfg, shape)
        elif kind == "Flatten":
            layer, flattened_from = nn.Flatten(), shape
        elif kind == "Dense":
            layer = _dense(cfg, weights, shape, flattened_from)
            flattened_from = None
        elif kind == "Dropout":
            layer = nn.Dropout(cfg["rate"])
        elif kind == "Activation":
            layer = _activation(cfg["activation"], name)
            if layer is None:
                continue
        else:
            raise ValueError(f"layer {name}: {kind} is not supported by convlens")
        try:
            shape = layer.output_shape(shape)
        except ValueError as err:
            raise ValueError(f"layer {name}: {err}") from None
        layers.append(layer)
        activation = (
            _activation(cfg.get("activation", "linear"), name) if kind != "Activation" else None
        )
        if activation is not None:
            layers.append(activation)
    model = nn.Sequential(*layers).eval()
    model.input_shape = input_shape
    return model


def _input_shape(specs: list[dict[str, Any]], path: Path) -> tuple[int, ...]:
    first = specs[0]["config"] if specs else {}
    batch_shape = first.get("batch_input_shape") or first.get("batch_shape")
    if not batch_shape:
        raise ValueError(f"{path}: the first layer gives no batch_input_shape")
    *spatial, channels = batch_shape[1:]
    return (channels, *spatial) if spatial else (channels,)


def _tensor(
    weights: dict[str, np.ndarray], layer: str, kind: str, shape: tuple[int, ...]
) -> np.ndarray:
    """Weight ``layer/kind`` (also found under a model-name prefix), checked against ``shape``."""
    matches = [k for k in weights if k == f"{layer}/{kind}" or k.endswith(f"/{layer}/{kind}")]
    if not matches:
        raise ValueError(f"layer {layer}: no {kind} in the weights manifest")
    array = weights[matches[0]]
    if array.shape != shape:
        raise ValueError(
            f"layer {layer}: {kind} has shape {list(array.shape)}, expected {list(shape)}"
        )
    return array


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    total = max((ceil(size / stride) - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def _padding(cfg: dict[str, Any], size: tuple[int, int], kernel, stride, dilation, name: str):
    if cfg["padding"] == "valid":
        return "valid"
    if cfg["padding"] == "same":
        rows = _same_padding(size[0], kernel[0], stride[0], dilation[0])
        return rows, _same_padding(size[1], kernel[1], stride[1], dilation[1])
    raise ValueError(f"layer {name}: padding {cfg['padding']!r} is not supported")


def _conv(cfg: dict[str, Any], weights: dict[str, np.ndarray], shape: tuple[int, ...]) -> nn.Conv2D:
    name, (C, H, W) = cfg["name"], shape
    kernel, stride = tuple(cfg["kernel_size"]), tuple(cfg["strides"])
    dilation = tuple(cfg.get("dilation_rate", (1, 1)))
    padding = _padding(cfg, (H, W), kernel, stride, dilation, name)
    filters = cfg["filters"]
    hwio = _tensor(weights, name, "kernel", (*kernel, C, filters))
    layer = nn.Conv2D(C, filters, kernel, stride, padding, dilation, bias=cfg.get("use_bias", True))
    layer.weight.data = np.ascontiguousarray(hwio.transpose(3, 2, 0, 1))  # HWIO -> OIHW
    if layer.bias is not None:
        layer.bias.data = _tensor(weights, name, "bias", (filters,)).copy()
    return layer


def _pool(kind: str, cfg: dict[str, Any], shape: tuple[int, ...]) -> nn.Layer:
    name, (_, H, W) = cfg["name"], shape
    kernel = tuple(cfg["pool_size"])
    stride = tuple(cfg.get("strides") or kernel)
    padding = _padding(cfg, (H, W), kernel, stride, (1, 1), name)
    (t, b), (l, r) = ((0, 0), (0, 0)) if padding == "valid" else padding
    if kind == "AveragePooling2D" and t + b + l + r > 0:
        raise ValueError(
            f"layer {name}: {kind} with padding 'same' here pads ({t}, {b}, {l}, {r}) and leaves "
            "the padding out of the mean, which convlens's average pool counts"
        )
    pool = nn.MaxPool2D if kind == "MaxPooling2D" else nn.AvgPool2D
    return pool(kernel, stride, ((t, b), (l, r)))


def _dense(
    cfg, weights, shape: tuple[int, ...], flattened_from: tuple[int, ...] | None
) -> nn.Dense:
    name, units = cfg["name"], cfg["units"]
    if len(shape) != 1:
        raise ValueError(f"layer {name}: Dense needs a vector input, got shape {list(shape)}")
    kernel = _tensor(weights, name, "kernel", (shape[0], units))  # (in, out), rows in H, W, C order
    if flattened_from is not None and len(flattened_from) == 3:
        C, H, W = flattened_from  # reorder the rows to convlens's C, H, W flatten order
        kernel = kernel.reshape(H, W, C, units).transpose(2, 0, 1, 3).reshape(C * H * W, units)
    layer = nn.Dense(shape[0], units, bias=cfg.get("use_bias", True))
    layer.weight.data = np.ascontiguousarray(kernel.T)
    if layer.bias is not None:
        layer.bias.data = _tensor(weights, name, "bias", (units,)).copy()
    return layer


def _activation(name: str, layer: str) -> nn.Layer | None:
    if name not in ACTIVATIONS:
        raise ValueError(
            f"layer {layer}: activation {name!r} is not supported ({', '.join(ACTIVATIONS)})"
        )
    kind = ACTIVATIONS[name]
    return None if kind is None else kind()
