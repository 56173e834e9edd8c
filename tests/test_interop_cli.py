"""convlens import-tfjs, export-onnx and serve --model model.json, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import convlens.nn as nn
from convlens.data import load_image
from convlens.explain import decode
from convlens.interop import load_tfjs

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "cnn-explainer"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/cnn-explainer is absent")
sys.path.insert(0, str(Path(__file__).parent / "web"))


def convlens(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convlens.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_import_tfjs_then_export_onnx(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"class {k}" for k in range(10)))
    out = tmp_path / "tiny_vgg.safetensors"
    result = convlens(
        "import-tfjs", str(SHARED / "model.json"), "--out", str(out), "--classes", str(names)
    )
    assert result.returncode == 0, result.stderr
    model = nn.load(out)
    assert model.classes[3] == "class 3" and model.input_shape == (3, 64, 64)
    x = load_image(SHARED / "img" / "espresso_1.jpeg", (3, 64, 64))[None]
    np.testing.assert_array_equal(model.forward(x), load_tfjs(SHARED / "model.json").forward(x))
    onnx_path = tmp_path / "tiny_vgg.onnx"
    assert convlens("export-onnx", str(out), "--out", str(onnx_path)).returncode == 0
    assert onnx_path.stat().st_size > 19_920 * 4


def test_wrong_number_of_class_names_is_one_line(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    result = convlens(
        "import-tfjs",
        str(SHARED / "model.json"),
        "--out",
        str(tmp_path / "m"),
        "--classes",
        str(names),
    )
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "2 class names" in result.stderr


def test_serve_cnn_explainer_model_classifies_espresso():
    from conftest import start_server

    process, url = start_server("--model", str(SHARED / "model.json"))
    try:
        model = json.loads(urllib.request.urlopen(f"{url}/api/model").read())
        assert model["classes"][6] == "espresso" and model["input_shape"] == [3, 64, 64]
        assert model["ends_with_softmax"] and model["layers"][-1]["operation"] == "softmax"
        samples = json.loads(urllib.request.urlopen(f"{url}/api/samples").read())["samples"]
        espresso = next(s for s in samples if s["label"] == "espresso")
        assert len(samples) == 21
        request = urllib.request.Request(
            f"{url}/api/trace",
            json.dumps({"sample": espresso["id"]}).encode(),
            {"Content-Type": "application/json"},
        )
        traced = json.loads(urllib.request.urlopen(request).read())
        assert model["classes"][traced["prediction"]] == "espresso"
        expected = load_tfjs(SHARED / "model.json").forward(decode(espresso["image"])[None])[0]
        np.testing.assert_allclose(traced["probabilities"], expected, rtol=1e-6)
        assert traced["probabilities"][6] == pytest.approx(0.880, abs=0.001)
    finally:
        process.terminate()
        process.wait(timeout=10)
