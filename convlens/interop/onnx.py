"""ONNX in both directions: any ONNX runtime runs a convlens model, and convlens reads
the sequential CNNs that PyTorch, Keras (tf2onnx) and others write.

Export: each layer becomes the ONNX operator with the same arithmetic: ``Conv`` (asymmetric
pads ``[top, left, bottom, right]``; convolution mode stores the kernel already rotated
180°), ``MaxPool``, ``AveragePool`` (``count_include_pad=1``, as convlens counts padding),
``Relu``/``Sigmoid``/``Tanh``, ``Softmax`` over the last axis, ``Flatten`` (C-order, like
ours), ``Gemm`` for dense layers, ``Dropout`` (the identity at inference). Padding an ONNX
Conv or pool cannot hold (a negative side, which crops; a pool's side as large as its
kernel) goes into a ``Pad`` node just before it (constant: zeros, −∞ before a max-pool;
negative pads crop). A Conv or pool node's ``doc_string`` keeps the layer's convlens
settings (mode, anchor, padding as written), so that :func:`load_onnx` gives back the very
same layers.

Import (:func:`load_onnx`) reads the graph as data and never runs it: it walks the single
chain of nodes from the graph's input to its output, turns each node into the convlens
layer with the same arithmetic, and refuses anything else with one sentence naming the
node. Every tensor's size is checked against the bytes that hold it before an array is
made. Both need the ``onnx`` package (``pip install convlens[onnx]``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from math import ceil, prod
from pathlib import Path
from typing import Any

import numpy as np

from convlens import nn
from convlens.nn.conv import effective_kernel

from .common import (
    compose_padding,
    conv_hint,
    hinted_conv,
    hinted_pool,
    padding_spec,
    pool_hint,
)

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

    def constant(label: str, array: np.ndarray, dtype: type = np.float32) -> str:
        initializers.append(numpy_helper.from_array(np.array(array, dtype, order="C"), label))
        return label

    for i, layer in enumerate(model.layers):
        out = "output" if i == len(model.layers) - 1 else f"layer{i}"
        outside = _outside_padding(layer)
        if outside is not None:  # crops, or pads more than the operator takes: a Pad node
            (top, bottom), (left, right) = outside
            pads = constant(f"{i}.pads", [0, 0, top, left, 0, 0, bottom, right], np.int64)
            fill = constant(f"{i}.pad_value", -np.inf if isinstance(layer, nn.MaxPool2D) else 0)
            nodes.append(
                helper.make_node("Pad", [name, pads, fill], [f"{out}.padded"], name=f"{i}_Pad")
            )
            name = f"{out}.padded"
        op, inputs, attributes = _node(layer, i, constant, outside is not None)
        node = helper.make_node(
            op, [name, *inputs], [out], name=f"{i}_{type(layer).__name__}", **attributes
        )
        if isinstance(layer, nn.Conv2D):  # how the layer was written, for load_onnx
            node.doc_string = json.dumps({"convlens": conv_hint(layer)})
        elif isinstance(layer, (nn.MaxPool2D, nn.AvgPool2D)):
            node.doc_string = json.dumps({"convlens": pool_hint(layer)})
        nodes.append(node)
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


def _outside_padding(layer: nn.Layer) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """A Conv's or pool's padding when the ONNX operator cannot hold it itself, else None:
    ONNX ``pads`` are never negative, and onnxruntime's pools take only pads smaller than
    the kernel."""
    if not isinstance(layer, (nn.Conv2D, nn.MaxPool2D, nn.AvgPool2D)):
        return None
    limits = (np.inf, np.inf) if isinstance(layer, nn.Conv2D) else layer.kernel_size
    for sides, limit in zip(layer.padding2d, limits, strict=True):
        if min(sides) < 0 or max(sides) >= limit:
            return layer.padding2d
    return None


def _node(layer: nn.Layer, i: int, constant: Callable[..., str], padded: bool = False):
    """``(operator, extra inputs, attributes)`` for one layer; ``padded``: a Pad node before
    it holds the layer's padding, so the operator pads nothing."""
    simple = {nn.ReLU: "Relu", nn.Sigmoid: "Sigmoid", nn.Tanh: "Tanh"}
    if type(layer) in simple:
        return simple[type(layer)], [], {}
    if isinstance(layer, nn.Dropout):  # without a training_mode input: the identity
        return "Dropout", [constant(f"{i}.ratio", np.array(layer.p))], {}
    if isinstance(layer, nn.Softmax):
        return "Softmax", [], {"axis": -1}
    if isinstance(layer, nn.Flatten):
        return "Flatten", [], {"axis": 1}
    if isinstance(layer, nn.Dense):
        inputs = [constant(f"{i}.weight", layer.weight.data)]
        if layer.bias is not None:
            inputs.append(constant(f"{i}.bias", layer.bias.data))
        return "Gemm", inputs, {"transB": 1}
    (top, bottom), (left, right) = getattr(layer, "padding2d", ((0, 0), (0, 0)))
    if padded:
        top = bottom = left = right = 0
    if isinstance(layer, nn.Conv2D):
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
        attributes = {
            "kernel_shape": list(layer.kernel_size),
            "strides": list(layer.stride),
            "pads": [top, left, bottom, right],
        }
        if isinstance(layer, nn.AvgPool2D):
            return "AveragePool", [], {**attributes, "count_include_pad": 1}
        return "MaxPool", [], attributes
    raise ValueError(f"export_onnx: {layer!r} has no ONNX equivalent")


# -- import -----------------------------------------------------------------------------------
#: The largest ONNX file :func:`load_onnx` reads (protobuf itself stops at 2 GiB).
MAX_FILE_BYTES = 2**30
#: The most weight values a graph may hold (400 MB in float32), as for convlens model files.
MAX_PARAMETER_VALUES = 10**8
#: The most values one sample's activation may have, at the input or after any layer.
MAX_ACTIVATION_VALUES = 2**26
#: The most elements of a shape computation (``Shape → Gather → Concat → Reshape``) and the
#: most nodes deep it may go.
MAX_SHAPE_VALUES, MAX_SHAPE_DEPTH = 64, 16
#: What :func:`load_onnx` reads, for the refusals.
SUPPORTED = (
    "Conv (group 1), Relu, Sigmoid, Tanh, MaxPool, AveragePool, a constant Pad of rows and "
    "columns right before a Conv or pool, GlobalAveragePool, GlobalMaxPool, "
    "ReduceMean/ReduceMax over rows and columns, Flatten, a Reshape that flattens, Gemm, "
    "MatMul (+ Add), Softmax over the last axis, Dropout and Identity, in a single chain"
)
#: Advice for operators people meet often.
HINTS = {
    "BatchNormalization": "export in eval mode, so that the exporter folds it into the "
    "convolution before it (torch.onnx.export does), or fold it yourself",
    "LogSoftmax": "export the model with Softmax, or without the last layer",
    "Transpose": "convlens is channels-first (N, C, H, W): export with NCHW input",
    "Pad": "convlens reads a constant Pad of rows and columns right before a Conv or pool "
    "(zeros; −∞ before a MaxPool)",
    "Add": "convlens reads Add only as the bias right after a MatMul",
}
#: ONNX tensor element types convlens reads: numpy dtype and the typed field that may hold them.
TENSOR_TYPES = {
    1: ("<f4", "float_data"),
    6: ("<i4", "int32_data"),
    7: ("<i8", "int64_data"),
    9: ("<u1", "int32_data"),  # bool
    11: ("<f8", "double_data"),
}


def load_onnx(
    path: str | os.PathLike,
    classes: list[str] | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> nn.Sequential:
    """Load a sequential CNN from an ONNX file as a :class:`convlens.nn.Sequential`.

    The graph is read as data, never run: the nodes from its input to its output must form
    a single chain of operators convlens has. ``Conv`` (pads, ``auto_pad``, strides,
    dilations; group 1), ``Relu``, ``Sigmoid``, ``Tanh``, ``MaxPool`` and ``AveragePool``
    (an average pool with padding must count it, ``count_include_pad=1``; ``ceil_mode`` only
    where it adds no window), a constant ``Pad`` of rows and columns right before a ``Conv``
    or pool (negative pads crop; zeros, or −∞ before a ``MaxPool``), global pools
    (``GlobalAveragePool``, ``GlobalMaxPool``, or ``ReduceMean``/``ReduceMax`` over rows and
    columns, as PyTorch writes ``AdaptiveAvgPool2d(1)``), ``Flatten`` or a
    ``Reshape`` to ``(N, C·H·W)`` (its target shape may be computed by ``Shape``, ``Gather``,
    ``Unsqueeze``, ``Concat``, ... as exporters write it), ``Gemm`` or ``MatMul`` followed by
    ``Add`` (a dense layer), ``Softmax`` over the last axis, ``Dropout`` and ``Identity``.

    Parameters
    ----------
    path : path-like
        The ``.onnx`` file. Weights stored as external data are read from files in its folder.
    classes : list of str, optional
        Class names; default: the ``classes`` metadata :func:`export_onnx` writes, if any.
    input_shape : (C, H, W), optional
        One sample's shape, for a graph whose input leaves some of C, H and W open (exported
        with dynamic axes for the image size); where the graph fixes a size, it must agree.

    Returns
    -------
    nn.Sequential
        Float32, in evaluation mode, with ``input_shape`` (C, H, W) from the graph's input.

    Raises
    ------
    ValueError
        Not an ONNX model, an input with open sizes and no ``input_shape`` (or one that does
        not agree with the graph), a node that is not supported or not on
        the chain (branches), weights of the wrong type or size — one sentence naming the
        node, its operator and what convlens supports.
    FileNotFoundError
        No such file.

    Examples
    --------
    >>> torch.onnx.export(torch_model.eval(), torch.zeros(1, 1, 28, 28), "m.onnx")  # doctest: +SKIP
    >>> model = load_onnx("m.onnx")  # doctest: +SKIP
    """
    try:
        import onnx
    except ImportError:
        raise ValueError(
            "ONNX import needs the onnx package: pip install 'convlens[onnx]'"
        ) from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX model at {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: {size:,} bytes, more than the {MAX_FILE_BYTES:,} convlens reads")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as err:  # protobuf's DecodeError and its kin: the file is not ONNX
        raise ValueError(f"{path}: not an ONNX model ({_short(err)})") from None
    if not proto.HasField("graph"):
        raise ValueError(f"{path}: not an ONNX model (no graph)")
    if not _all_text(proto):
        raise ValueError(f"{path}: not an ONNX model (a name or field is not UTF-8 text)")
    model = _GraphReader(proto, path, input_shape).read()
    file_classes = _metadata_classes(proto)
    names = file_classes if classes is None else list(classes)
    if names is not None:
        out = model.output_shape(model.input_shape)
        if out != (len(names),):
            where = "given" if classes is not None else "in its metadata"
            raise ValueError(f"{path}: {len(names)} class names {where}, the model outputs {out}")
        model.classes = names
    model.metadata = {"source": "onnx", "file": path.name}
    return model


def _short(value: Any, limit: int = 60) -> str:
    """``value`` as text cut to ``limit`` characters: one short line, whatever a file holds."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _all_text(message: Any) -> bool:
    """Whether every string field of ``message`` decoded as text: protobuf hands over the raw
    bytes of one that is not UTF-8, where every name is expected to be a str."""
    for field, value in message.ListFields():
        repeated = getattr(field, "is_repeated", None)
        if repeated is None:  # protobuf before 5.29
            repeated = field.label == field.LABEL_REPEATED
        values = value if repeated else [value]
        if field.type == field.TYPE_STRING and not all(isinstance(v, str) for v in values):
            return False
        if field.type == field.TYPE_MESSAGE and not all(_all_text(v) for v in values):
            return False
    return True


def _shown(shape: Any) -> list[int | str]:
    """An ONNX shape for messages: sizes, the names of dynamic ones, ``"?"`` for unnamed."""
    return [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in shape.dim]


def _metadata_classes(proto: Any) -> list[str] | None:
    for prop in proto.metadata_props:
        if prop.key == "classes":
            return prop.value.split("\n")
    return None


class _GraphReader:
    """One pass over a graph: the chain from input to output, each node made a layer."""

    def __init__(self, proto: Any, path: Path, input_shape: Any = None) -> None:
        self.path, self.graph, self.given = path, proto.graph, input_shape
        self.opset = max(
            (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=1
        )
        if self.opset < 7:
            raise ValueError(f"{path}: opset {self.opset} is too old; convlens reads 7 and newer")
        graph = self.graph
        self.initializers = {t.name: t for t in graph.initializer}
        if graph.sparse_initializer:
            raise ValueError(f"{path}: sparse initializers are not supported")
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for node in graph.node:
            for name in node.output:
                if name and (name in self.producer or name in self.initializers):
                    raise ValueError(f"{path}: tensor {_short(name)!r} is produced twice")
                if name:
                    self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.used: set[int] = set()  # id() of each node read
        self.shapes: dict[str, tuple[int, ...]] = {}  # the chain's tensors: one sample's shape
        self.arrays: dict[str, np.ndarray] = {}
        self.parameter_values = 0
        self.batch: int | None = None  # the input's batch size, when the graph fixes it
        self.pad: tuple[Any, tuple[tuple[int, int], tuple[int, int]], float] | None = None

    # -- the chain ----------------------------------------------------------------------------
    def read(self) -> nn.Sequential:
        name, shape = self._input()
        outputs = [o.name for o in self.graph.output]
        if len(outputs) != 1:
            raise ValueError(
                f"{self.path}: the graph has {len(outputs)} outputs; convlens reads one"
            )
        layers: list[nn.Layer] = []
        self.shapes[name] = shape
        while name != outputs[0]:
            node = self._next(name)
            try:
                made, name = self._layers(node, name, shape)
            except ValueError as err:  # a layer's own check: say which node it was
                if str(err).startswith(str(self.path)):
                    raise
                raise ValueError(f"{self._where(node)}: {_short(err, 200)}") from None
            for layer in made:
                try:
                    shape = layer.output_shape(shape)
                except ValueError as err:
                    raise ValueError(f"{self._where(node)}: {_short(err, 200)}") from None
                if prod(shape) > MAX_ACTIVATION_VALUES:
                    raise ValueError(
                        f"{self._where(node)}: its output {list(shape)} holds more than "
                        f"{MAX_ACTIVATION_VALUES:,} values per sample"
                    )
            layers.extend(made)
            self.shapes[name] = shape
        if self.pad is not None:
            raise ValueError(f"{self._where(self.pad[0])} ends the graph; {HINTS['Pad']}")
        if [n for n in self.consumers[name] if n.op_type != "Shape"]:
            raise ValueError(
                f"{self.path}: the output {_short(name)!r} also feeds other nodes; convlens "
                "reads a single chain"
            )
        self._check_output(self.graph.output[0], shape)
        for node in self.graph.node:
            if id(node) not in self.used and node.op_type != "Constant":
                raise ValueError(
                    f"{self._where(node)} is not on the single chain from the input to the "
                    f"output; convlens reads {SUPPORTED}"
                )
        model = nn.Sequential(*layers).eval()
        model.input_shape = self.shapes[self._input_name]
        return model

    def _input(self) -> tuple[str, tuple[int, ...]]:
        inputs = [i for i in self.graph.input if i.name not in self.initializers]
        if len(inputs) != 1:
            raise ValueError(
                f"{self.path}: the graph has {len(inputs)} inputs besides its weights; "
                "convlens reads models with one input image"
            )
        value = inputs[0]
        self._input_name = value.name
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        shown = _shown(tensor.shape)
        if not value.type.HasField("tensor_type") or tensor.elem_type != 1:
            raise ValueError(
                f"{self.path}: the input {_short(value.name)!r} is not a float32 tensor"
            )
        if len(dims) != 4 or min((d for d in dims[1:] if d is not None), default=1) < 1:
            raise ValueError(
                f"{self.path}: the input {_short(value.name)!r} has shape {_short(shown)}; "
                "convlens needs (N, C, H, W)"
            )
        if self.given is not None:
            dims[1:] = self._given_shape(dims[1:], shown)
        elif None in dims[1:]:
            raise ValueError(
                f"{self.path}: the input {_short(value.name)!r} has shape {_short(shown)}, "
                "with sizes left open; give the image size as load_onnx(..., input_shape=(C, H, "
                "W)), or export with a fixed one"
            )
        shape = tuple(dims[1:])
        if prod(shape) > MAX_ACTIVATION_VALUES:
            raise ValueError(
                f"{self.path}: the input {list(shape)} holds more than "
                f"{MAX_ACTIVATION_VALUES:,} values per sample"
            )
        self.batch = dims[0] if dims[0] else None
        return value.name, shape

    def _given_shape(self, dims: list[int | None], shown: Any) -> list[int]:
        """``input_shape`` as given, checked: three positive ints, equal to the graph's
        sizes wherever it fixes them."""
        given = self.given
        try:
            sizes = [int(v) for v in given]
            exact = all(int(v) == v for v in given)
        except (TypeError, ValueError):
            sizes, exact = [], False
        if not exact or len(sizes) != 3 or min(sizes) < 1:
            raise ValueError(f"input_shape must be (C, H, W), three positive ints, got {given!r}")
        for axis, fixed, size in zip("CHW", dims, sizes, strict=True):
            if fixed is not None and fixed != size:
                raise ValueError(
                    f"{self.path}: input_shape {sizes} gives {axis} = {size}, but the graph's "
                    f"input {_short(shown)} fixes it at {fixed}"
                )
        return sizes

    def _next(self, name: str) -> Any:
        """The one node that reads tensor ``name`` (Shape nodes aside: they feed a Reshape)."""
        readers = [n for n in self.consumers[name] if n.op_type != "Shape"]
        if not readers:
            raise ValueError(
                f"{self.path}: tensor {_short(name)!r} leads nowhere; the graph's output is not "
                "at the end of a single chain of nodes"
            )
        if len(readers) > 1:
            shown = ", ".join(f"{_short(n.name, 30)!r} ({n.op_type})" for n in readers[:3])
            raise ValueError(
                f"{self.path}: tensor {_short(name)!r} feeds {len(readers)} nodes ({shown}); "
                "convlens reads a single chain of layers, not branches"
            )
        node = readers[0]
        if id(node) in self.used:
            raise ValueError(f"{self._where(node)} closes a loop in the graph")
        self.used.add(id(node))
        if not node.input or node.input[0] != name:
            if not (node.op_type == "Add" and list(node.input).count(name) == 1):
                raise ValueError(
                    f"{self._where(node)} reads the previous layer's output as an input other "
                    "than its first; convlens reads a single chain"
                )
        extra = [o for o in node.output[1:] if o and (self.consumers[o] or self._is_output(o))]
        if extra:
            raise ValueError(
                f"{self._where(node)}: its second output {_short(extra[0])!r} is used; "
                "convlens reads one output per node"
            )
        return node

    def _layers(self, node: Any, name: str, shape: tuple[int, ...]) -> tuple[list[nn.Layer], str]:
        """The layers node ``node`` computes, and the name of the tensor after them."""
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        simple = {"Relu": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh}
        out = node.output[0] if node.output else ""
        if not out:
            raise ValueError(f"{self._where(node)} has no output")
        if self.pad is not None and op not in ("Conv", "MaxPool", "AveragePool"):
            raise ValueError(f"{self._where(self.pad[0])} feeds {_short(op)}; {HINTS['Pad']}")
        if op == "Pad":
            self.pad = (node, *self._pad(node, shape))
            return [], out
        if op in simple:
            return [simple[op]()], out
        if op == "Identity":
            return [], out
        if op == "Conv":
            return [self._conv(node, shape)], out
        if op in ("MaxPool", "AveragePool"):
            return [self._pool(node, shape)], out
        if op in ("GlobalAveragePool", "GlobalMaxPool"):
            self._rank(node, shape, 3)
            pool = nn.AvgPool2D if op == "GlobalAveragePool" else nn.MaxPool2D
            return [pool(shape[1:])], out
        if op in ("ReduceMean", "ReduceMax"):
            return self._reduce(node, shape), out
        if op == "Flatten":
            return self._flatten(node, shape), out
        if op == "Reshape":
            return self._reshape(node, shape), out
        if op == "Gemm":
            return [self._gemm(node, shape)], out
        if op == "MatMul":
            return self._matmul(node, shape)
        if op == "Softmax":
            return [self._softmax(node, shape)], out
        if op == "Dropout":
            return [self._dropout(node)], out
        hint = f" ({HINTS[op]})" if op in HINTS else ""
        raise ValueError(f"{self._where(node)} is not supported{hint}; convlens reads {SUPPORTED}")

    def _check_output(self, value: Any, shape: tuple[int, ...]) -> None:
        dims = [
            d.dim_value if d.HasField("dim_value") else None
            for d in value.type.tensor_type.shape.dim
        ]
        if dims and (
            len(dims) != len(shape) + 1
            or any(d is not None and d != s for d, s in zip(dims[1:], shape, strict=False))
        ):
            shown = _shown(value.type.tensor_type.shape)
            raise ValueError(
                f"{self.path}: the graph declares its output {_short(shown)}, but its layers "
                f"give (N, {', '.join(map(str, shape))})"
            )

    # -- operators ----------------------------------------------------------------------------
    def _conv(self, node: Any, shape: tuple[int, ...]) -> nn.Conv2D:
        C, H, W = self._rank(node, shape, 3)
        attributes = self._attributes(node)
        weight = self._weight(node, 1, "weight")
        if weight.ndim != 4:
            raise ValueError(
                f"{self._where(node)}: its weight has shape {list(weight.shape)}; convlens "
                "reads 2-D convolutions, (out, in, kh, kw)"
            )
        group = self._int(node, attributes, "group", 1)
        if group != 1:
            raise ValueError(
                f"{self._where(node)}: grouped convolution (group={group}) is not supported; "
                "convlens convolves every input channel (group 1)"
            )
        M, in_channels, *kernel = (int(v) for v in weight.shape)
        if in_channels != C:
            raise ValueError(
                f"{self._where(node)}: its weight {list(weight.shape)} reads {in_channels} "
                f"channels, the layer before gives {C}"
            )
        if self._ints(node, attributes, "kernel_shape", kernel) != kernel:
            raise ValueError(
                f"{self._where(node)}: kernel_shape does not match the weight {list(weight.shape)}"
            )
        stride = self._ints(node, attributes, "strides", [1, 1], minimum=1)
        dilation = self._ints(node, attributes, "dilations", [1, 1], minimum=1)
        padding = self._pads(node, attributes, (H, W), kernel, stride, dilation)
        padding = self._padded_before(node, attributes, padding, 0.0)
        bias = self._weight(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
        if bias is not None and bias.shape != (M,):
            raise ValueError(
                f"{self._where(node)}: its bias has shape {list(bias.shape)}, expected [{M}]"
            )
        hint = _doc_hint(node.doc_string)
        layer = hinted_conv(hint, C, M, kernel, stride, padding, dilation, bias is not None)
        if layer is None:
            spec = padding_spec(padding)
            layer = nn.Conv2D(C, M, kernel, stride, spec, dilation, bias=bias is not None)
        # the graph holds the kernel that is correlated: in convolution mode, turn it back
        layer.weight.data = np.array(effective_kernel(weight, layer.mode), order="C")
        if bias is not None:
            layer.bias.data = bias.copy()
        return layer

    def _pool(self, node: Any, shape: tuple[int, ...]) -> nn.Layer:
        _, H, W = self._rank(node, shape, 3)
        attributes = self._attributes(node)
        if "kernel_shape" not in attributes:
            raise ValueError(f"{self._where(node)} has no kernel_shape")
        kernel = self._ints(node, attributes, "kernel_shape", None, minimum=1)
        stride = self._ints(node, attributes, "strides", [1, 1], minimum=1)
        if self._ints(node, attributes, "dilations", [1, 1], minimum=1) != [1, 1]:
            raise ValueError(f"{self._where(node)}: dilated pools are not supported")
        padding = self._pads(node, attributes, (H, W), kernel, stride, [1, 1])
        average = node.op_type == "AveragePool"
        if (
            average
            and max(map(max, padding))
            and self._int(node, attributes, "count_include_pad", 0) != 1
        ):
            raise ValueError(
                f"{self._where(node)}: count_include_pad=0 with pads is not supported; convlens "
                "averages over the whole window, padding included (count_include_pad=1)"
            )
        padding = self._padded_before(node, attributes, padding, 0.0 if average else -np.inf)
        if self._int(node, attributes, "ceil_mode", 0):
            for size, k, s, (before, after) in zip((H, W), kernel, stride, padding, strict=True):
                if (size + before + after - k) % s:
                    raise ValueError(
                        f"{self._where(node)}: ceil_mode=1 adds a partial window here, which "
                        "convlens pools do not have (export with ceil_mode=False)"
                    )
        pool = nn.AvgPool2D if average else nn.MaxPool2D
        return hinted_pool(_doc_hint(node.doc_string), pool, kernel, stride, padding)

    def _pad(self, node: Any, shape: tuple[int, ...]) -> tuple[Any, float]:
        """A constant Pad of rows and columns: ``((top, bottom), (left, right))`` and its value."""
        self._rank(node, shape, 3)
        attributes = self._attributes(node)
        mode = attributes.get("mode", b"constant")
        if (mode.decode(errors="replace") if isinstance(mode, bytes) else str(mode)) != "constant":
            raise ValueError(f"{self._where(node)}: mode {_short(mode)!r}; {HINTS['Pad']}")
        if self.opset < 11:
            pads = self._ints(node, attributes, "pads", None, 8, minimum=-(2**20))
            value = self._float(node, attributes, "value", 0.0)
        else:
            inputs = [*node.input, "", "", ""]
            if not inputs[1] or inputs[3]:
                raise ValueError(f"{self._where(node)}: pads for every axis are needed (no axes)")
            pads = [int(v) for v in self._shape_value(inputs[1], self.batch or 1, 0).reshape(-1)]
            value = self._array(inputs[2], node, "value", True) if inputs[2] else np.zeros(1)
            if len(pads) != 8 or value.size != 1:
                raise ValueError(f"{self._where(node)}: pads must be 8 integers and value one")
            value = float(value.reshape(-1)[0])
        if any(pads[k] for k in (0, 1, 4, 5)) or max(map(abs, pads)) > 2**20:
            raise ValueError(f"{self._where(node)}: pads {_short(pads)}; {HINTS['Pad']}")
        return ((pads[2], pads[6]), (pads[3], pads[7])), value

    def _padded_before(
        self, node: Any, attributes: dict[str, Any], padding: Any, fill: float
    ) -> tuple[tuple[int, int], tuple[int, int]]:
        """``padding`` with a Pad node's just before ``node`` added, where the two compose:
        the Pad's value must be ``fill`` wherever it pads, and no side may both crop and pad."""
        if self.pad is None:
            return padding
        pad_node, before, value = self.pad
        self.pad = None
        auto = attributes.get("auto_pad", b"NOTSET")
        if (auto.decode(errors="replace") if isinstance(auto, bytes) else str(auto)) not in (
            "NOTSET", "", "VALID"
        ):  # fmt: skip
            raise ValueError(f"{self._where(node)}: auto_pad after a Pad is not supported")
        composed = compose_padding(before, value, padding, fill)
        if composed is None:
            raise ValueError(
                f"{self._where(pad_node)} pads {[list(b) for b in before]} with {value} before "
                f"{_short(node.op_type)} pads {[list(p) for p in padding]}; {HINTS['Pad']}, "
                "and never crops a side the operator pads"
            )
        return composed

    def _reduce(self, node: Any, shape: tuple[int, ...]) -> list[nn.Layer]:
        """A mean or maximum over rows and columns: a global pool (how the dynamo exporter
        writes ``AdaptiveAvgPool2d(1)``), flattened too unless ``keepdims``."""
        self._rank(node, shape, 3)
        attributes = self._attributes(node)
        axes = attributes.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in self._array(node.input[1], node, "axes", False).reshape(-1)]
        if not isinstance(axes, list) or sorted(a % 4 if -4 <= a < 4 else a for a in axes) != [
            2,
            3,
        ]:
            raise ValueError(
                f"{self._where(node)}: a reduction over axes {_short(axes)} is not supported; "
                "convlens reads one over rows and columns (a global pool)"
            )
        pool = nn.AvgPool2D if node.op_type == "ReduceMean" else nn.MaxPool2D
        keep = self._int(node, attributes, "keepdims", 1)
        return [pool(shape[1:])] if keep else [pool(shape[1:]), nn.Flatten()]

    def _flatten(self, node: Any, shape: tuple[int, ...]) -> list[nn.Layer]:
        axis = self._int(node, self._attributes(node), "axis", 1)
        rank = len(shape) + 1
        if axis not in (1, 1 - rank):
            raise ValueError(
                f"{self._where(node)}: Flatten with axis={axis} is not supported; convlens "
                "flattens each sample (axis=1)"
            )
        return [nn.Flatten()] if len(shape) > 1 else []

    def _reshape(self, node: Any, shape: tuple[int, ...]) -> list[nn.Layer]:
        if len(node.input) < 2 or not node.input[1]:
            raise ValueError(f"{self._where(node)} has no target shape")
        allowzero = self._int(node, self._attributes(node), "allowzero", 0)
        flat = len(shape) > 1
        for batch in [self.batch] if self.batch else [2, 3]:
            target = [int(v) for v in self._shape_value(node.input[1], batch, 0).reshape(-1)]
            dims = [batch, *shape]
            if not allowzero:
                target = [dims[i] if v == 0 and i < len(dims) else v for i, v in enumerate(target)]
            if target.count(-1) == 1:
                known = prod(v for v in target if v != -1)
                target[target.index(-1)] = prod(dims) // known if known > 0 else -1
            if target != [batch, prod(shape)]:
                raise ValueError(
                    f"{self._where(node)}: a Reshape to {_short(target)} for input "
                    f"{_short(dims)} is not supported; convlens reads a Reshape only where it "
                    "flattens each sample to (N, C·H·W)"
                )
        return [nn.Flatten()] if flat else []

    def _gemm(self, node: Any, shape: tuple[int, ...]) -> nn.Dense:
        (features,) = self._rank(node, shape, 1)
        attributes = self._attributes(node)
        if self._int(node, attributes, "transA", 0):
            raise ValueError(f"{self._where(node)}: transA=1 is not supported")
        weight = self._weight(node, 1, "weight")
        if weight.ndim != 2:
            raise ValueError(
                f"{self._where(node)}: its weight has shape {list(weight.shape)}, expected 2-D"
            )
        if not self._int(node, attributes, "transB", 0):
            weight = weight.T  # (in, out) -> (out, in)
        alpha = self._float(node, attributes, "alpha", 1.0)
        beta = self._float(node, attributes, "beta", 1.0)
        bias = self._weight(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
        if alpha != 1.0:
            weight = weight * np.float32(alpha)
        if bias is not None and beta != 1.0:
            bias = bias * np.float32(beta)
        return self._dense(node, features, weight, bias)

    def _matmul(self, node: Any, shape: tuple[int, ...]) -> tuple[list[nn.Layer], str]:
        (features,) = self._rank(node, shape, 1)
        weight = self._weight(node, 1, "weight")
        if weight.ndim != 2:
            raise ValueError(
                f"{self._where(node)}: its weight has shape {list(weight.shape)}, expected 2-D"
            )
        out = node.output[0]
        readers = [n for n in self.consumers[out] if n.op_type != "Shape"]
        add = readers[0] if len(readers) == 1 and readers[0].op_type == "Add" else None
        if add is None or self._is_output(out) or len(add.input) != 2:
            return [self._dense(node, features, weight.T, None)], out
        self.used.add(id(add))
        other = add.input[1] if add.input[0] == out else add.input[0]
        bias = self._array(other, add, "bias", float_only=True)
        columns = weight.shape[1]
        if bias.size == 1 or bias.shape in ((columns,), (1, columns)):
            bias = np.broadcast_to(bias.reshape(-1), (columns,)).copy()
        else:
            raise ValueError(
                f"{self._where(add)}: its bias has shape {list(bias.shape)}, expected [{columns}]"
            )
        if not add.output or not add.output[0]:
            raise ValueError(f"{self._where(add)} has no output")
        return [self._dense(node, features, weight.T, bias)], add.output[0]

    def _dense(
        self, node: Any, features: int, weight: np.ndarray, bias: np.ndarray | None
    ) -> nn.Dense:
        out_features, in_features = weight.shape
        if in_features != features:
            raise ValueError(
                f"{self._where(node)}: its weight reads {in_features} features, the layer "
                f"before gives {features}"
            )
        if bias is not None:
            if bias.size == 1 and out_features != 1:
                bias = np.full(out_features, bias.reshape(-1)[0], np.float32)
            bias = bias.reshape(-1) if bias.shape == (1, out_features) else bias
            if bias.shape != (out_features,):
                raise ValueError(
                    f"{self._where(node)}: its bias has shape {list(bias.shape)}, "
                    f"expected [{out_features}]"
                )
        layer = nn.Dense(in_features, out_features, bias=bias is not None)
        layer.weight.data = np.array(weight, order="C")
        if bias is not None:
            layer.bias.data = np.array(bias, order="C")
        return layer

    def _softmax(self, node: Any, shape: tuple[int, ...]) -> nn.Softmax:
        rank = len(shape) + 1
        axis = self._int(node, self._attributes(node), "axis", -1 if self.opset >= 13 else 1)
        if not -rank <= axis < rank or axis % rank != rank - 1:
            raise ValueError(
                f"{self._where(node)}: Softmax over axis {axis} of a rank-{rank} tensor is not "
                "supported; convlens's Softmax is over the last axis"
            )
        return nn.Softmax()

    def _dropout(self, node: Any) -> nn.Dropout:
        attributes = self._attributes(node)
        ratio = self._float(node, attributes, "ratio", 0.5)
        if len(node.input) > 1 and node.input[1]:
            value = self._array(node.input[1], node, "ratio", float_only=False)
            if value.size != 1:
                raise ValueError(f"{self._where(node)}: its ratio must be one number")
            ratio = float(value.reshape(-1)[0])
        if len(node.input) > 2 and node.input[2]:
            mode = self._array(node.input[2], node, "training_mode", float_only=False)
            if mode.size != 1 or mode.reshape(-1)[0]:
                raise ValueError(
                    f"{self._where(node)}: training_mode must be a constant false; convlens "
                    "reads models for inference"
                )
        if not 0 <= ratio <= 1:
            raise ValueError(f"{self._where(node)}: ratio {ratio} is not between 0 and 1")
        return nn.Dropout(ratio)

    # -- attributes, shapes and weights -------------------------------------------------------
    def _where(self, node: Any) -> str:
        """``"file: node 'name' (Op)"``: where a message is about."""
        name = node.name or (node.output[0] if node.output else "") or "?"
        return f"{self.path}: node {_short(name, 40)!r} ({_short(node.op_type, 40)})"

    def _is_output(self, name: str) -> bool:
        return any(o.name == name for o in self.graph.output)

    def _rank(self, node: Any, shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
        if len(shape) != rank:
            need = "an (N, C, H, W) input" if rank == 3 else "a flattened (N, features) input"
            raise ValueError(
                f"{self._where(node)} needs {need}, but the layer before gives "
                f"(N, {', '.join(map(str, shape))})"
            )
        return shape

    def _attributes(self, node: Any) -> dict[str, Any]:
        from onnx import helper

        found = {}
        for attribute in node.attribute:
            try:
                found[attribute.name] = helper.get_attribute_value(attribute)
            except Exception as err:  # an attribute without a value, or of an unknown type
                raise ValueError(
                    f"{self._where(node)}: attribute {_short(attribute.name)!r} is malformed "
                    f"({_short(err)})"
                ) from None
        return found

    def _int(self, node: Any, attributes: dict[str, Any], name: str, default: int) -> int:
        value = attributes.get(name, default)
        if not isinstance(value, int) or abs(value) > 2**31:
            raise ValueError(
                f"{self._where(node)}: attribute {name} must be an integer, got {_short(value)}"
            )
        return value

    def _float(self, node: Any, attributes: dict[str, Any], name: str, default: float) -> float:
        value = attributes.get(name, default)
        if not isinstance(value, float) or not np.isfinite(value):
            raise ValueError(
                f"{self._where(node)}: attribute {name} must be a number, got {_short(value)}"
            )
        return value

    def _ints(
        self, node: Any, attributes: dict[str, Any], name: str, default: list[int] | None,
        length: int = 2, minimum: int = 0,
    ) -> list[int]:  # fmt: skip
        value = attributes.get(name, default)
        if not (
            isinstance(value, list)
            and len(value) == length
            and all(isinstance(v, int) and minimum <= v <= 2**20 for v in value)
        ):
            raise ValueError(
                f"{self._where(node)}: attribute {name} must be {length} integers from {minimum} "
                f"to {2**20}, got {_short(value)}"
            )
        return value

    def _pads(
        self, node: Any, attributes: dict[str, Any], size: tuple[int, int], kernel: list[int],
        stride: list[int], dilation: list[int],
    ) -> tuple[tuple[int, int], tuple[int, int]]:  # fmt: skip
        """``((top, bottom), (left, right))`` from ``pads`` or ``auto_pad``."""
        auto = attributes.get("auto_pad", b"NOTSET")
        auto = auto.decode(errors="replace") if isinstance(auto, bytes) else str(auto)
        if auto in ("NOTSET", ""):
            top, left, bottom, right = self._ints(node, attributes, "pads", [0, 0, 0, 0], 4)
            return (top, bottom), (left, right)
        if auto == "VALID":
            return (0, 0), (0, 0)
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            raise ValueError(f"{self._where(node)}: auto_pad {_short(auto)!r} is not supported")
        sides = []
        for n, k, s, d in zip(size, kernel, stride, dilation, strict=True):
            total = max((ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
            small, large = total // 2, total - total // 2
            sides.append((small, large) if auto == "SAME_UPPER" else (large, small))
        return sides[0], sides[1]

    def _weight(self, node: Any, index: int, what: str) -> np.ndarray:
        if len(node.input) <= index or not node.input[index]:
            raise ValueError(f"{self._where(node)} has no {what}")
        return self._array(node.input[index], node, what, float_only=True)

    def _array(self, name: str, node: Any, what: str, float_only: bool) -> np.ndarray:
        """The constant tensor ``name`` (an initializer or a Constant node's value)."""
        if name not in self.arrays:
            tensor = self.initializers.get(name)
            producer = self.producer.get(name)
            if tensor is None and producer is not None and producer.op_type == "Constant":
                self.used.add(id(producer))
                where = self._where(producer)
                tensor = _constant_value(producer, self._attributes(producer), where)
            if tensor is None:
                raise ValueError(
                    f"{self._where(node)}: its {what} {_short(name)!r} is computed in the "
                    "graph; convlens reads weights stored as constants"
                )
            where = f"{self._where(node)}: its {what}"
            self.arrays[name] = _tensor_array(tensor, self.path, where, self._budget)
        array = self.arrays[name]  # shared by the nodes that read it: layers take copies
        if float_only and array.dtype != np.float32:
            raise ValueError(
                f"{self._where(node)}: its {what} is {array.dtype}; convlens reads float32 weights"
            )
        return array

    def _budget(self, count: int, where: str) -> None:
        self.parameter_values += count
        if self.parameter_values > MAX_PARAMETER_VALUES:
            raise ValueError(
                f"{where}: the graph's constants hold more than {MAX_PARAMETER_VALUES:,} values"
            )

    def _shape_value(self, name: str, batch: int, depth: int) -> np.ndarray:
        """A small integer tensor computed from constants and the chain's shapes: the target
        of a flattening Reshape or the pads of a Pad, as exporters compute them (evaluated
        here, never run)."""
        if depth > MAX_SHAPE_DEPTH:
            raise ValueError(f"{self.path}: the shape computation for {_short(name)!r} is too deep")
        if name in self.initializers or (
            name in self.producer and self.producer[name].op_type == "Constant"
        ):
            node = self.producer.get(name)
            value = self._array(name, node if node is not None else _Named(name), "shape", False)
            return self._small(value, name)
        node = self.producer.get(name)
        if node is None:
            raise ValueError(f"{self.path}: tensor {_short(name)!r} is neither computed nor given")
        self.used.add(id(node))
        attributes = self._attributes(node)
        inputs = [i for i in node.input]

        def arg(k: int) -> np.ndarray:
            if len(inputs) <= k or not inputs[k]:
                raise ValueError(f"{self._where(node)} lacks input {k}")
            return self._shape_value(inputs[k], batch, depth + 1)

        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        try:
            if op == "Shape":
                if not inputs or inputs[0] not in self.shapes:
                    raise ValueError(f"{self._where(node)} reads a tensor that is not on the chain")
                full = np.array([batch, *self.shapes[inputs[0]]], np.int64)
                start, end = attributes.get("start", 0), attributes.get("end", len(full))
                return self._small(full[int(start) : int(end)], name)
            if op == "Identity":
                return arg(0)
            if op == "Cast":
                return self._small(arg(0).astype(np.int64), name)
            if op == "Gather":
                data, indices = arg(0), arg(1)
                if data.ndim != 1 or int(attributes.get("axis", 0)) not in (0, -1):
                    raise ValueError(f"{self._where(node)}: only 1-D gathers are evaluated")
                if np.any((indices < -len(data)) | (indices >= len(data))):
                    raise ValueError(f"{self._where(node)}: index out of range")
                return self._small(data[indices], name)
            if op in ("Unsqueeze", "Squeeze"):
                data = arg(0)
                axes = attributes.get("axes")
                if axes is None and len(inputs) > 1 and inputs[1]:
                    axes = [int(v) for v in arg(1).reshape(-1)]
                if op == "Unsqueeze":
                    if axes is None or len(axes) + data.ndim > 4:
                        raise ValueError(f"{self._where(node)}: malformed axes")
                    return self._small(np.expand_dims(data, tuple(axes)), name)
                return self._small(np.squeeze(data, None if axes is None else tuple(axes)), name)
            if op == "Concat":
                parts = [arg(k) for k in range(len(inputs))]
                return self._small(np.concatenate(parts, int(attributes.get("axis", 0))), name)
            if op == "Slice":
                data = arg(0)
                if len(inputs) > 1:
                    starts, ends = arg(1), arg(2)
                    axes = arg(3) if len(inputs) > 3 and inputs[3] else None
                    steps = arg(4) if len(inputs) > 4 and inputs[4] else None
                else:
                    starts = np.array(attributes.get("starts", [0]))
                    ends = np.array(attributes.get("ends", [len(data)]))
                    axes, steps = attributes.get("axes"), None
                starts, ends = starts.reshape(-1), ends.reshape(-1)
                axes = range(len(starts)) if axes is None else np.reshape(axes, -1)
                steps = np.ones(len(starts), np.int64) if steps is None else steps.reshape(-1)
                cut = [slice(None)] * data.ndim
                for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
                    if step == 0:
                        raise ValueError(f"{self._where(node)}: step 0")
                    start, end, step = (
                        int(np.clip(v, -(2**62), 2**62)) for v in (start, end, step)
                    )
                    cut[int(axis)] = slice(start, end, step)
                return self._small(data[tuple(cut)], name)
            if op == "ConstantOfShape":
                shape = [int(v) for v in arg(0).reshape(-1)]
                if any(v < 0 for v in shape) or prod(shape) > MAX_SHAPE_VALUES:
                    raise ValueError(f"{self._where(node)}: shape {_short(shape)}")
                fill = attributes.get("value")
                if fill is None:
                    value = np.zeros(1, np.float32)
                else:
                    value = _tensor_array(fill, self.path, self._where(node), self._budget)
                return self._small(np.full(shape, value.reshape(-1)[0], value.dtype), name)
            if op == "Reshape":
                data, target = arg(0), [int(v) for v in arg(1).reshape(-1)]
                if not int(attributes.get("allowzero", 0)):
                    target = [data.shape[i] if v == 0 else v for i, v in enumerate(target)]
                return self._small(data.reshape(target), name)
            if op == "Transpose":
                data = arg(0)
                perm = attributes.get("perm", list(range(data.ndim))[::-1])
                return self._small(data.transpose(perm), name)
        except (ValueError, TypeError, IndexError, np.exceptions.AxisError) as err:
            if isinstance(err, ValueError) and str(err).startswith(str(self.path)):
                raise
            raise ValueError(f"{self._where(node)}: cannot evaluate it ({_short(err)})") from None
        raise ValueError(
            f"{self._where(node)} computes a Reshape's target shape or a Pad's pads; convlens "
            "evaluates only Shape, Gather, Unsqueeze, Squeeze, Concat, Slice, Cast, Reshape, "
            "Transpose, ConstantOfShape and constants there"
        )

    def _small(self, value: np.ndarray, name: str) -> np.ndarray:
        if value.size > MAX_SHAPE_VALUES or value.ndim > 2 or value.dtype.kind not in "iu":
            raise ValueError(
                f"{self.path}: tensor {_short(name)!r} in a shape computation is not a short "
                "list of integers"
            )
        return value.astype(np.int64)


class _Named:
    """Stands in for a node in messages about an initializer nobody produces."""

    op_type = "initializer"

    def __init__(self, name: str) -> None:
        self.name, self.output = name, [name]


def _constant_value(node: Any, attributes: dict[str, Any], where: str) -> Any:
    """A Constant node's value as a TensorProto."""
    from onnx import helper

    if "value" in attributes:
        return attributes["value"]
    for key, kind in (("value_float", 1), ("value_floats", 1), ("value_int", 7), ("value_ints", 7)):
        if key in attributes:
            value = attributes[key]
            values = value if isinstance(value, list) else [value]
            if len(values) > MAX_SHAPE_VALUES:
                raise ValueError(f"{where}: too long a constant list")
            return helper.make_tensor(
                node.output[0], kind, [] if key[-1] != "s" else [len(values)], values
            )
    raise ValueError(f"{where}: a Constant without a value convlens reads")


def _tensor_array(
    tensor: Any, path: Path, where: str, budget: Callable[[int, str], None]
) -> np.ndarray:
    """``tensor``'s values; its size is checked against the bytes that hold it first."""
    if tensor.data_type not in TENSOR_TYPES:
        raise ValueError(
            f"{where} has element type {tensor.data_type}; convlens reads float32 weights "
            "(and integer shapes)"
        )
    dtype, field = TENSOR_TYPES[tensor.data_type]
    dims = list(tensor.dims)
    if any(d < 0 for d in dims) or len(dims) > 8:
        raise ValueError(f"{where} has a malformed shape {_short(dims)}")
    count = prod(dims)
    if count > MAX_PARAMETER_VALUES:
        raise ValueError(f"{where} {_short(dims)} holds more than {MAX_PARAMETER_VALUES:,} values")
    budget(count, where)
    size = count * np.dtype(dtype).itemsize
    if tensor.data_location == 1:  # EXTERNAL
        data = _external_bytes(tensor, path, where, size)
    elif tensor.HasField("raw_data"):
        data = tensor.raw_data
    else:
        values = getattr(tensor, field)
        if len(values) != count:
            raise ValueError(f"{where} {_short(dims)} has {len(values)} values, expected {count:,}")
        return np.fromiter(values, dtype, count).reshape(dims)
    if len(data) != size:
        raise ValueError(f"{where} {_short(dims)} has {len(data):,} bytes, expected {size:,}")
    return np.frombuffer(data, dtype, count).reshape(dims).copy()


def _external_bytes(tensor: Any, path: Path, where: str, size: int) -> bytes:
    """The bytes of an external-data tensor, from a file in the model's own folder."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    folder = path.resolve().parent
    try:
        target = (folder / location).resolve()
        beside = target.parent == folder and target.is_file() and not Path(location).is_absolute()
    except (ValueError, OSError):  # a NUL byte, a name too long
        beside = False
    if not location or not beside:
        raise ValueError(
            f"{where} is stored in {_short(location)!r}, which is not a file beside the model"
        )
    try:
        offset = int(info.get("offset", 0))
        length = int(info.get("length", size))
    except ValueError:
        raise ValueError(f"{where}: malformed external data offset or length") from None
    if offset < 0 or length != size or offset + size > target.stat().st_size:
        raise ValueError(
            f"{where}: external data {_short(location)!r} does not hold its {size:,} bytes"
        )
    with open(target, "rb") as file:
        file.seek(offset)
        return file.read(size)


def _doc_hint(doc: str) -> Any:
    """export_onnx's hint in a node's ``doc_string``, or None."""
    if not doc or len(doc) > 4096:
        return None
    try:
        return json.loads(doc).get("convlens")
    except (ValueError, AttributeError, RecursionError):
        return None
