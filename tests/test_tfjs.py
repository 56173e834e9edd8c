"""TF.js import: CNN Explainer's own Tiny VGG, synthetic models, and malformed files.

The reference is an independent forward pass written here, in NHWC, straight from the file
(HWIO kernels, TensorFlow's padding rule, row-column-channel flatten): it shares no code
with convlens.
"""

from __future__ import annotations

import json
from math import ceil
from pathlib import Path

import numpy as np
import pytest

from convlens.data import load_image
from convlens.interop import load_tfjs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "cnn-explainer"
CLASSES = ["lifeboat", "ladybug", "pizza", "bell pepper", "school bus",
           "koala", "espresso", "red panda", "orange", "sport car"]  # fmt: skip


def tf_same(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    total = max((ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def read_manifest(document: dict, folder: Path) -> dict[str, np.ndarray]:
    weights, offset = {}, 0
    for group in document["weightsManifest"]:
        blob = b"".join((folder / p).read_bytes() for p in group["paths"])
        for w in group["weights"]:
            n = int(np.prod(w["shape"]))
            weights[w["name"]] = np.frombuffer(blob, "<f4", n, offset).reshape(w["shape"])
            offset += 4 * n
    return {k: v.astype(np.float64) for k, v in weights.items()}


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


ACTIVATION = {
    "linear": lambda v: v,
    "relu": lambda v: np.maximum(v, 0),
    "tanh": np.tanh,
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "softmax": softmax,
}


def taps(x: np.ndarray, k: tuple, s: tuple, d: tuple = (1, 1)):
    """Yield (a, b, x[:, a·d + i·s, b·d + j·s, :]) over the kernel taps: (N, H', W', C) each."""
    Ho, Wo = ((x.shape[1 + i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2))
    for a in range(k[0]):
        for b in range(k[1]):
            rows = slice(a * d[0], a * d[0] + s[0] * (Ho - 1) + 1, s[0])
            cols = slice(b * d[1], b * d[1] + s[1] * (Wo - 1) + 1, s[1])
            yield a, b, x[:, rows, cols]


def nhwc_forward(document: dict, folder: Path, x: np.ndarray) -> np.ndarray:
    """Keras semantics, by hand: x is (N, H, W, C)."""
    weights = read_manifest(document, folder)
    for spec in document["modelTopology"]["model_config"]["config"]["layers"]:
        kind, cfg = spec["class_name"], spec["config"]
        if kind == "Conv2D":
            K, bias = weights[cfg["name"] + "/kernel"], weights[cfg["name"] + "/bias"]
            k, s, d = K.shape[:2], cfg["strides"], cfg["dilation_rate"]
            if cfg["padding"] == "same":
                pads = [tf_same(x.shape[1 + i], k[i], s[i], d[i]) for i in range(2)]
                x = np.pad(x, ((0, 0), *pads, (0, 0)))
            y = sum(np.einsum("nhwc,co->nhwo", t, K[a, b]) for a, b, t in taps(x, k, s, d))
            x = ACTIVATION[cfg["activation"]](y + bias)
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            windows = [t for _, _, t in taps(x, cfg["pool_size"], cfg["strides"])]
            x = np.max(windows, axis=0) if kind == "MaxPooling2D" else np.mean(windows, axis=0)
        elif kind == "Flatten":
            x = x.reshape(len(x), -1)  # rows, columns, channels
        elif kind == "Dense":
            x = x @ weights[cfg["name"] + "/kernel"] + weights[cfg["name"] + "/bias"]
            x = ACTIVATION[cfg["activation"]](x)
        elif kind == "Activation":
            x = ACTIVATION[cfg["activation"]](x)
    return x


needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/cnn-explainer is absent")


@needs_shared
def test_cnn_explainer_tiny_vgg_computes_the_same_function():
    model = load_tfjs(SHARED / "model.json", CLASSES)
    assert sum(p.size for p in model.parameters()) == 19_920
    assert model.input_shape == (3, 64, 64) and type(model[-1]).__name__ == "Softmax"
    images = sorted((SHARED / "img").glob("*.jpeg"))
    assert len(images) == 21
    x = np.stack([load_image(p, (3, 64, 64)) for p in images])  # (N, 3, 64, 64) in [0, 1]
    ours = model.forward(x)
    reference = nhwc_forward(
        json.loads((SHARED / "model.json").read_text()), SHARED, x.transpose(0, 2, 3, 1)
    )
    np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=0)
    predicted = {p.stem: CLASSES[k] for p, k in zip(images, ours.argmax(1), strict=True)}
    assert predicted["espresso_1"] == "espresso" and predicted["pizza_1"] == "pizza"
    assert predicted["koala_1"] == "koala" and predicted["orange_1"] == "orange"


def write_model(
    folder: Path, layers: list, weights: dict[str, np.ndarray], shards: int = 2
) -> Path:
    """A TF.js layers-model: Keras JSON topology, weights split over `shards` files."""
    data = b"".join(w.astype("<f4").tobytes() for w in weights.values())
    cut = [len(data) * i // shards for i in range(shards + 1)]
    paths = [f"group1-shard{i + 1}of{shards}.bin" for i in range(shards)]
    for i, name in enumerate(paths):
        (folder / name).write_bytes(data[cut[i] : cut[i + 1]])
    entries = [{"name": k, "shape": list(v.shape), "dtype": "float32"} for k, v in weights.items()]
    topology = {"class_name": "Sequential", "config": {"name": "s", "layers": layers}}
    document = {
        "format": "layers-model",
        "modelTopology": {"model_config": topology},
        "weightsManifest": [{"paths": paths, "weights": entries}],
    }
    path = folder / "model.json"
    path.write_text(json.dumps(document))
    return path


def layer(kind: str, name: str, **config) -> dict:
    return {"class_name": kind, "config": {"name": name, **config}}


def conv(name, filters, k, s, pad, d=1, act="relu", **extra) -> dict:
    return layer(
        "Conv2D", name, filters=filters, kernel_size=[k, k], strides=[s, s], padding=pad,
        dilation_rate=[d, d], activation=act, use_bias=True, data_format="channels_last", **extra,
    )  # fmt: skip


def synthetic(folder: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    layers = [
        conv("c1", 4, 3, 2, "same", batch_input_shape=[None, 11, 10, 3]),  # TF's stride-2 rule
        layer("MaxPooling2D", "p1", pool_size=[2, 2], strides=[1, 1], padding="valid"),
        conv("c2", 5, 2, 1, "same", d=2, act="tanh"),  # even kernel, dilated
        layer("AveragePooling2D", "p2", pool_size=[2, 2], strides=[2, 2], padding="valid"),
        layer("Flatten", "f"),
        layer("Dropout", "drop", rate=0.5),
        layer("Dense", "d1", units=7, activation="sigmoid", use_bias=True),
        layer("Dense", "d2", units=4, activation="linear", use_bias=True),
        layer("Activation", "a", activation="softmax"),
    ]
    shapes = {"c1": (3, 3, 3, 4), "c2": (2, 2, 4, 5), "d1": (5 * 2 * 2, 7), "d2": (7, 4)}
    weights = {}
    for name, kernel in shapes.items():
        weights[f"{name}/kernel"] = rng.standard_normal(kernel)
        weights[f"{name}/bias"] = rng.standard_normal(kernel[-1])
    return write_model(folder, layers, weights)


def test_synthetic_model_with_tf_padding_rules(tmp_path):
    path = synthetic(tmp_path)
    model = load_tfjs(path)
    assert model.input_shape == (3, 11, 10)
    # TF's stride-2 'same': rows (6−1)·2 + 3 − 11 = 2 → (1, 1); columns 4·2 + 3 − 10 = 1 → (0, 1)
    assert model[0].padding2d == ((1, 1), (0, 1))
    x = np.random.default_rng(1).random((4, 11, 10, 3))
    reference = nhwc_forward(json.loads(path.read_text()), tmp_path, x)
    np.testing.assert_allclose(
        model.forward(x.transpose(0, 3, 1, 2).astype(np.float32)), reference, atol=1e-5
    )


def edit(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def first_weight(d: dict) -> dict:
    return d["weightsManifest"][0]["weights"][0]


def model_config(d: dict) -> dict:
    return d["modelTopology"]["model_config"]


DAMAGE = {
    "missing-shard": (
        lambda p: (p.parent / "group1-shard2of2.bin").unlink(),
        "shard group1-shard2of2.bin is missing",
    ),
    "short-shard": (
        lambda p: (p.parent / "group1-shard2of2.bin").write_bytes(b"\0" * 8),
        "too few",
    ),
    "long-shard": (
        lambda p: (p.parent / "group1-shard1of2.bin").open("ab").write(b"\0" * 4),
        "the manifest describes",
    ),
    "shape-mismatch": (
        lambda p: edit(p, lambda d: first_weight(d).update(shape=[3, 3, 4, 3])),  # same size
        "c1: kernel has shape",
    ),
    "dtype": (
        lambda p: edit(p, lambda d: first_weight(d).update(dtype="int32")),
        "int32 weights are not supported",
    ),
    "unknown-layer": (
        lambda p: edit(
            p,
            lambda d: model_config(d)["config"]["layers"].insert(
                1, layer("BatchNormalization", "bn")
            ),
        ),
        "bn: BatchNormalization is not supported",
    ),
    "functional": (
        lambda p: edit(p, lambda d: model_config(d).update(class_name="Model")),
        "only Sequential",
    ),
    "activation": (
        lambda p: edit(
            p, lambda d: model_config(d)["config"]["layers"][0]["config"].update(activation="elu")
        ),
        "activation 'elu' is not supported",
    ),
    "not-json": (lambda p: p.write_text("{not json"), "not a TF.js layers-model"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_malformed_models_are_refused_clearly(tmp_path, case):
    damage, words = DAMAGE[case]
    path = synthetic(tmp_path)
    damage(path)
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        load_tfjs(path)
