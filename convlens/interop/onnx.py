"""Exporting a convlens model to ONNX, so any ONNX runtime can run it.

Each layer becomes the ONNX operator with the same arithmetic: ``Conv`` (asymmetric pads
``[top, left, bottom, right]``; convolution mode stores the kernel already rotated 180°),
``MaxPool``, ``AveragePool`` (``count_include_pad=1``, as convlens counts padding),
``Relu``/``Sigmoid``/``Tanh``, ``Softmax`` over the last axis, ``Flatten`` (C-order, like
ours), ``Gemm`` for dense layers; ``Dropout`` is the identity at inference. Needs the
``onnx`` package (``pip install convlens[onnx]``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from convlens import nn
from convlens.nn.conv import effective_kernel

OPSET = 17


def export_onnx(
    model: nn.Sequential, path: str | os.PathLike, input_shape: tuple[int, ...] | None = None
) -> None:
    """Write ``model`` as an ONNX file with input ``"input"`` (N, C, H, W) and output ``"output"``.

    Parameters
    ----------
    model : nn.Sequential
    path : path-like
    input_shape : (C, H, W), optional
        One sample's shape; default ``model.input_shape``. The batch size stays dynamic.

    Raises
    ------
    ValueError
        No input shape, or a layer without an ONNX equivalent (named).
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ValueError(
            "ONNX export needs the onnx package: pip install 'convlens[onnx]'"
        ) from None
    shape = tuple(input_shape or model.input_shape or ())
    if not shape:
        raise ValueError("export_onnx needs the input shape (C, H, W): pass input_shape=")
    output_shape = model.output_shape(shape)
    nodes, initializers = [], []
    name = "input"

    def constant(label: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, np.float32), label))
        return label

    for i, layer in enumerate(model.layers):
        out = "output" if i == len(model.layers) - 1 else f"layer{i}"
        op, inputs, attributes = _node(layer, i, constant)
        nodes.append(
            helper.make_node(
                op, [name, *inputs], [out], name=f"{i}_{type(layer).__name__}", **attributes
            )
        )
        name = out
    if not model.layers:
        nodes.append(helper.make_node("Identity", ["input"], ["output"]))
    graph = helper.make_graph(
        nodes,
        "convlens",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", *output_shape])],
        initializers,
    )
    onnx_model = helper.make_model(
        graph, producer_name="convlens", opset_imports=[helper.make_opsetid("", OPSET)]
    )
    if model.classes:
        helper.set_model_props(onnx_model, {"classes": "\n".join(model.classes)})
    onnx.checker.check_model(onnx_model, full_check=True)
    onnx.save(onnx_model, os.fspath(path))


def _node(layer: nn.Layer, i: int, constant: Callable[[str, np.ndarray], str]):
    """``(operator, extra inputs, attributes)`` for one layer."""
    simple = {nn.ReLU: "Relu", nn.Sigmoid: "Sigmoid", nn.Tanh: "Tanh", nn.Dropout: "Identity"}
    if type(layer) in simple:
        return simple[type(layer)], [], {}
    if isinstance(layer, nn.Softmax):
        return "Softmax", [], {"axis": -1}
    if isinstance(layer, nn.Flatten):
        return "Flatten", [], {"axis": 1}
    if isinstance(layer, nn.Dense):
        inputs = [constant(f"{i}.weight", layer.weight.data)]
        if layer.bias is not None:
            inputs.append(constant(f"{i}.bias", layer.bias.data))
        return "Gemm", inputs, {"transB": 1}
    if isinstance(layer, nn.Conv2D):
        (top, bottom), (left, right) = layer.padding2d
        inputs = [constant(f"{i}.weight", effective_kernel(layer.weight.data, layer.mode))]
        if layer.bias is not None:
            inputs.append(constant(f"{i}.bias", layer.bias.data))
        attributes: dict[str, Any] = {
            "kernel_shape": list(layer.kernel_size),
            "strides": list(layer.stride),
            "dilations": list(layer.dilation),
            "pads": [top, left, bottom, right],
        }
        return "Conv", inputs, attributes
    if isinstance(layer, (nn.MaxPool2D, nn.AvgPool2D)):
        ph, pw = layer.padding
        attributes = {
            "kernel_shape": list(layer.kernel_size),
            "strides": list(layer.stride),
            "pads": [ph, pw, ph, pw],
        }
        if isinstance(layer, nn.AvgPool2D):
            return "AveragePool", [], {**attributes, "count_include_pad": 1}
        return "MaxPool", [], attributes
    raise ValueError(f"export_onnx: {layer!r} has no ONNX equivalent")
