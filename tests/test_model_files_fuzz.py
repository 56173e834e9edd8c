"""Model files are data: broken or hostile ones fail with one line, never a traceback.

A real model file is truncated, bit-flipped, and given hostile headers (every metadata
field replaced by random JSON, layer configs spoiled, private or abstract layer types,
deep nesting, huge layers, integer and bool tensors). Every outcome must be one of:

- a ValueError (or FileNotFoundError) whose message is a single line, or
- a model that works: float weights, and a forward pass on its own input shape that
  gives one score per class.

``convlens info`` and ``convlens serve`` on such files exit 1 with one line on stderr.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

import convlens.nn as nn
from convlens.cli import main
from convlens.nn import layer as layer_module
from convlens.nn import sequential
from convlens.nn.sequential import MAX_NESTING
from convlens.train import load_any_model, load_model

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def small_model() -> nn.Sequential:
    nn.manual_seed(0)
    return nn.Sequential(
        nn.Conv2D(1, 2, 3, padding="same"), nn.ReLU(), nn.MaxPool2D(2), nn.Conv2D(2, 2, (2, 1)),
        nn.Tanh(), nn.AvgPool2D(1), nn.Flatten(), nn.Dropout(0.1), nn.Dense(2 * 3 * 4, 3),
        nn.Softmax(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def real_file(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("real") / "model.safetensors"
    small_model().save(path, input_shape=(1, 8, 8), classes=["a", "b", "c"], metadata={"k": 1})
    return path.read_bytes()


def split(content: bytes) -> tuple[dict, bytes]:
    """A safetensors file's JSON header and its data bytes."""
    (n,) = struct.unpack("<Q", content[:8])
    return json.loads(content[8 : 8 + n]), content[8 + n :]


def join(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def assert_refused_in_one_line_or_usable(path: Path) -> None:
    """The property every file must have, for each way the package loads one."""
    for loader in (nn.load, load_model, load_any_model):
        try:
            model = loader(path)
        except (ValueError, FileNotFoundError) as err:
            message = str(err)
            assert message and "\n" not in message, f"{loader.__name__}: {message!r}"
            assert len(message) < 2000, f"{loader.__name__}: a {len(message)}-character message"
            continue
        assert all(p.data.dtype in (np.float32, np.float64) for p in model.parameters())
        if model.input_shape is not None:
            model.eval()
            y = model.forward(np.zeros((2, *model.input_shape), np.float32))
            if model.classes is not None:
                assert y.shape == (2, len(model.classes))


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10**6))
def test_truncated_files(tmp_path, real_file, cut):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(real_file[: cut % len(real_file)])
    assert_refused_in_one_line_or_usable(path)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1))
def test_flipped_bytes(tmp_path, real_file, flips):
    content = bytearray(real_file)
    for position, mask in flips:
        content[position % len(content)] ^= mask
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(bytes(content))
    assert_refused_in_one_line_or_usable(path)


SCALARS = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats() | st.text()
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["format", "version", "architecture", "input_shape", "classes", "metadata"]


@FUZZ
@given(field=st.sampled_from(FIELDS), value=JSON, raw=st.booleans(), drop=st.booleans())
def test_hostile_metadata_fields(tmp_path, real_file, field, value, raw, drop):
    """One field replaced by any JSON value, by text that may not be JSON, or removed."""
    header, data = split(real_file)
    if drop:
        del header["__metadata__"][field]
    else:
        header["__metadata__"][field] = str(value) if raw else json.dumps(value)
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(join(header, data))
    assert_refused_in_one_line_or_usable(path)


LAYER_TYPES = ["_Pool2D", "_Elementwise", "Layer", "Sequential", "Lambda", "Dense", "ReLU", ""]
KEYS = ["kernel_size", "stride", "padding", "anchor", "p", "bias", "rng", "in_features", "x"]


@FUZZ
@given(
    index=st.integers(0, 9),
    change=st.sampled_from(["type", "set-value", "drop-config", "nest"]),
    layer_type=st.sampled_from(LAYER_TYPES),
    key=st.sampled_from(KEYS),
    value=JSON,
    depth=st.integers(1, 2 * MAX_NESTING),
)
def test_hostile_layer_specs(tmp_path, real_file, index, change, layer_type, key, value, depth):
    """One layer of the real file re-typed, given a key (known or not) with any value,
    stripped of its config, or wrapped in Sequentials up to twice the nesting limit."""
    header, data = split(real_file)
    specs = json.loads(header["__metadata__"]["architecture"])
    spec = specs[index]
    if change == "type":
        spec["type"] = layer_type
    elif change == "set-value":
        spec["config"][key] = value
    elif change == "drop-config":
        del spec["config"]
    else:
        for _ in range(depth):
            spec = {"type": "Sequential", "config": {"layers": [spec]}}
        specs[index] = spec
    header["__metadata__"]["architecture"] = json.dumps(specs)
    path = tmp_path / "spec.safetensors"
    path.write_bytes(join(header, data))
    assert_refused_in_one_line_or_usable(path)


#: Bytes per value of safetensors' dtypes.
DTYPE_SIZES = {"I8": 1, "U8": 1, "BOOL": 1, "F16": 2, "BF16": 2, "I32": 4, "I64": 8}
DTYPE_SIZES.update(F32=4, F64=8)


@FUZZ
@given(dtype=st.sampled_from(sorted(DTYPE_SIZES)), which=st.integers(0, 5), data=st.data())
def test_tensor_dtypes_and_shapes(tmp_path, real_file, dtype, which, data):
    """One tensor re-typed, maybe re-shaped, its bytes re-laid so the file stays valid
    safetensors: only the convlens checks stand between it and the model."""
    header, _ = split(real_file)
    names = sorted(k for k in header if k != "__metadata__")
    name = names[which % len(names)]
    header[name]["dtype"] = dtype
    if data.draw(st.booleans()):
        header[name]["shape"] = data.draw(st.lists(st.integers(0, 5), max_size=4))
    blobs, offset = [], 0
    for tensor in names:
        info = header[tensor]
        size = int(np.prod(info["shape"])) * DTYPE_SIZES[info["dtype"]]
        info["data_offsets"] = [offset, offset + size]
        blobs.append(bytes(size))
        offset += size
    path = tmp_path / "typed.safetensors"
    path.write_bytes(join(header, b"".join(blobs)))
    assert_refused_in_one_line_or_usable(path)


RELU = {"type": "ReLU", "config": {}}


def hostile_file(path: Path, architecture, **fields) -> Path:
    """A model file with no tensors, this architecture (a list, or raw text) and fields."""
    text = architecture if isinstance(architecture, str) else json.dumps(architecture)
    meta = {"format": "convlens.sequential", "version": "1", "architecture": text}
    save_file({}, str(path), metadata={**meta, **{k: json.dumps(v) for k, v in fields.items()}})
    return path


def nested(depth: int) -> list:
    """A ReLU inside ``depth`` Sequentials, inside the model's own."""
    spec = RELU
    for _ in range(depth):
        spec = {"type": "Sequential", "config": {"layers": [spec]}}
    return [spec]


def conv(**config) -> dict:
    return {"type": "Conv2D", "config": {"in_channels": 1, "out_channels": 1, **config}}


def dense(n_in: int, n_out: int) -> dict:
    return {"type": "Dense", "config": {"in_features": n_in, "out_features": n_out}}


#: name: (a hostile architecture, further fields, what the one-line error must say)
NAMED_REFUSALS = {
    "private-pool": (
        [{"type": "_Pool2D", "config": {"kernel_size": 2}}],
        {},
        "unknown layer type '_Pool2D'",
    ),
    "private-elementwise": ([{"type": "_Elementwise"}], {}, "unknown layer type '_Elementwise'"),
    "abstract-layer": ([{"type": "Layer", "config": {}}], {}, "unknown layer type 'Layer'"),
    "not-a-type": ([{"type": ["ReLU"]}], {}, r"layer 0: unknown layer type \['ReLU'\]"),
    "extra-spec-key": ([{**RELU, "code": "rm -rf"}], {}, r"layer 0: must be \{'type'"),
    "unexpected-key": (
        [{**RELU, "config": {"inplace": True}}],
        {},
        r"layer 0 \(ReLU\): unexpected config key 'inplace'",
    ),
    "rng-key": ([conv(kernel_size=3, rng=1)], {}, "unexpected config key 'rng'"),
    "float-kernel": (
        [conv(kernel_size=[2.7, 3])],
        {},
        r"layer 0 \(Conv2D\): Conv2D kernel_size must",
    ),
    "missing-argument": ([conv()], {}, r"layer 0 \(Conv2D\): .*kernel_size"),
    "huge-dense": ([dense(10**6, 10**6)], {}, r"layer 0 \(Dense\).*1,000,000,000,000 values"),
    "bool-dropout": (
        [{"type": "Dropout", "config": {"p": True}}],
        {},
        "Dropout p must be a number",
    ),
    "deep-nesting": (nested(MAX_NESTING), {}, f"nest deeper than {MAX_NESTING}"),
    "deep-json": ("[" * 100_000 + "]" * 100_000, {}, "malformed architecture metadata"),
    "short-input-shape": ([RELU], {"input_shape": [1, 28]}, r"input_shape must be \[C, H, W\]"),
    "string-in-input-shape": ([RELU], {"input_shape": ["1", 28, 28]}, "input_shape must be"),
    "bool-in-input-shape": ([RELU], {"input_shape": [1, 28, True]}, "input_shape must be"),
    "huge-input-shape": ([RELU], {"input_shape": [3, 10**5, 10**5]}, "input_shape must be"),
    "classes-string": ([RELU], {"classes": "abc"}, "classes must be a list of names"),
    "classes-numbers": ([RELU], {"classes": [1, 2]}, "classes must be a list of names"),
    "classes-count": (
        [RELU, {"type": "Flatten"}],
        {"input_shape": [1, 2, 2], "classes": ["a"]},
        r"1 classes, but .* \(4,\)",
    ),
    "input-does-not-fit": (
        [{"type": "MaxPool2D", "config": {"kernel_size": 3}}],
        {"input_shape": [1, 2, 2]},
        r"input_shape \[1, 2, 2\] does not fit: MaxPool2D\(kernel=3x3\): the kernel 3x3",
    ),
    "metadata-list": ([RELU], {"metadata": [1]}, "metadata must be a JSON object"),
    "newer-version": ([RELU], {"version": "2"}, "format version"),
}


@pytest.mark.parametrize("case", NAMED_REFUSALS)
def test_each_refusal_names_the_field(tmp_path, case):
    architecture, fields, message = NAMED_REFUSALS[case]
    path = hostile_file(tmp_path / "m.safetensors", architecture, **fields)
    with pytest.raises(ValueError, match=message) as caught:
        nn.load(path)
    assert "\n" not in str(caught.value)


def test_nesting_up_to_the_limit_loads(tmp_path):
    """The model's own Sequential and MAX_NESTING − 1 inside it: MAX_NESTING levels."""
    model = nn.load(hostile_file(tmp_path / "m.safetensors", nested(MAX_NESTING - 1)))
    for _ in range(MAX_NESTING):
        (model,) = model.layers
    assert isinstance(model, nn.ReLU)


class Recorder:
    """Stands in for the weight generator: records the shapes it is asked to draw."""

    def __init__(self) -> None:
        self.draws: list[tuple[int, ...]] = []

    def uniform(self, low: float, high: float, size: tuple[int, ...]) -> np.ndarray:
        self.draws.append(tuple(size))
        return np.zeros(size)


def test_parameters_are_counted_before_they_are_allocated(tmp_path, monkeypatch):
    """Layer by layer, against one budget for the whole file: a layer over what is left is
    refused before it draws its weights (here with a budget of 1,000 values)."""
    monkeypatch.setattr(sequential, "MAX_PARAMETER_VALUES", 1000)
    recorder = Recorder()
    monkeypatch.setattr(layer_module, "_default_rng", recorder)
    layers = [dense(20, 20), RELU, dense(20, 20), dense(20, 20)]  # 420 values each
    path = hostile_file(tmp_path / "m.safetensors", layers)
    with pytest.raises(ValueError, match=r"layer 3 \(Dense\).* 400 values, over the 160 "):
        nn.load(path)
    assert recorder.draws == [(20, 20), (20,), (20, 20), (20,)]  # layers 0 and 2 only
    with pytest.raises(ValueError, match="10,000,000,000 values"):
        nn.load(hostile_file(tmp_path / "huge.safetensors", [dense(10**5, 10**5)]))
    assert len(recorder.draws) == 4


@pytest.mark.parametrize("dtype", [np.int8, np.bool_, np.float16, np.uint8, np.int64])
def test_non_float_tensors_are_refused_by_name_and_dtype(tmp_path, dtype):
    path = tmp_path / "m.safetensors"
    model = small_model()
    tensors = model.tensors()
    tensors["3.weight"] = tensors["3.weight"].astype(dtype)
    save_file(tensors, str(path), metadata=model.file_header((1, 8, 8)))
    with pytest.raises(ValueError, match=r"tensor '3.weight' has dtype [A-Z0-9]+; .*float32"):
        nn.load(path)
    with pytest.raises(ValueError, match=rf"tensor '3.weight' is {np.dtype(dtype)}"):
        model.load_tensors(tensors)  # arrays from anywhere else are held to the same rule


@pytest.mark.parametrize("case", NAMED_REFUSALS)
def test_convlens_info_prints_one_line(tmp_path, capsys, case):
    """``convlens info`` in this process: exit status 1, the error as one line on stderr."""
    architecture, fields, message = NAMED_REFUSALS[case]
    path = hostile_file(tmp_path / "m.safetensors", architecture, **fields)
    assert main(["info", str(path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convlens: error:"), lines
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize("command", ["info", "serve"])
def test_convlens_commands_print_one_line_and_no_traceback(tmp_path, command):
    """The real commands, as a user runs them, on a file naming a private layer class."""
    architecture, fields, message = NAMED_REFUSALS["private-pool"]
    path = str(hostile_file(tmp_path / "m.safetensors", architecture, **fields))
    args = ["info", path] if command == "info" else ["serve", "--model", path, "--no-browser"]
    result = subprocess.run(
        [sys.executable, "-m", "convlens.cli", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convlens: error:"), result.stderr
    assert re.search(message, lines[0]), lines[0]
