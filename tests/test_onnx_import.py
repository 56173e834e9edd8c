"""load_onnx: PyTorch's exports against onnxruntime, round trips, refusals and a fuzz.

The PyTorch models are those of test_from_torch, exported with both of PyTorch's exporters
(TorchScript's, and the dynamo one where onnxscript is installed): their graphs differ
(``auto_pad``, ``Flatten`` or a ``Reshape`` to ``[-1, K]``, a computed shape for ``view``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_files import every_layer_model
from test_from_torch import TORCH_MODELS, make
from test_layers import random_conv, random_pool

import convlens.nn as nn
from convlens.interop import export_onnx, from_torch, load_onnx, load_tfjs
from convlens.models import mnist_net, tiny_vgg

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "cnn-explainer"
EXPORTERS = ["torchscript", "dynamo"]


def torch_export(module, shape, path: Path, exporter: str = "torchscript") -> Path:
    """``torch.onnx.export`` as a user calls it, with a dynamic batch."""
    x = torch.zeros(2, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            pytest.importorskip("onnxscript")
            torch.onnx.export(
                module, (x,), path, dynamo=True, input_names=["image"],
                dynamic_shapes=({0: "batch"},), verbose=False,
            )  # fmt: skip
        else:
            torch.onnx.export(
                module, (x,), path, dynamo=False, input_names=["image"],
                dynamic_axes={"image": {0: "batch"}},
            )  # fmt: skip
    return path


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", TORCH_MODELS)
def test_pytorch_exports_equal_onnxruntime(name, exporter, tmp_path):
    module, shape = make(name, torch.float32)
    path = torch_export(module, shape, tmp_path / "m.onnx", exporter)
    model = load_onnx(path)
    assert model.input_shape == shape and not model.training
    x = np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32)
    y = model.forward(x)
    np.testing.assert_allclose(y, run_onnx(path, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, module(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    reference = from_torch(module, shape)  # the same layers, whichever way they came
    assert [type(a) for a in model.layers] == [
        type(b) for b in reference.layers if not isinstance(b, nn.Dropout)
    ]


def test_even_kernel_same_padding_with_dilation(tmp_path):
    """TorchScript's exporter writes this as ``auto_pad=SAME_UPPER``, which onnxruntime
    cannot run with a dilation: compared with PyTorch itself."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 4, padding="same", dilation=2)).eval()
    path = torch_export(module, (2, 9, 10), tmp_path / "m.onnx")
    graph = onnx.load(str(path)).graph
    assert helper.get_attribute_value(graph.node[0].attribute[0]) == b"SAME_UPPER"
    model = load_onnx(path)
    x = np.random.default_rng(0).standard_normal((2, 2, 9, 10)).astype(np.float32)
    expected = module(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-5, atol=1e-5)


def test_view_flatten_is_read_from_its_computed_shape(tmp_path):
    """``x.view(x.size(0), -1)`` exports as Shape → Gather → Unsqueeze → Concat → Reshape."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(1, 2, 3), torch.nn.Linear(2 * 6 * 6, 3)

        def forward(self, x):
            x = torch.relu(self.conv(x))
            return self.fc(x.view(x.size(0), -1))

    net = Net().eval()
    path = torch_export(net, (1, 8, 8), tmp_path / "m.onnx")
    assert "Gather" in {n.op_type for n in onnx.load(str(path)).graph.node}
    model = load_onnx(path)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "ReLU", "Flatten", "Dense",
    ]  # fmt: skip
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(model.forward(x), run_onnx(path, x), rtol=1e-5, atol=1e-5)


def test_matmul_and_add_make_a_dense_layer(tmp_path):
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((12, 5)).astype(np.float32), rng.standard_normal(5)
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "w"], ["m"]),
        helper.make_node("Add", ["b", "m"], ["y"]),
    ]
    path = save_graph(tmp_path, nodes, [3, 2, 2], [5], w=w, b=b.astype(np.float32))
    model = load_onnx(path)
    assert [type(layer).__name__ for layer in model.layers] == ["Flatten", "Dense"]
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(model.forward(x), run_onnx(path, x), rtol=1e-5, atol=1e-6)


# -- convlens → ONNX → convlens ---------------------------------------------------------------
def assert_same_model(loaded: nn.Sequential, model: nn.Sequential, shape) -> None:
    assert loaded.config() == model.config()
    assert loaded.input_shape == tuple(shape)
    for (name, p), (_, q) in zip(model.named_parameters(), loaded.named_parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), model.eval().forward(x))


@pytest.mark.parametrize(
    "make_model", [every_layer_model, tiny_vgg, mnist_net], ids=["every-layer", "tiny", "mnist"]
)
def test_convlens_round_trip_is_bit_exact(make_model, tmp_path):
    model = make_model().eval()
    shape = model.input_shape or (3, 15, 8)
    model.classes = [f"class {k}" for k in range(model.output_shape(shape)[0])]
    export_onnx(model, tmp_path / "m.onnx", shape)
    loaded = load_onnx(tmp_path / "m.onnx")
    assert_same_model(loaded, model, shape)
    assert loaded.classes == model.classes and loaded.metadata["source"] == "onnx"


@pytest.mark.parametrize("seed", range(12))
def test_round_trip_of_random_convolutions_and_pools(seed, tmp_path):
    """Every padding kind, stride, dilation, anchor and both modes come back as written."""
    rng = np.random.default_rng(seed)
    conv, x = random_conv(rng)
    assert_same_model(roundtrip(conv, x.shape[1:], tmp_path), nn.Sequential(conv), x.shape[1:])
    pool, x = random_pool(rng, nn.MaxPool2D if seed % 2 else nn.AvgPool2D)
    assert_same_model(roundtrip(pool, x.shape[1:], tmp_path), nn.Sequential(pool), x.shape[1:])


def roundtrip(layer: nn.Layer, shape, tmp_path: Path) -> nn.Sequential:
    export_onnx(nn.Sequential(layer), tmp_path / "layer.onnx", shape)
    return load_onnx(tmp_path / "layer.onnx")


def test_a_stale_hint_changes_nothing(tmp_path):
    """A Conv node's convlens hint is used only where it describes the node's padding."""
    model = nn.Sequential(nn.Conv2D(1, 2, 3, padding="same", mode="convolution"))
    export_onnx(model, tmp_path / "m.onnx", (1, 6, 6))
    proto = onnx.load(str(tmp_path / "m.onnx"))
    pads = next(a for a in proto.graph.node[0].attribute if a.name == "pads")
    pads.ints[:] = [0, 0, 0, 0]
    for dim in proto.graph.output[0].type.tensor_type.shape.dim[2:]:
        dim.dim_value = 4  # the output the graph now declares: 6 − 3 + 1
    proto.graph.node[0].doc_string = proto.graph.node[0].doc_string.replace("same", "full")
    onnx.save(proto, str(tmp_path / "m.onnx"))
    loaded = load_onnx(tmp_path / "m.onnx")
    conv = loaded.layers[0]
    assert conv.mode == "correlation" and conv.padding2d == ((0, 0), (0, 0))
    x = np.random.default_rng(0).standard_normal((1, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(loaded.forward(x), run_onnx(tmp_path / "m.onnx", x), atol=1e-6)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/cnn-explainer is absent")
def test_cnn_explainer_through_tfjs_and_onnx_is_bit_exact(tmp_path):
    from test_tfjs import CLASSES

    from convlens.data import load_image

    model = load_tfjs(SHARED / "model.json", CLASSES)
    export_onnx(model, tmp_path / "tiny_vgg.onnx")
    loaded = load_onnx(tmp_path / "tiny_vgg.onnx")
    assert_same_model(loaded, model, (3, 64, 64))
    assert loaded.classes == CLASSES
    x = load_image(SHARED / "img" / "espresso_1.jpeg", (3, 64, 64))[None]
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    assert CLASSES[int(np.argmax(loaded.forward(x)))] == "espresso"


# -- refusals ---------------------------------------------------------------------------------
def save_graph(
    tmp_path: Path, nodes, input_dims, output_dims, opset: int = 17, inputs=None, **weights
) -> Path:
    """A hand-written graph with input ``x`` (batch, *input_dims) and output ``y``."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *(input_dims or [])])
    y_dims = None if output_dims is None else ["N", *output_dims]
    graph = helper.make_graph(
        nodes,
        "test",
        inputs or [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_dims)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in weights.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / "graph.onnx"
    onnx.save(proto, str(path))
    return path


W = np.ones((2, 1, 3, 3), np.float32)
F32 = TensorProto.FLOAT
REFUSED = {
    "batchnorm": (
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
            helper.make_node("BatchNormalization", ["c", "s", "b", "s", "s"], ["y"], name="bn"),
        ],
        {"w": W, "s": np.ones(2, np.float32), "b": np.zeros(2, np.float32)},
        "node 'bn' (BatchNormalization) is not supported (export in eval mode",
    ),
    "grouped": (
        [helper.make_node("Conv", ["x", "w"], ["y"], name="g", group=2)],
        {"w": np.ones((2, 1, 3, 3), np.float32)},
        "node 'g' (Conv): grouped convolution (group=2)",
    ),
    "branch": (
        [
            helper.make_node("Relu", ["x"], ["a"], name="r"),
            helper.make_node("Sigmoid", ["a"], ["b"], name="s"),
            helper.make_node("Add", ["a", "b"], ["y"], name="residual"),
        ],
        {},
        "feeds 2 nodes ('s' (Sigmoid), 'residual' (Add))",
    ),
    "ceil-mode": (
        [
            helper.make_node(
                "MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1
            )
        ],
        {},
        "node 'p' (MaxPool): ceil_mode=1 adds a partial window",
    ),
    "exclude-pad": (
        [
            helper.make_node(
                "AveragePool", ["x"], ["y"], name="p", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
            )
        ],
        {},
        "count_include_pad=0 with pads is not supported",
    ),
    "pad-before-relu": (
        [
            helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
            helper.make_node("Relu", ["p"], ["y"], name="r"),
        ],
        {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1])},
        "node 'pad' (Pad) feeds Relu; convlens reads a constant Pad",
    ),
    "zeros-before-max-pool": (
        [
            helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
            helper.make_node("MaxPool", ["p"], ["y"], name="m", kernel_shape=[2, 2]),
        ],
        {"pads": np.array([0, 0, 1, 0, 0, 0, 0, 0])},
        "node 'pad' (Pad) pads [[1, 0], [0, 0]] with 0.0 before MaxPool",
    ),
    "pads-of-a-huge-computed-tensor": (
        [
            helper.make_node("ConstantOfShape", ["n"], ["zeros"], name="cos"),
            helper.make_node("Pad", ["x", "zeros"], ["p"], name="pad"),
            helper.make_node("Relu", ["p"], ["y"], name="r"),
        ],
        {"n": np.array([10**9])},
        "node 'cos' (ConstantOfShape): shape [1000000000]",
    ),
    "pads-not-integers": (
        [
            helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
            helper.make_node("Conv", ["p", "w"], ["y"], name="c"),
        ],
        {"pads": np.zeros(8, np.float32), "w": W},
        "'pads' in a shape computation is not a short list of integers",
    ),
    "softmax-channels": (
        [helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=1)],
        {},
        "node 'sm' (Softmax): Softmax over axis 1",
    ),
    "transpose": (
        [helper.make_node("Transpose", ["x"], ["y"], name="t", perm=[0, 2, 3, 1])],
        {},
        "node 't' (Transpose) is not supported (convlens is channels-first",
    ),
    "other-domain": (
        [helper.make_node("FusedConv", ["x", "w"], ["y"], name="f", domain="com.microsoft")],
        {"w": W},
        "node 'f' (FusedConv) is not supported",
    ),
    "reshape-not-flat": (
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")],
        {"shape": np.array([-1, 1, 49, 1])},
        "node 'r' (Reshape): a Reshape to [2, 1, 49, 1]",
    ),
    "computed-weight": (
        [
            helper.make_node("Relu", ["w"], ["w2"], name="weights"),
            helper.make_node("Conv", ["x", "w2"], ["y"], name="c"),
        ],
        {"w": W},
        "node 'c' (Conv): its weight 'w2' is computed in the graph",
    ),
    "dangling": (
        [
            helper.make_node("Relu", ["x"], ["y"], name="r"),
            helper.make_node("Sigmoid", ["w"], ["z"], name="lonely"),
        ],
        {"w": W},
        "node 'lonely' (Sigmoid) is not on the single chain",
    ),
    "double-weights": (
        [helper.make_node("Conv", ["x", "w"], ["y"], name="c")],
        {"w": np.ones((2, 1, 3, 3))},
        "its weight is float64; convlens reads float32 weights",
    ),
    "dense-on-image": (
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")],
        {"w": np.ones((49, 2), np.float32)},
        "node 'fc' (Gemm) needs a flattened (N, features) input",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_unsupported_graphs_are_refused_in_one_line(case, tmp_path):
    nodes, weights, expected = REFUSED[case]
    path = save_graph(tmp_path, nodes, [1, 7, 7], None, **weights)
    with pytest.raises(ValueError) as caught:
        load_onnx(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and expected in message, message


def test_an_open_image_size_is_given_by_input_shape(tmp_path):
    """A graph exported with dynamic height and width reads at the size the caller gives,
    which must agree with every size the graph fixes."""
    x = helper.make_tensor_value_info("x", F32, ["N", 1, "H", "W"])
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    path = save_graph(tmp_path, nodes, None, None, inputs=[x])
    assert load_onnx(path, input_shape=(1, 7, 9)).input_shape == (1, 7, 9)
    for shape, expected in [
        ((2, 7, 9), "gives C = 2, but the graph's input ['N', 1, 'H', 'W'] fixes it at 1"),
        ((1, 0, 9), "input_shape must be (C, H, W), three positive ints"),
        ((1, 7), "input_shape must be (C, H, W)"),
        ("abc", "input_shape must be (C, H, W)"),
    ]:
        with pytest.raises(ValueError, match=re.escape(expected)):
            load_onnx(path, input_shape=shape)


def test_pytorch_export_with_dynamic_image_size(tmp_path):
    module, shape = make("nested-global-pool", torch.float32)  # a global pool: any size fits
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.zeros(2, *shape),), path, dynamo=False, input_names=["image"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}},
        )  # fmt: skip
    with pytest.raises(ValueError, match="sizes left open"):
        load_onnx(path)
    for size in [(3, 13, 13), (3, 20, 17)]:
        model = load_onnx(path, input_shape=size)
        x = np.random.default_rng(1).standard_normal((2, *size)).astype(np.float32)
        np.testing.assert_allclose(model.forward(x), run_onnx(path, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ([helper.make_tensor_value_info("x", F32, ["N", 1, "H", "W"])], "input_shape=(C, H, W)"),
        ([helper.make_tensor_value_info("x", F32, ["N", 7, 7])], "(N, C, H, W)"),
        ([helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 1, 7, 7])], "float32"),
        ([helper.make_tensor_value_info(n, F32, ["N", 1, 7, 7]) for n in "xz"], "2 inputs"),
    ],
)
def test_inputs_convlens_cannot_take_are_refused(inputs, expected, tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    path = save_graph(tmp_path, nodes, None, None, inputs=inputs)
    with pytest.raises(ValueError, match="input") as caught:
        load_onnx(path)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_output_shape_and_classes_are_checked(tmp_path):
    nodes = [helper.make_node("Flatten", ["x"], ["y"])]
    with pytest.raises(ValueError, match=r"declares its output \['N', 5\]"):
        load_onnx(save_graph(tmp_path, nodes, [1, 7, 7], [5]))
    path = save_graph(tmp_path, nodes, [1, 2, 2], [4])
    assert load_onnx(path, classes=list("abcd")).classes == list("abcd")
    with pytest.raises(ValueError, match="3 class names given, the model outputs"):
        load_onnx(path, classes=list("abc"))


def test_external_data_is_read_only_beside_the_model(tmp_path):
    model = mnist_net()
    export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.save(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.data", size_threshold=0)  # fmt: skip
    x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(load_onnx(tmp_path / "ext.onnx").forward(x), model.forward(x))
    outside = onnx.load(str(tmp_path / "ext.onnx"), load_external_data=False)
    for tensor in outside.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../ext.data"
    onnx.save(outside, str(tmp_path / "outside.onnx"))
    with pytest.raises(ValueError, match="not a file beside the model"):
        load_onnx(tmp_path / "outside.onnx")


def test_not_onnx_and_missing_files(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x00\xff" * 100)
    with pytest.raises(ValueError, match="not an ONNX model"):
        load_onnx(tmp_path / "junk.onnx")
    with pytest.raises(FileNotFoundError):
        load_onnx(tmp_path / "absent.onnx")


# -- fuzz -------------------------------------------------------------------------------------
FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def onnx_bytes(tmp_path_factory) -> bytes:
    """A small exported model: Conv, pools, Flatten, Dropout, Gemm, Softmax, class names."""
    nn.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2D(1, 2, 3, padding="same"), nn.ReLU(), nn.MaxPool2D(2), nn.AvgPool2D(2, 1, 1),
        nn.Flatten(), nn.Dropout(0.1), nn.Dense(2 * 5 * 5, 3), nn.Softmax(),
    )  # fmt: skip
    model.classes = ["a", "b", "c"]
    path = tmp_path_factory.mktemp("fuzz") / "model.onnx"
    export_onnx(model, path, (1, 8, 8))
    return path.read_bytes()


def outcome(path: Path) -> None:
    """One line of ValueError, or a model that runs on its own input shape."""
    try:
        model = load_onnx(path)
    except ValueError as err:
        assert "\n" not in str(err) and str(err), repr(err)
        return
    shape = model.input_shape
    if np.prod(shape) <= 4096 and sum(p.size for p in model.parameters()) <= 10**5:
        y = model.forward(np.zeros((1, *shape), np.float32))
        assert y.shape[0] == 1


@FUZZ
@given(data=st.data())
def test_truncated_and_altered_bytes_give_one_line(onnx_bytes, tmp_path, data):
    content = bytearray(onnx_bytes)
    if data.draw(st.booleans(), "truncate"):
        content = content[: data.draw(st.integers(0, len(content) - 1), "length")]
    for _ in range(data.draw(st.integers(0, 6), "flips")):
        if content:
            at = data.draw(st.integers(0, len(content) - 1), "at")
            content[at] = data.draw(st.integers(0, 255), "byte")
    path = tmp_path / "fuzzed.onnx"
    path.write_bytes(bytes(content))
    outcome(path)


@FUZZ
@given(data=st.data())
def test_altered_graphs_give_one_line(onnx_bytes, tmp_path, data):
    """Structure-aware: attributes, dims, op types, names and input shapes replaced."""
    proto = onnx.ModelProto()
    proto.ParseFromString(onnx_bytes)
    graph = proto.graph
    numbers = st.integers(-3, 70) | st.sampled_from([0, 1, 2**31, -(2**40), 10**9])
    for _ in range(data.draw(st.integers(1, 4), "changes")):
        what = data.draw(st.sampled_from(["attribute", "dims", "op", "input", "dim", "drop"]))
        node = graph.node[data.draw(st.integers(0, len(graph.node) - 1), "node")]
        if what == "attribute" and node.attribute:
            attribute = node.attribute[data.draw(st.integers(0, len(node.attribute) - 1))]
            if attribute.ints:
                attribute.ints[:] = data.draw(st.lists(numbers, max_size=5), "ints")
            else:
                attribute.i = data.draw(numbers, "i")
        elif what == "dims":
            tensor = graph.initializer[data.draw(st.integers(0, len(graph.initializer) - 1))]
            tensor.dims[:] = data.draw(st.lists(numbers, max_size=5), "tensor dims")
        elif what == "op":
            node.op_type = data.draw(st.sampled_from(
                ["Conv", "MaxPool", "Gemm", "MatMul", "Reshape", "Flatten", "Softmax", "Add",
                 "Dropout", "Identity", "GlobalAveragePool", "Shape", "Relu", "Concat"]
            ))  # fmt: skip
        elif what == "input" and node.input:
            names = [n.output[0] for n in graph.node] + [t.name for t in graph.initializer]
            node.input[data.draw(st.integers(0, len(node.input) - 1))] = data.draw(
                st.sampled_from([*names, "x", "", "input"])
            )
        elif what == "dim":
            dim = graph.input[0].type.tensor_type.shape.dim[data.draw(st.integers(0, 3))]
            dim.dim_value = data.draw(numbers, "dim")
        elif what == "drop":
            del graph.node[data.draw(st.integers(0, len(graph.node) - 1))]
            if not graph.node:
                break
    path = tmp_path / "altered.onnx"
    path.write_bytes(proto.SerializeToString())
    outcome(path)


# -- the command line -------------------------------------------------------------------------
def convlens(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convlens.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_import_onnx_command(tmp_path):
    module, shape = make("stride-2", torch.float32)
    path = torch_export(module, shape, tmp_path / "student.onnx")
    out = tmp_path / "student.safetensors"
    result = convlens("import-onnx", str(path), "--out", str(out), "--classes", "mnist")
    assert result.returncode == 0, result.stderr
    assert "6 layers" in result.stdout and "(1, 28, 28)" in result.stdout
    model = nn.load(out)
    assert model.classes[7] == "7" and model.metadata["source"] == "onnx"
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(model.forward(x), load_onnx(path).forward(x))
    info = convlens("info", str(path))
    assert info.returncode == 0 and "Conv2D" in info.stdout


def test_import_onnx_refusal_is_one_line(tmp_path):
    module = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3, groups=2)).eval()
    path = torch_export(module, (2, 5, 5), tmp_path / "grouped.onnx")
    result = convlens("import-onnx", str(path), "--out", str(tmp_path / "m.safetensors"))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "grouped convolution (group=2)" in result.stderr
    assert not (tmp_path / "m.safetensors").exists()
