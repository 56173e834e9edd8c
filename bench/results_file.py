"""Where the benchmarks write their results: ``bench/results/NAME.json``, read by
``scripts/readme_numbers.py`` (not in git: every run differs)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, report: dict) -> Path:
    """Write ``report`` as ``bench/results/NAME.json`` and say so."""
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {path}")
    return path


def summary(samples: list[float]) -> dict[str, float | list[float]]:
    """Median, min, max and every sample, in ms."""
    return {
        "median_ms": statistics.median(samples),
        "min_ms": min(samples),
        "max_ms": max(samples),
        "samples_ms": samples,
    }
