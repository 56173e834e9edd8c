"""A classroom on one server: many students' requests at once, with every answer checked.

Starts the explainer as a user does — ``python -m convlens.cli serve --no-browser --port P
[--workers N]`` — on 127.0.0.1 only, and drives it with a mix of the page's requests (trace,
trace with the backward pass, trace of a drawn image, explain a value or its gradient,
upload a picture):

(a) open loop: requests arrive at ``--rate`` per second (Poisson arrivals, seeded) for
    ``--duration`` seconds; latency counts from the moment a request was due, so a slow
    server cannot hide its queue;
(b) closed loop: ``--clients`` clients, each sending its next request as soon as its last
    one is answered, for ``--duration`` seconds: throughput and latency, and the server's
    memory (RSS of the server and its worker processes) before and after.

Requests come from 127.0.0.1, so the server sends answers uncompressed (see its README
section); ``--remote`` sends them as students' requests reach it through a reverse proxy on
this machine (an X-Forwarded-For header), and the answers come gzip-compressed.

Every answer is compared byte for byte with the answer to the same request sent alone
before the load: a different one counts as wrong. The load generator is one asyncio
process with a small HTTP/1.1 client of its own (keep-alive, gzip), so that it takes as
little of the machine's CPU as possible; it shares the machine with the server. Not a test.

Run::

    .venv/bin/python bench/bench_serve.py [--workers 1 2] [--repeats 3] [--model FILE]

Each run's results are written to ``bench/results/serve.json`` (with the settings and the
load average), from which ``scripts/readme_numbers.py`` fills in the README's figures for a
run of ``make bench`` (the shipped model, local clients); ``--out`` appends them to a JSON
lines file as well.

Measure another checkout's server with ``PYTHONPATH=/path/to/checkout`` (the server process
inherits it); ``--workers 1`` then starts it without the ``--workers`` option.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from quiet import wait_for_quiet
from results_file import write_results

HOST = "127.0.0.1"
ACCEPT = "Accept-Encoding: gzip\r\n"  # as browsers send it; empty with --no-gzip
#: With --remote: a student's request as a reverse proxy on this machine passes it on (the
#: server then compresses, as for any client on another machine).
REMOTE = "X-Forwarded-For: 192.0.2.7\r\n"
FORWARDED = ""
TIMEOUT = 30.0  # seconds one request may take before it counts as an error
#: The page's requests, and how often each comes in the mix.
MIX = {
    "trace": 20,  # a sample's activations
    "trace+backward": 25,  # ... and the backward pass for a class
    "trace drawn": 10,  # an image drawn or uploaded: pixels inline
    "explain": 20,  # the computation behind one value of a convolution
    "explain gradient": 15,  # ... or behind one value of its input gradient
    "upload": 10,  # a picture file, preprocessed
}
IMAGES = 6  # distinct images in the mix (each request kind for each)


# -- a small HTTP/1.1 client ------------------------------------------------------------
class Connection:
    """One keep-alive connection; ``request`` returns (status, decoded body)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.wire = 0  # bytes of the last answer's body as sent (compressed or not)

    async def request(self, method: str, path: str, body: bytes, content_type: str):
        fresh = self.streams is None
        if fresh:
            self.streams = await asyncio.open_connection(HOST, self.port, limit=2**20)
        reader, writer = self.streams
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"{ACCEPT}{FORWARDED}\r\n"
        )
        try:
            writer.write(head.encode() + body)
            first = await reader.readline()
            if not first and not fresh:  # the server closed an idle keep-alive connection
                self.close()  # as a browser does: send it again on a new one
                return await self.request(method, path, body, content_type)
            status = int(first.split()[1])
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if "content-length" in headers:
                data = await reader.readexactly(int(headers["content-length"]))
            else:  # chunked
                parts = []
                while size := int((await reader.readline()).strip(), 16):
                    parts.append(await reader.readexactly(size))
                    await reader.readline()
                await reader.readline()
                data = b"".join(parts)
        except BaseException:
            self.close()
            raise
        if headers.get("connection", "").lower() == "close":
            self.close()
        self.wire = len(data)
        if headers.get("content-encoding") == "gzip":
            data = zlib.decompress(data, 31)
        return status, data

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


@dataclass
class Request:
    kind: str
    method: str
    path: str
    body: bytes
    content_type: str = "application/json"
    expected: tuple[int, bytes] | None = None  # the answer when sent alone
    wire: int = 0  # its body's size as sent


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # ms, answered requests
    errors: int = 0  # a status other than the one sent alone got, a timeout, a broken connection
    wrong: int = 0  # answered, but not the bytes the request got alone
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    why: dict[str, int] = field(default_factory=dict)  # what the errors were

    def record(self, request: Request, ms: float, answer) -> None:
        if answer[0] != request.expected[0]:
            self.errors += 1
            what = f"{request.kind}: " + (
                answer[1].decode() if answer[0] < 0 else f"HTTP {answer[0]}"
            )
            self.why[what] = self.why.get(what, 0) + 1
            return
        if answer[1] != request.expected[1]:
            self.wrong += 1
        self.latencies.append(ms)
        self.by_kind.setdefault(request.kind, []).append(ms)


async def send(connection: Connection, request: Request) -> tuple[int, bytes]:
    """(status, body); (-1, what happened) after a timeout or a broken connection."""
    try:
        return await asyncio.wait_for(
            connection.request(request.method, request.path, request.body, request.content_type),
            TIMEOUT,
        )
    except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError) as error:
        connection.close()
        return -1, f"{type(error).__name__} {error}".encode()


# -- the requests ---------------------------------------------------------------------------
def png_of(image: np.ndarray) -> bytes:
    """A sample image (C, H, W) in [0, 1] as a PNG file, as a student would upload it."""
    pixels = np.clip(np.round(image.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
    picture = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    buffer = io.BytesIO()
    picture.resize((picture.width * 4, picture.height * 4)).save(buffer, "PNG")
    return buffer.getvalue()


def multipart(name: str, content: bytes) -> tuple[bytes, str]:
    boundary = "convlens-bench-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def build_requests(url: str) -> list[Request]:
    """Every distinct request of the mix: each kind for each of ``IMAGES`` samples."""
    description = json.loads(urllib.request.urlopen(f"{url}/api/model", timeout=60).read())
    samples = json.loads(urllib.request.urlopen(f"{url}/api/samples", timeout=60).read())
    samples = samples["samples"][:IMAGES]
    classes = len(description["classes"])
    convs = [layer for layer in description["layers"] if layer["operation"] == "convolution"]
    conv = convs[-1]
    requests = []
    for k, sample in enumerate(samples):
        target = k % classes
        shape = sample["image"]["shape"]
        image = np.frombuffer(base64.b64decode(sample["image"]["data"]), "<f4").reshape(shape)
        out = conv["output_shape"]
        index_out = [k % out[0], out[1] // 2, out[2] // 2]
        inp = conv["input_shape"]
        index_in = [k % inp[0], inp[1] // 2, inp[2] // 2]
        bodies = {
            "trace": {"sample": sample["id"]},
            "trace+backward": {"sample": sample["id"], "target": target},
            "trace drawn": {"image": sample["image"], "target": target},
            "explain": {"sample": sample["id"], "layer": conv["index"], "index": index_out},
            "explain gradient": {
                "sample": sample["id"],
                "layer": conv["index"],
                "index": index_in,
                "target": target,
            },
        }
        for kind, body in bodies.items():
            path = "/api/trace" if kind.startswith("trace") else "/api/explain"
            requests.append(Request(kind, "POST", path, json.dumps(body).encode()))
        body, content_type = multipart(f"sample{k}.png", png_of(image))
        requests.append(Request("upload", "POST", "/api/upload", body, content_type))
    return requests


async def answer_alone(port: int, requests: list[Request]) -> None:
    """Each request sent on its own, twice (a warm-up): the answer every later one must equal."""
    connection = Connection(port)
    for request in requests + requests:
        answer = await send(connection, request)
        if answer[0] != 200:
            raise RuntimeError(f"{request.kind} failed when sent alone: {answer}")
        request.expected, request.wire = answer, connection.wire
    connection.close()


def drawer(requests: list[Request], seed: int):
    weights = [MIX[r.kind] for r in requests]
    rng = random.Random(seed)
    return lambda: rng.choices(requests, weights)[0]


# -- the two loads ------------------------------------------------------------------------
async def open_loop(port: int, requests: list[Request], rate: float, duration: float) -> Tally:
    """Poisson arrivals at ``rate`` per second; latency from when each request was due."""
    tally, idle, tasks = Tally(), [], []
    draw, rng = drawer(requests, 1), random.Random(2)

    async def one(request: Request, due: float) -> None:
        connection = idle.pop() if idle else Connection(port)
        answer = await send(connection, request)
        tally.record(request, (time.perf_counter() - due) * 1e3, answer)
        idle.append(connection)

    start = time.perf_counter()
    due = start + rng.expovariate(rate)
    while due < start + duration:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(draw(), due)))
        due += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    return tally


async def closed_loop(port: int, requests: list[Request], clients: int, duration: float):
    """``clients`` clients back to back; returns the tally and requests answered per second."""
    tally = Tally()
    draw = drawer(requests, 3)
    start = time.perf_counter()
    end = start + duration

    async def client() -> None:
        connection = Connection(port)
        while time.perf_counter() < end:
            request = draw()
            sent = time.perf_counter()
            answer = await send(connection, request)
            tally.record(request, (time.perf_counter() - sent) * 1e3, answer)
        connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return tally, len(tally.latencies) / (time.perf_counter() - start)


# -- the server -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(workers: int, model: str | None) -> tuple[subprocess.Popen, int, str]:
    port = free_port()
    command = [sys.executable, "-m", "convlens.cli", "serve", "--no-browser"]
    command += ["--host", HOST, "--port", str(port)]
    command += ["--workers", str(workers)] if workers != 1 else []
    command += ["--model", str(Path(model).resolve())] if model else []
    # run from an empty folder: `python -m` puts the working folder first on sys.path, and
    # PYTHONPATH (another checkout) must decide which convlens runs
    folder = tempfile.mkdtemp(prefix="bench-serve-")
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=folder
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {process.stderr.read().decode()}")
        try:
            urllib.request.urlopen(f"http://{HOST}:{port}/api/model", timeout=2).read()
            return process, port, folder
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not answer within 120 s")


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MB."""
    total, pending = 0, [pid]
    while pending:
        p = pending.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(status.split("VmRSS:")[1].split()[0])
            for task in Path(f"/proc/{p}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError):
            continue
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and all its descendants."""
    total, pending, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK")
    while pending:
        p = pending.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError):
            continue
    return total


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_once(workers: int, args: argparse.Namespace) -> dict:
    process, port, folder = start_server(workers, args.model)
    try:
        requests = build_requests(f"http://{HOST}:{port}")
        asyncio.run(answer_alone(port, requests))
        sizes = {r.kind: [len(r.expected[1]), r.wire] for r in requests}
        rss_before = rss_mb(process.pid)
        opened = asyncio.run(open_loop(port, requests, args.rate, args.duration))
        time.sleep(1)
        cpu = cpu_seconds(process.pid)
        closed, throughput = asyncio.run(closed_loop(port, requests, args.clients, args.duration))
        cpu = cpu_seconds(process.pid) - cpu
        time.sleep(1)
        rss_after = rss_mb(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "workers": workers,
        "open": {
            "rate": args.rate,
            "answered": len(opened.latencies),
            "p50_ms": percentile(opened.latencies, 50),
            "p99_ms": percentile(opened.latencies, 99),
            "errors": opened.errors,
            "wrong": opened.wrong,
            "why": opened.why,
        },
        "closed": {
            "clients": args.clients,
            "throughput": throughput,
            "p50_ms": percentile(closed.latencies, 50),
            "p99_ms": percentile(closed.latencies, 99),
            "errors": closed.errors,
            "wrong": closed.wrong,
            "why": closed.why,
            "server_cpu_ms_per_request": 1e3 * cpu / max(1, len(closed.latencies)),
            "p50_ms_by_kind": {k: percentile(v, 50) for k, v in sorted(closed.by_kind.items())},
        },
        "rss_mb": {"before": rss_before, "after": rss_after},
        "answer_bytes": sizes,  # per kind: JSON bytes, bytes sent (the last image's)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--rate", type=float, default=25.0, help="open loop: requests per second")
    parser.add_argument("--clients", type=int, default=50, help="closed loop: clients")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds for each load")
    parser.add_argument("--model", default=None, help="a model file (default: the shipped one)")
    parser.add_argument("--label", default="", help="a name for this run in the results")
    parser.add_argument("--out", default=None, help="append the results to this JSON lines file")
    parser.add_argument(
        "--no-gzip", action="store_true", help="ask for uncompressed answers (no Accept-Encoding)"
    )
    parser.add_argument(
        "--remote",
        action="store_true",
        help="send requests as students on other machines would reach the server through a "
        "reverse proxy here (X-Forwarded-For): answers come gzip-compressed",
    )
    args = parser.parse_args()
    global ACCEPT, FORWARDED
    if args.no_gzip:
        ACCEPT = ""
    if args.remote:
        FORWARDED = REMOTE
    load = (
        f"open loop {args.rate:g}/s, closed loop {args.clients} clients, {args.duration:g} s each"
    )
    load += ", as remote clients" if args.remote else ""
    load += ", no gzip asked" if args.no_gzip else ""
    load_before, runs = wait_for_quiet(), []
    print(f"{args.label or 'this checkout'}: model {args.model or 'shipped'}, {load}\n")
    print("workers | open p50 / p99 ms, errors | closed req/s, p50 / p99 ms, errors | "
          "RSS MB before → after | wrong | server CPU ms/request")  # fmt: skip
    for _ in range(args.repeats):
        for workers in args.workers:
            result = run_once(workers, args)
            o, c, m = result["open"], result["closed"], result["rss_mb"]
            print(
                f"{workers:7} | {o['p50_ms']:6.1f} / {o['p99_ms']:6.1f}, {o['errors']:3} | "
                f"{c['throughput']:6.1f}, {c['p50_ms']:6.1f} / {c['p99_ms']:7.1f}, "
                f"{c['errors']:3} | {m['before']:6.1f} → {m['after']:6.1f} | "
                f"{o['wrong'] + c['wrong']} | {c['server_cpu_ms_per_request']:.1f}",
                flush=True,
            )
            for load in ("open", "closed"):
                for what, count in result[load]["why"].items():
                    print(f"        {load} loop error ×{count}: {what}")
            runs.append(result)
            if args.out:
                result.update(label=args.label, model=args.model, when=time.time())
                with open(args.out, "a") as out:
                    out.write(json.dumps(result) + "\n")
    settings = {k: getattr(args, k) for k in ("rate", "clients", "duration", "model", "remote")}
    settings["gzip"] = not args.no_gzip
    report = {"load_average": [load_before, os.getloadavg()[0]], "settings": settings, "runs": runs}
    write_results("serve", report)
    if args.out:
        print(f"results appended to {args.out}")
    print("\nanswer sizes, JSON → sent (kB):", ", ".join(
        f"{kind} {raw / 1e3:.0f} → {wire / 1e3:.0f}"
        for kind, (raw, wire) in result["answer_bytes"].items()
    ))  # fmt: skip


if __name__ == "__main__":
    main()
