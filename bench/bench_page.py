"""How fast the explainer page answers a click, measured in Chromium with Playwright.

Starts ``convlens serve`` (127.0.0.1, a free port) on the shipped model and, when
``../shared/cnn-explainer/model.json`` exists (or ``--vgg PATH``), on CNN Explainer's Tiny
VGG, opens the page in Debian's Chromium at 1280×720 and times, inside the page
(``performance.now()``):

- ``sample click → overview painted``: a click on a sample until the frame after the page
  has drawn the new trace (every view that listens to it: overview, detail, backward pass);
- ``map click → detail painted``: a click on a convolution's map in the overview until the
  frame after its detail view shows the engine's numbers (``#conv-value``).

Each is the median (and min–max) over ``--repeats`` clicks, each on another sample or map.
Where the time goes comes from the page's own Performance marks (``convlens:*``, see
``state.js``): waiting for the server, parsing and decoding the JSON, drawing. Also printed:
the trace's size on the wire. Not a test. Run::

    .venv/bin/python bench/bench_page.py [--repeats 20] [--vgg ../shared/cnn-explainer/model.json]

Measure another checkout with ``--root /path/to/checkout`` (its server and its page).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import sys
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "web"))
from conftest import CHROMIUM_FLAGS, start_server

HERE = Path(__file__).resolve().parents[1]

#: ms from `click()` on `selector` until the frame after `done()` first holds (checked on
#: every change under `watch` and every frame). `arm()` runs before the click.
TIME_CLICK = """async ([selector, arm, done, watch]) => {
  const test = new Function(`return (${done})`);
  new Function(arm)();
  const after = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const element = document.querySelector(selector);
  if (!element) throw new Error(`no ${selector}`);
  performance.clearMarks();
  performance.clearMeasures();
  const start = performance.now();
  await new Promise((resolve, reject) => {
    const check = () => {
      if (test()) { observer.disconnect(); resolve(); return true; }
      if (performance.now() - start > 15000) {
        observer.disconnect();
        reject(new Error(`${selector}: nothing in 15 s`));
      }
      return false;
    };
    const observer = new MutationObserver(check);
    const all = { subtree: true, childList: true, characterData: true, attributes: true };
    observer.observe(document.querySelector(watch), all);
    element.click();
    const poll = () => { if (!check()) requestAnimationFrame(poll); };
    requestAnimationFrame(poll);
  });
  const shown = performance.now() - start;
  await after();
  const total = performance.now() - start;
  const marks = {};
  for (const m of performance.getEntriesByType('measure')) {
    const key = m.name.slice(9);
    if (m.name.startsWith('convlens:')) marks[key] = (marks[key] || 0) + m.duration;
  }
  return { shown, total, marks };
}"""

# the prediction in the header is written by the last listener of a new trace
SAMPLE_ARM = "window.__before = document.querySelector('#prediction').firstChild;"
SAMPLE_DONE = "document.querySelector('#prediction').firstChild !== window.__before"
DETAIL_ARM = "window.__before = document.querySelector('#conv-value');"  # the detail stays open
DETAIL_DONE = (
    "(() => { const v = document.querySelector('#detail:not([hidden]) #conv-value');"
    " return v && v !== window.__before; })()"
)


def trace_bytes(url: str, target: int | None) -> str:
    """The size of a trace (with the backward pass for `target`), as sent here and gzipped."""
    request = urllib.request.Request(
        f"{url}/api/trace",
        json.dumps({"sample": 0, "target": target}).encode(),
        {"Content-Type": "application/json", "Accept-Encoding": "gzip"},
    )
    with urllib.request.urlopen(request) as response:
        body = response.read()
    return f"{len(body) / 1e6:.2f} MB ({len(gzip.compress(body, 1)) / 1e6:.2f} MB gzipped)"


def median(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} ms ({min(values):.0f}–{max(values):.0f})"


def measure(url: str, name: str, repeats: int, viewport: tuple[int, int]) -> list[str]:
    lines = [
        f"{name}: a trace is {trace_bytes(url, None)}, with the backward pass {trace_bytes(url, 0)}"
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        page.goto(url)
        page.wait_for_selector("body[data-ready='true']", timeout=60_000)
        samples = page.locator(".sample[data-sample]").count()
        convs = page.evaluate(
            """() => Array.from(document.querySelectorAll('#overview canvas.map[data-layer]'))
                 .filter((c) => c.offsetParent && c.dataset.layer !== 'input')
                 .map((c) => [c.dataset.layer, c.dataset.channel])"""
        )
        model = json.loads(urllib.request.urlopen(f"{url}/api/model").read())
        conv_layers = {
            str(layer["index"]) for layer in model["layers"] if layer["operation"] == "convolution"
        }
        maps = [m for m in convs if m[0] in conv_layers]
        results = {"sample": [], "detail": []}
        marks: dict[str, list[float]] = {}
        detail_marks: dict[str, list[float]] = {}
        for k in range(repeats + 2):  # the first two warm the page up
            selector = f".sample[data-sample='{(k + 1) % samples}']"
            page.locator(selector).scroll_into_view_if_needed()
            timing = page.evaluate(TIME_CLICK, [selector, SAMPLE_ARM, SAMPLE_DONE, "#prediction"])
            if k >= 2:
                results["sample"].append(timing["total"])
                for key, value in timing["marks"].items():
                    marks.setdefault(key, []).append(value)
        page.locator("#overview").scroll_into_view_if_needed()
        for k in range(repeats + 2):
            layer, channel = maps[(3 * k) % len(maps)]
            selector = f"#overview canvas.map[data-layer='{layer}'][data-channel='{channel}']"
            timing = page.evaluate(TIME_CLICK, [selector, DETAIL_ARM, DETAIL_DONE, "#detail"])
            if k >= 2:
                results["detail"].append(timing["total"])
                for key, value in timing["marks"].items():
                    detail_marks.setdefault(key, []).append(value)
            page.locator("#overview").scroll_into_view_if_needed()
        browser.close()
    for name, key, parts in [
        ("sample click → overview painted", "sample", marks),
        ("map click → detail painted", "detail", detail_marks),
    ]:
        lines.append(f"  {name:<33}{median(results[key])}")
        for part, values in sorted(parts.items()):
            lines.append(f"    of which {part:<24} {statistics.median(values):7.1f} ms")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    vgg = HERE.parent / "shared" / "cnn-explainer" / "model.json"
    parser.add_argument("--vgg", default=str(vgg), help="CNN Explainer's model.json")
    parser.add_argument("--size", default="1280x720", help="the window, WIDTHxHEIGHT")
    parser.add_argument("--root", default=None, help="a checkout to measure (default: this one)")
    args = parser.parse_args()
    viewport = tuple(int(v) for v in args.size.split("x"))
    args.vgg = str(Path(args.vgg).resolve())
    if args.root:  # the server process (`python -m`, from the current folder) imports it from there
        os.environ["PYTHONPATH"] = str(Path(args.root).resolve())
        os.chdir(args.root)
    models = [("the shipped model", [])]
    if Path(args.vgg).exists():
        models.append(("CNN Explainer's Tiny VGG", ["--model", args.vgg]))
    else:
        print(f"({args.vgg} is missing: only the shipped model is measured)")
    print(f"Chromium at {args.size}, {args.repeats} clicks each; median (min–max)")
    for name, options in models:
        process, url = start_server(*options)
        try:
            print("\n".join(measure(url, name, args.repeats, viewport)))
        finally:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
