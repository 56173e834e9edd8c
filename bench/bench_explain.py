"""How long the explainer's server takes to explain one image with the shipped model.

Starts the real app on uvicorn (127.0.0.1, a free port) and times HTTP round trips of
``POST /api/trace`` — every activation; with ``--target``, the backward pass as well — and
of ``POST /api/explain`` for one convolution value. Prints medians and min–max in ms, and
splits one trace into the engine's share and serialisation.

Run::

    .venv/bin/python bench/bench_explain.py [--repeats 50]

The medians are also written to ``bench/results/explain.json``, from which
``scripts/readme_numbers.py`` fills in the README's figure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import threading
import time
import urllib.request

import uvicorn
from quiet import wait_for_quiet
from results_file import write_results

from convlens.explain import encode, trace
from convlens.explain.trace import forward_all
from convlens.models import pretrained
from convlens.web.app import create_app
from convlens.web.samples import bundled_samples


def start(app) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}"


def post(url: str, body: dict) -> bytes:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    return urllib.request.urlopen(request).read()


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def show(name: str, samples: list[float], results: dict) -> None:
    print(
        f"{name:<44} {statistics.median(samples):7.2f} ms  [{min(samples):.2f}–{max(samples):.2f}]"
    )
    results[name.strip()] = {"median_ms": statistics.median(samples), "ms": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    load_before = wait_for_quiet()
    model = pretrained()
    samples = bundled_samples(model)
    url = start(create_app(model, samples))
    image = encode(samples[0][0])
    n = args.repeats
    results: dict = {}
    print(f"shipped model, one 28x28 image, {n} requests each (HTTP on 127.0.0.1)\n")
    show(
        "POST /api/trace (activations)",
        timed(lambda: post(f"{url}/api/trace", {"image": image}), n),
        results,
    )
    show(
        "POST /api/trace (activations + backward)",
        timed(lambda: post(f"{url}/api/trace", {"image": image, "target": 3}), n),
        results,
    )
    body = {"image": image, "layer": 3, "index": [5, 4, 4]}
    show(
        "POST /api/explain (one conv value)",
        timed(lambda: post(f"{url}/api/explain", body), n),
        results,
    )
    show(
        "  of which: engine forward only",
        timed(lambda: forward_all(model, samples[0][0]), n),
        results,
    )
    show(
        "  of which: trace + backward, no HTTP",
        timed(lambda: trace(model, samples[0][0], 3), n),
        results,
    )
    report = {
        "repeats": n,
        "load_average": [load_before, os.getloadavg()[0]],
        "timings": results,
    }
    write_results("explain", report)


if __name__ == "__main__":
    main()
