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
