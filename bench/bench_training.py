"""What a live training session costs over the engine's own training step.

The shipped model at batch 32 on the bundled digits, SGD with momentum, three ways:

- ``engine``: a plain loop — forward, cross-entropy, backward, ``SGD.step`` — on a copy of
  the model (what ``convlens train`` does per step);
- ``session /run``: a session training on its own thread in the real server (uvicorn on
  127.0.0.1) while a client polls its state every 300 ms, as the page does; time per step
  is the wall time over the steps taken (validation every 1,600 images included);
- ``session /step``: one HTTP request per single step, round trip.

Prints medians (and min–max) in ms and the ratio of each to the engine's step. Target:
``session /run`` within 1.3× of the engine. The results are also written to
``bench/results/training.json``, from which ``scripts/readme_numbers.py`` fills in the
README's figures.

Run::

    .venv/bin/python bench/bench_training.py [--seconds 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import urllib.request

import numpy as np
from bench_explain import start
from quiet import wait_for_quiet
from results_file import summary, write_results

from convlens import nn
from convlens.data import load_dataset
from convlens.models import pretrained
from convlens.train.session import copy_model
from convlens.web.app import create_app

BATCH = 32
POLL_SECONDS = 0.3


def call(url: str, method: str = "POST", body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data, method=method, headers={"Content-Type": "application/json"}
    )
    return json.loads(urllib.request.urlopen(request).read())


def engine_step_ms(model: nn.Sequential, steps: int) -> list[float]:
    """A plain training loop on a copy of ``model``: ms per step."""
    x, y = load_dataset("mnist-bundled", "train")
    twin = copy_model(model)
    optimizer = nn.SGD(twin.parameters(), 0.01, momentum=0.9)
    loss = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    times = []
    for k in range(steps + 5):
        batch = rng.integers(0, len(x), BATCH)
        started = time.perf_counter()
        twin.train()
        optimizer.zero_grad()
        twin.forward_backward(x[batch], y[batch], loss)
        optimizer.step()
        if k >= 5:  # warm-up
            times.append((time.perf_counter() - started) * 1e3)
    return times


def session_run_ms(url: str, seconds: float) -> float:
    """Train in the background for ``seconds`` while polling like the page: ms per step."""
    session = call(f"{url}/api/training", body={"lr": 0.01, "momentum": 0.9, "batch_size": BATCH})
    sid = session["id"]
    call(f"{url}/api/training/{sid}/step", body={"steps": 5})  # warm-up
    stop = threading.Event()

    def poll() -> None:
        seen = 0
        while not stop.wait(POLL_SECONDS):
            seen = call(f"{url}/api/training/{sid}?since={seen}", "GET")["step"]

    poller = threading.Thread(target=poll)
    poller.start()
    first = call(f"{url}/api/training/{sid}/run")["step"]
    started = time.perf_counter()
    time.sleep(seconds)
    last = call(f"{url}/api/training/{sid}/pause")["step"]
    elapsed = time.perf_counter() - started
    stop.set()
    poller.join()
    call(f"{url}/api/training/{sid}", "DELETE")
    return elapsed * 1e3 / max(last - first, 1)


def session_step_ms(url: str, repeats: int) -> list[float]:
    """One HTTP request per single step, asking only for what is new (``?since``, as the
    page asks): round-trip ms."""
    sid = call(f"{url}/api/training", body={"lr": 0.01, "momentum": 0.9, "batch_size": BATCH})["id"]
    times, seen = [], 0
    for k in range(repeats + 3):
        started = time.perf_counter()
        seen = call(f"{url}/api/training/{sid}/step?since={seen}", body={"steps": 1})["step"]
        if k >= 3:
            times.append((time.perf_counter() - started) * 1e3)
    call(f"{url}/api/training/{sid}", "DELETE")
    return times


def show(name: str, samples: list[float], reference: float) -> None:
    median = statistics.median(samples)
    print(
        f"{name:<16} {median:8.2f} ms  ({min(samples):.2f}–{max(samples):.2f})"
        f"  {median / reference:5.2f}× the engine"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per /run measurement")
    parser.add_argument("--repeats", type=int, default=5, help="/run measurements")
    args = parser.parse_args()
    load_before = wait_for_quiet()
    model = pretrained()
    url = start(create_app(model, save_dir="build/bench-kept"))
    engine, run = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine
        engine.append(statistics.median(engine_step_ms(model, 100)))
        run.append(session_run_ms(url, args.seconds))
    step = session_step_ms(url, 100)
    reference = statistics.median(engine)
    print(f"shipped model, batch {BATCH}, SGD with momentum; medians of {args.repeats} runs")
    show("engine", engine, reference)
    show("session /run", run, reference)
    show("session /step", step, reference)
    report = {
        "batch": BATCH,
        "repeats": args.repeats,
        "seconds": args.seconds,
        "load_average": [load_before, os.getloadavg()[0]],
        "engine": summary(engine),
        "session_run": summary(run),
        "session_step": summary(step),
    }
    write_results("training", report)


if __name__ == "__main__":
    main()
