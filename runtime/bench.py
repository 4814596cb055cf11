"""Latency measurement: warm up, then time many calls in one block and report percentiles.

Timing two engines by alternating calls lets each one's idle threads tax the other (see the
runtime's `spin` switch); callers time each side in its own block instead.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass
class LatencyStats:
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    runs: int

    def throughput(self, items_per_call: int) -> float:
        """Items per second at the median latency."""
        return items_per_call * 1000.0 / self.median_ms

    def to_json(self) -> dict:
        return asdict(self)


def measure_latency(
    fn: Callable[[], object],
    warmup: int = 10,
    min_runs: int = 20,
    max_runs: int = 2000,
    min_seconds: float = 2.0,
) -> LatencyStats:
    """Call `fn` `warmup` times, then at least `min_runs` times and until `min_seconds` have passed."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    t = np.asarray(times)
    return LatencyStats(
        median_ms=float(np.median(t)),
        p90_ms=float(np.percentile(t, 90)),
        p99_ms=float(np.percentile(t, 99)),
        mean_ms=float(t.mean()),
        min_ms=float(t.min()),
        runs=len(times),
    )
