"""How quickly the page shows training, measured in Chromium with Playwright.

Starts ``convlens serve`` on the shipped model (127.0.0.1, a free port, a temporary save
folder) and Debian's Chromium, then times, inside the page (``performance.now()``):

- ``one step → shown``: a click on "One step" until the panel shows the new step count;
- ``update interval``: while training runs, the time between two changes of the shown
  step count (the page must update at least twice a second, so at most 500 ms);
- ``sample click → prediction``: while training runs, a click on a sample until the
  prediction in the header changes (target: a click answers within 200 ms).

Prints medians and min–max in ms, and writes them to ``bench/results/training_page.json``,
from which ``scripts/readme_numbers.py`` fills in the README's figures. Run::

    .venv/bin/python bench/bench_training_page.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "web"))
from conftest import CHROMIUM_FLAGS, start_server
from quiet import wait_for_quiet
from results_file import summary, write_results

#: Resolves with the ms from a click on ``selector`` until ``changed()`` holds.
TIME_CLICK = """async ([selector, changed]) => {
  const test = new Function(`return (${changed})`);
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  const button = document.querySelector(selector);
  // a panel that is busy (still showing the last step) ignores clicks: wait until it is not
  while (button.disabled || button.closest('.busy')) await frame();
  const start = performance.now();
  button.click();
  while (!test()) {
    if (performance.now() - start > 10000) throw new Error(`${selector}: no change in 10 s`);
    await frame();
  }
  return performance.now() - start;
}"""

#: Resolves with the ms between successive changes of the panel's shown step count.
UPDATE_INTERVALS = """async (count) => {
  const panel = document.getElementById('training');
  const times = [];
  await new Promise((resolve) => {
    new MutationObserver(() => {
      times.push(performance.now());
      if (times.length > count) resolve();
    }).observe(panel, { attributes: true, attributeFilter: ['data-step'] });
  });
  return times.slice(1).map((t, k) => t - times[k]);
}"""


def show(name: str, samples: list[float]) -> None:
    print(
        f"{name:<34} {statistics.median(samples):8.1f} ms  ({min(samples):.1f}–{max(samples):.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    load_before = wait_for_quiet()
    save_dir = tempfile.mkdtemp(prefix="convlens-bench-")
    process, url = start_server("--save-dir", save_dir)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("body[data-ready='true']")
            page.wait_for_selector("#training[data-state='idle']")
            page.click("#tr-step")  # creates the session (not timed)
            page.wait_for_selector("#training[data-step='1']")
            steps = []
            for k in range(2, args.repeats + 2):
                shown = f"document.getElementById('training').dataset.step === '{k}'"
                steps.append(page.evaluate(TIME_CLICK, ["#tr-step", shown]))
            page.click("#tr-start")
            page.wait_for_selector("#training[data-state='running']")
            intervals = page.evaluate(UPDATE_INTERVALS, args.repeats)
            clicks = []
            for k in range(args.repeats):
                before = page.text_content("#prediction")
                sample = f".sample[data-sample='{2 * k % 20}']"  # classes 0, 1, 2, ...
                changed = f"document.getElementById('prediction').textContent !== {before!r}"
                clicks.append(page.evaluate(TIME_CLICK, [sample, changed]))
            page.click("#tr-reset")
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(save_dir, ignore_errors=True)
    print(f"shipped model in Chromium; medians of {args.repeats}")
    show("one step → shown", steps)
    show("update interval while running", intervals)
    show("sample click → prediction (running)", clicks)
    report = {
        "repeats": args.repeats,
        "load_average": [load_before, os.getloadavg()[0]],
        "one_step_shown": summary(steps),
        "update_interval": summary(intervals),
        "sample_click_prediction": summary(clicks),
    }
    write_results("training_page", report)


if __name__ == "__main__":
    main()
