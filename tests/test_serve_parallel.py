"""Serving a class: requests computed at once on replicas of the model, with the answers a
request alone gets; `convlens serve --workers N`; compressed answers; bounded bodies and memory."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent / "web"))
from conftest import start_server

import convlens.nn as nn
from convlens.explain import decode, trace
from convlens.models import pretrained
from convlens.web.app import MAX_UPLOAD_BYTES, Engine, create_app
from convlens.web.samples import bundled_samples


@pytest.fixture(scope="module")
def model():
    return pretrained()


def post(url: str, path: str, body: dict, gzipped: bool = False) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if gzipped:
        headers["Accept-Encoding"] = "gzip"
    request = urllib.request.Request(f"{url}{path}", json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            data = answer.read()
            if answer.headers.get("Content-Encoding") == "gzip":
                data = gzip.decompress(data)
            return answer.status, data
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's workers), in MB."""
    total, pending = 0, [pid]
    while pending:
        p = pending.pop()
        try:
            total += int(Path(f"/proc/{p}/status").read_text().split("VmRSS:")[1].split()[0])
            for task in Path(f"/proc/{p}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError):
            continue
    return total / 1024


def test_requests_compute_at_once_each_on_its_own_replica(model):
    """Two requests compute at the same moment (no global lock), each on its engine
    thread's replica: its own layers and gradients, the served model's very weight arrays."""
    engine = Engine(model, 2)
    both_inside = threading.Barrier(2, timeout=10)

    def compute() -> nn.Sequential:
        replica = engine.replica()
        both_inside.wait()  # would time out if one request waited for the other
        return replica

    async def two_at_once():
        return await asyncio.gather(engine.run(compute), engine.run(compute))

    first, second = asyncio.run(two_at_once())
    engine.close()
    assert first is not second and model not in (first, second)
    assert first.layers[0] is not second.layers[0]
    assert first.layers[0].weight is not model.layers[0].weight  # own gradient
    assert first.layers[0].weight.data is model.layers[0].weight.data  # shared values


def test_parallel_traces_equal_one_trace_alone(model):
    """Many threads tracing different images with backward passes at once get, bit for
    bit, what each image gets alone; the served model is never touched."""
    samples = bundled_samples(model)
    client = TestClient(create_app(model, samples, threads=2))
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    alone = {k: client.post("/api/trace", json={"sample": k, "target": k % 10}).content
             for k in range(8)}  # fmt: skip

    def one(k: int) -> bool:
        return client.post("/api/trace", json={"sample": k, "target": k % 10}).content == alone[k]

    with ThreadPoolExecutor(8) as threads:
        assert all(threads.map(one, [k % 8 for k in range(64)]))
    expected = trace(model, samples[3][0], 3)
    answer = json.loads(alone[3])
    np.testing.assert_array_equal(
        decode(answer["input_gradient"]), decode(expected["input_gradient"])
    )
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, before[name])
        assert not p.grad.any()


def test_answers_are_compressed_for_clients_that_accept_it(model):
    client = TestClient(create_app(model, bundled_samples(model)))
    plain = client.post(
        "/api/trace", json={"sample": 0, "target": 1}, headers={"Accept-Encoding": "identity"}
    )
    packed = client.post(
        "/api/trace", json={"sample": 0, "target": 1}, headers={"Accept-Encoding": "gzip"}
    )
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) < len(plain.content) / 2.5
    assert packed.content == plain.content  # the same bytes once unpacked: the same numbers


def test_a_large_body_is_refused_unread_and_only_remote_clients_get_gzip():
    """A Content-Length over the limit gets 413 at once: the body is never sent. Answers
    are compressed for clients on other machines, not for one on this machine."""
    process, url = start_server()
    try:
        host, port = url.removeprefix("http://").split(":")
        for path, size in [("/api/trace", 2**30), ("/api/upload", MAX_UPLOAD_BYTES + 2**17)]:
            with socket.create_connection((host, int(port)), timeout=10) as connection:
                connection.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
                    f"\r\nContent-Length: {size}\r\n\r\n".encode()
                )
                answer = b""
                while chunk := connection.recv(4096):  # the server closes the connection
                    answer += chunk
                answer = answer.decode()
            assert answer.startswith("HTTP/1.1 413"), answer
            assert '"detail":"the ' in answer
        # a body sent in chunks, without a length, is cut off once it passes the limit
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(
                f"POST /api/trace HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
                "\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            )
            chunk = b"x" * 2**16
            with contextlib.suppress(OSError):  # the server may stop reading first
                for _ in range(40):
                    connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            assert connection.recv(4096).startswith(b"HTTP/1.1 413")
        assert post(url, "/api/trace", {"sample": 0})[0] == 200  # still up
        # a client on this machine gets answers as they are; one behind a proxy, gzip
        for forwarded, encoding in [({}, None), ({"X-Forwarded-For": "192.0.2.7"}, "gzip")]:
            request = urllib.request.Request(
                f"{url}/api/trace",
                b'{"sample": 1, "target": 2}',
                {"Content-Type": "application/json", "Accept-Encoding": "gzip", **forwarded},
            )
            with urllib.request.urlopen(request) as answer:
                assert answer.headers.get("Content-Encoding") == encoding
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_workers_serve_the_same_answers_and_say_training_is_off():
    """`--workers 2`: two processes answer as one does; training routes answer 503 with
    a sentence, and the model description says training is off."""
    single, single_url = start_server()
    double, double_url = start_server("--workers", "2")
    try:
        for body in [{"sample": 2, "target": 5}, {"sample": 7}]:
            assert post(double_url, "/api/trace", body, gzipped=True) == post(
                single_url, "/api/trace", body
            )
        model = json.loads(urllib.request.urlopen(f"{double_url}/api/model").read())
        assert model["training"] is False
        for path, body in [
            ("/api/training", {}),
            ("/api/training/some-id/step", {"steps": 1}),
            ("/api/trace", {"sample": 0, "training": "some-id"}),
        ]:
            status, data = post(double_url, path, body)
            assert status == 503
            assert "live training is off on this server" in json.loads(data)["detail"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{double_url}/api/training")
        assert refused.value.code == 503
    finally:
        for process in (single, double):
            process.terminate()
            process.wait(timeout=20)


def test_memory_stays_bounded_under_hostile_requests():
    """After hundreds of the largest sandbox requests the server accepts (and many it
    refuses) and oversized images, the server has grown by no more than 50 MB."""
    process, url = start_server()
    try:
        largest = {"input_size": [32, 32], "kernel_size": [32, 32], "padding": "same"}
        for _ in range(3):  # warm up: first requests allocate what every later one reuses
            post(url, "/api/sandbox", {**largest, "delta": "ones"})
            post(url, "/api/trace", {"sample": 0, "target": 1})
        before = rss_mb(process.pid)
        hostile = [
            {**largest, "delta": "ones"},
            {**largest, "padding": "full", "dilation": [2, 2]},
            {"input_size": [32, 32], "kernel_size": [16, 16], "padding": [[32, 32], [32, 32]]},
            {"kernel_size": [1000, 1000], "padding": "same"},
            {"padding": 10**9},
            {"stride": [2**62, 1]},
        ]
        huge_image = {"image": {"shape": [4096, 4096], "data": "A" * (2**20 - 4096)}}
        with ThreadPoolExecutor(4) as threads:
            statuses = list(
                threads.map(
                    lambda k: post(url, "/api/sandbox", hostile[k % len(hostile)])[0],
                    range(300),
                )
            )
            statuses += list(
                threads.map(lambda _: post(url, "/api/trace", huge_image)[0], range(20))
            )
        after = rss_mb(process.pid)
        assert set(statuses) <= {200, 413, 422}
        print(f"RSS {before:.1f} -> {after:.1f} MB")
        assert after - before <= 50, f"RSS grew from {before:.0f} to {after:.0f} MB"
        assert post(url, "/api/trace", {"sample": 0})[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_sandbox_work_is_bounded_in_time(model):
    """The largest accepted sandbox request answers in well under a second."""
    client = TestClient(create_app(model))
    largest = {
        "input_size": [32, 32],
        "kernel_size": [32, 32],
        "padding": "same",
        "delta": "ones",
    }
    client.post("/api/sandbox", json=largest)
    start = time.perf_counter()
    assert client.post("/api/sandbox", json=largest).status_code == 200
    assert time.perf_counter() - start < 2.0
