"""Let the machine go quiet before a benchmark starts timing.

``make bench`` runs its benchmarks one after another, and each leaves the load average
raised for about a minute after it ends (the 1-minute average decays by e in 60 s).
``scripts/readme_numbers.py`` copies a result into the README only if the load average at
its start was at most half the cores (no other work competing for them), so each benchmark
that writes results first waits here, up to a limit, for the previous one's load to fade.
"""

from __future__ import annotations

import os
import time

#: The 1-minute load average below which the machine counts as quiet: half the cores.
QUIET = 0.5 * (os.cpu_count() or 1)


def wait_for_quiet(limit_s: float = 120.0, poll_s: float = 5.0) -> float:
    """Sleep until the 1-minute load average is at most :data:`QUIET`, or ``limit_s`` has
    passed; returns the load average then (what the benchmark records as its start)."""
    deadline = time.monotonic() + limit_s
    load = os.getloadavg()[0]
    if load > QUIET:
        print(f"waiting up to {limit_s:.0f} s for the load average, {load:.2f}, to reach {QUIET}")
    while load > QUIET and time.monotonic() < deadline:
        time.sleep(poll_s)
        load = os.getloadavg()[0]
    return load
