"""The README's measured figures, generated from the benchmarks' results so they cannot drift.

Run::

    make bench                                            # writes bench/results/*.json
    .venv/bin/python scripts/readme_numbers.py            # snapshot them, rewrite the README
    .venv/bin/python scripts/readme_numbers.py --check    # the README matches the snapshot

``make bench`` writes ``bench/results/engine.json``, ``parity.json``, ``explain.json``,
``training.json``, ``training_page.json`` and ``serve.json`` (not in git: every run
differs). This script copies what the README quotes from whichever of them exist into
``docs/measured.json`` (in git, with the date and the machine's load average, so a reader
knows what the numbers were measured under) and rewrites the README between its
``<!-- measured:NAME -->`` and ``<!-- /measured -->`` markers from that snapshot.
``tests/test_readme.py`` checks that the two agree.

Timings measured on a busy machine are not copied: a results file whose load average at
the start exceeded half the cores (other work competing for them; PyTorch's OpenMP threads
suffer more from that than convlens's, so even the ratios mislead) is skipped with a note,
unless ``--allow-loaded NAME`` says otherwise; the README then states the load it quotes.
The parity figures do not depend on load.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from quiet import QUIET  # noqa: E402  (the benchmarks wait for the same quiet)
from results_file import RESULTS  # noqa: E402

README = ROOT / "README.md"
SNAPSHOT = ROOT / "docs" / "measured.json"
MARKED = re.compile(r"<!-- measured:([a-z0-9-]+) -->(.*?)<!-- /measured -->", re.S)
EXPLAIN_KEY = "POST /api/trace (activations + backward)"


def _when(path: Path) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(path.stat().st_mtime))


def _engine(path: Path) -> dict:
    report = json.loads(path.read_text())
    rows = []
    for case in report["cases"]:
        rows.append({
            "workload": case["workload"],
            "mode": case["mode"],
            "batch": case["batch"],
            "convlens_ms": case["convlens"]["median_ms"],
            "torch_ms": case["torch"]["median_ms"],
            "floor_ms": case["floor_ms"],
            "peak_mib": case["convlens_train_peak_mib"],
        })  # fmt: skip
    memory = report["memory"]
    steps = max(int(k.rsplit("_", 1)[1]) for k in memory if k.startswith("held_mib_after_"))
    machine = report["machine"]
    return {
        "measured": _when(path),
        "load_average": [machine["load_average_at_start"][0], machine["load_average_at_end"][0]],
        "threads": machine["torch_threads"],
        "repeats": report["settings"]["repeats"],
        "torch": machine["torch"],
        "rows": rows,
        "memory": {
            "steps": steps,
            "after_10": memory["held_mib_after_10"],
            "after_all": memory[f"held_mib_after_{steps}"],
        },
    }


def _parity(path: Path) -> dict:
    report = json.loads(path.read_text())
    return {
        "measured": _when(path),
        **{
            dtype: {
                "steps": len(r["losses"]),
                "max_relative_difference": r["max_relative_difference"],
                "accuracy": r["accuracy"],
                "torch_accuracy": r["torch_accuracy"],
            }
            for dtype, r in report.items()
        },
    }


def _explain(path: Path) -> dict:
    report = json.loads(path.read_text())
    return {
        "measured": _when(path),
        "load_average": report["load_average"][0],
        "trace_backward_http_ms": report["timings"][EXPLAIN_KEY]["median_ms"],
    }


def _medians(*keys: str) -> Callable[[Path], dict]:
    """A reader of a results file holding ``summary`` timings (bench/results_file.py) under
    ``keys``: their medians, with the file's date, load average and repeats."""

    def read(path: Path) -> dict:
        report = json.loads(path.read_text())
        return {
            "measured": _when(path),
            "load_average": report["load_average"],
            "repeats": report["repeats"],
            **{key: report[key]["median_ms"] for key in keys},
        }

    return read


def _serve(path: Path) -> dict | None:
    """The classroom load of ``make bench`` (shipped model, local clients), per worker count
    the medians over its runs; None for a run with other settings."""
    report = json.loads(path.read_text())
    settings = report["settings"]
    if settings["model"] is not None or settings["remote"] or not settings["gzip"]:
        print(f"skipped serve.json: not make bench's settings ({settings})")
        return None
    by_workers: dict[int, list[dict]] = {}
    for run in report["runs"]:
        by_workers.setdefault(run["workers"], []).append(run)

    def median(runs: list[dict], *keys: str) -> float:
        values = []
        for run in runs:
            for key in keys[:-1]:
                run = run[key]
            values.append(run[keys[-1]])
        return statistics.median(values)

    return {
        "measured": _when(path),
        "load_average": report["load_average"],
        "settings": {k: settings[k] for k in ("rate", "clients", "duration")},
        "workers": [
            {
                "workers": workers,
                "runs": len(runs),
                "open_p50_ms": median(runs, "open", "p50_ms"),
                "open_p99_ms": median(runs, "open", "p99_ms"),
                "closed_per_s": median(runs, "closed", "throughput"),
                "closed_p50_ms": median(runs, "closed", "p50_ms"),
                "closed_p99_ms": median(runs, "closed", "p99_ms"),
                "rss_growth_mb": median(runs, "rss_mb", "after") - median(runs, "rss_mb", "before"),
                "errors": sum(r["open"]["errors"] + r["closed"]["errors"] for r in runs),
                "wrong": sum(r["open"]["wrong"] + r["closed"]["wrong"] for r in runs),
            }
            for workers, runs in sorted(by_workers.items())
        ],
    }


READERS = {
    "engine": _engine,
    "parity": _parity,
    "explain": _explain,
    "training": _medians("engine", "session_run", "session_step"),
    "training_page": _medians("one_step_shown", "update_interval", "sample_click_prediction"),
    "serve": _serve,
}


def _load(entry: dict) -> float | None:
    load = entry.get("load_average")
    return load[0] if isinstance(load, list) else load


def snapshot(results: Path = RESULTS, allow_loaded: tuple[str, ...] = ()) -> dict:
    """docs/measured.json, updated with every results file that exists and was quiet."""
    measured = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}
    for name, read in READERS.items():
        if not (results / f"{name}.json").exists():
            continue
        entry = read(results / f"{name}.json")
        if entry is None:
            continue
        load = _load(entry)
        if load is not None and load > QUIET and name not in allow_loaded:
            print(f"skipped {name}.json: load average {load:.1f} at the start (quiet is at "
                  f"most {QUIET:.1f}); rerun make bench, or --allow-loaded {name}")  # fmt: skip
            continue
        measured[name] = entry
    return measured


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def _label(row: dict) -> str:
    name = "MNIST net" if row["workload"] == "MNIST" else row["workload"]
    if row["batch"] == 1:
        return f"{name} forward, one image (the explainer)"
    what = "training step" if row["mode"] == "train" else "forward"
    return f"{name} {what}, batch {row['batch']}"


def _accuracies(r: dict) -> str:
    if r["accuracy"] == r["torch_accuracy"]:
        return f"equal ({100 * r['accuracy']:.1f} %)"
    return f"{100 * r['accuracy']:.1f} % and {100 * r['torch_accuracy']:.1f} %"


def fragments(measured: dict) -> dict[str, str]:
    """What goes between each pair of markers."""
    out = {}
    if "explain" in measured:
        e = measured["explain"]
        out["explain"] = (
            f"{e['trace_backward_http_ms']:.1f} ms on the server (median over HTTP of a trace "
            f"with the backward pass; `bench/bench_explain.py`, {e['measured']}, load average "
            f"{e['load_average']:.1f})"
        )
    if "parity" in measured:
        f64, f32 = measured["parity"]["float64"], measured["parity"]["float32"]
        out["parity"] = (
            f"In float64 every step's loss agrees to {f64['max_relative_difference']:.1e} "
            f"(relative) and the held-out accuracies are {_accuracies(f64)}; in float32 the "
            f"largest relative difference of a step's loss is "
            f"{f32['max_relative_difference']:.1e} and the held-out accuracies are "
            f"{_accuracies(f32)} (`make bench`, {measured['parity']['measured']})."
        )
    if "engine" in measured:
        e = measured["engine"]
        lines = [
            "| workload | convlens ms | PyTorch ms | ratio | floor ms | peak MiB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in e["rows"]:
            peak = "" if row["peak_mib"] is None else f"{row['peak_mib']:.1f}"
            ratio = row["convlens_ms"] / row["torch_ms"]
            lines.append(
                f"| {_label(row)} | {_ms(row['convlens_ms'])} | {_ms(row['torch_ms'])} | "
                f"{ratio:.2f}× | {_ms(row['floor_ms'])} | {peak} |"
            )
        m = e["memory"]
        lines += [
            "",
            f"Measured {e['measured']} with PyTorch {e['torch']}, {e['threads']} threads each, "
            f"{e['repeats']} repeats, load average {e['load_average'][0]:.1f} at the start and "
            f"{e['load_average'][1]:.1f} at the end (a machine shared with other work: single "
            f"rows move by 10–20 % between runs). Memory held over {m['steps']:,} training "
            f"steps stays flat ({m['after_10']:.2f} → {m['after_all']:.2f} MiB).",
        ]
        out["engine"] = "\n" + "\n".join(lines) + "\n"
    if "training" in measured:
        t = measured["training"]
        out["training"] = (
            f"a session step running in the background while the page polls takes "
            f"{t['session_run']:.1f} ms against the engine's own training step of "
            f"{t['engine']:.1f} ms ({t['session_run'] / t['engine']:.2f}×), one step asked "
            f"for over HTTP {t['session_step']:.1f} ms (`bench/bench_training.py`, medians of "
            f"{t['repeats']} runs, {t['measured']}, load average {t['load_average'][0]:.1f})"
        )
    if "training_page" in measured:
        t = measured["training_page"]
        out["training-page"] = (
            f'in Chromium, "one step" is on screen {t["one_step_shown"]:.0f} ms after the '
            f"click, the panel updates every {t['update_interval']:.0f} ms while training, "
            f"and a sample clicked during training shows its new prediction after "
            f"{t['sample_click_prediction']:.0f} ms (`bench/bench_training_page.py`, medians "
            f"of {t['repeats']}, {t['measured']})"
        )
    if "serve" in measured:
        out["serve"] = _serve_text(measured["serve"])
    return out


def _serve_text(serve: dict) -> str:
    parts = []
    for w in serve["workers"]:
        name = "one process" if w["workers"] == 1 else f"`--workers {w['workers']}`"
        runs = "" if w["runs"] == 1 else f" (medians of {w['runs']} runs)"
        parts.append(
            f"{name}{runs}, open loop p50 / p99 {w['open_p50_ms']:.1f} / "
            f"{w['open_p99_ms']:.1f} ms, closed loop {w['closed_per_s']:.0f} requests/s at "
            f"p50 / p99 {w['closed_p50_ms']:.0f} / {w['closed_p99_ms']:.0f} ms, RSS "
            f"{w['rss_growth_mb']:+.0f} MB"
        )
    errors = sum(w["errors"] for w in serve["workers"])
    wrong = sum(w["wrong"] for w in serve["workers"])
    outcome = (
        "no errors and no wrong answers"
        if errors == wrong == 0
        else f"{errors} errors and {wrong} wrong answers"
    )
    s = serve["settings"]
    return (
        f"The last run of `make bench` ({serve['measured']}, load average "
        f"{serve['load_average'][0]:.1f} at the start, {s['rate']:g} requests a second and "
        f"{s['clients']} clients for {s['duration']:g} s each, the load generator sharing the "
        f"two cores) gave: " + "; ".join(parts) + f"; {outcome}."
    )


def render(text: str, measured: dict) -> str:
    parts = fragments(measured)

    def fill(match: re.Match) -> str:
        name = match.group(1)
        body = parts.get(name, match.group(2))
        return f"<!-- measured:{name} -->{body}<!-- /measured -->"

    return MARKED.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="only check that the README matches the snapshot"
    )
    parser.add_argument(
        "--allow-loaded",
        action="append",
        default=[],
        metavar="NAME",
        help="copy NAME.json (engine, explain, training, ...) even though the machine was busy",
    )
    args = parser.parse_args(argv)
    text = README.read_text()
    if args.check:
        measured = json.loads(SNAPSHOT.read_text())
        if render(text, measured) != text:
            print(f"README.md differs from {SNAPSHOT.relative_to(ROOT)}: run {__file__}")
            return 1
        return 0
    measured = snapshot(allow_loaded=tuple(args.allow_loaded))
    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(json.dumps(measured, indent=1, sort_keys=True) + "\n")
    README.write_text(render(text, measured))
    print(f"wrote {SNAPSHOT.relative_to(ROOT)} and README.md's measured figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
