"""The convlens command, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import convlens.nn as nn


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convlens.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_info_prints_layers_shapes_and_parameter_count(tmp_path):
    model = nn.Sequential(nn.Conv2D(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Dense(4 * 6 * 6, 3))
    path = tmp_path / "m.safetensors"
    model.save(path, input_shape=(1, 8, 8), classes=["x", "y", "z"])
    result = run("info", str(path))
    assert result.returncode == 0, result.stderr
    assert "classes: x, y, z" in result.stdout
    assert "(4, 6, 6)" in result.stdout and "(144,)" in result.stdout
    assert f"{40 + 435:,}" in result.stdout.splitlines()[-1]


def test_info_on_a_bad_file_is_one_clear_line(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"garbage")
    result = run("info", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("convlens: error:") and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_the_shipped_model_has_a_name_every_command_takes(tmp_path):
    result = run("evaluate", "pretrained", "--quiet", "--out", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("mnist-bundled test: accuracy 0.9780")
    assert lines[1].split() == ["class", "accuracy", "images"]  # the table has a header
    assert (tmp_path / "eval" / "confusion.png").is_file()
    info = run("info", "pretrained")
    assert info.returncode == 0 and "classes: 0, 1, 2" in info.stdout
    onnx = run("export-onnx", "pretrained", "--out", str(tmp_path / "m.onnx"))
    assert onnx.returncode == 0, onnx.stderr


def test_import_commands_name_the_file_they_expect(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# not a model\n")
    result = run("import-tfjs", str(readme), "--out", str(tmp_path / "m.safetensors"))
    assert result.returncode == 1
    assert "model.json" in result.stderr and "safetensors" not in result.stderr
    result = run("import-onnx", str(readme), "--out", str(tmp_path / "m.safetensors"))
    assert result.returncode == 1 and ".onnx file" in result.stderr
