"""`convlens serve` as a user starts it: a real uvicorn process, real HTTP, clear failures."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request

from conftest import start_server


def run_serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convlens.cli", "serve", "--no-browser", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_serve_answers_over_http_and_survives_bad_requests():
    process, url = start_server()
    try:
        page = urllib.request.urlopen(f"{url}/").read().decode()
        assert "<main>" in page and "js/main.js" in page
        model = json.loads(urllib.request.urlopen(f"{url}/api/model").read())
        assert model["input_shape"] == [1, 28, 28]
        bad = urllib.request.Request(
            f"{url}/api/trace", data=b"{not json", headers={"Content-Type": "application/json"}
        )
        try:
            urllib.request.urlopen(bad)
        except urllib.error.HTTPError as error:
            assert error.code == 422
        assert urllib.request.urlopen(f"{url}/api/samples").status == 200  # still up
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_busy_port_is_one_clear_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_serve("--port", str(taken.getsockname()[1]))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("convlens: error: cannot listen on 127.0.0.1:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_model_is_one_clear_line():
    result = run_serve("--model", "no-such-model.safetensors")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "no model file at no-such-model.safetensors" in result.stderr


def test_bad_workers_count_is_one_clear_line():
    result = run_serve("--workers", "0")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "--workers must be 1 to 64, got 0" in result.stderr
