"""Latency measurement: warm up, then time many calls in one block and report percentiles.

Timing two engines by alternating calls lets each one's idle threads tax the other (see the
runtime's `spin` switch); callers time each side in its own block instead.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from .inputs import manifest_inputs
from .model import Model


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


@dataclass
class BenchResult:
    batch: int
    seq: int
    providers: list[str]
    runtime: LatencyStats
    eager: LatencyStats | None = None  # PyTorch eager on the same inputs, in the same process run

    @property
    def speedup(self) -> float | None:
        """PyTorch eager median / runtime median: above 1 means the bundle is faster."""
        return self.eager.median_ms / self.runtime.median_ms if self.eager else None

    def to_json(self) -> dict:
        return {"batch": self.batch, "seq": self.seq, "providers": self.providers,
                "runtime": self.runtime.to_json(), "throughput_per_s": self.runtime.throughput(self.batch),
                "eager": self.eager.to_json() if self.eager else None, "speedup_vs_eager": self.speedup}


def bench_model(
    model: Model,
    batch: int,
    seq: int,
    reference: Callable[[dict[str, np.ndarray]], Callable[[], object]] | None = None,
    min_seconds: float = 2.0,
    seed: int = 0,
) -> BenchResult:
    """Time `model` on full-length random inputs of (batch, seq); with `reference`, time it too.

    `reference(feeds)` returns a no-argument callable (PyTorch eager on the same feeds). Each side
    is timed in its own block, the runtime first, so neither taxes the other.
    """
    feeds = model.validate(manifest_inputs(model.manifest, batch, seq, seed, padded=False))
    session = model.session
    rt = measure_latency(lambda: session.run(None, feeds), min_seconds=min_seconds)
    ref = measure_latency(reference(feeds), min_seconds=min_seconds) if reference else None
    return BenchResult(batch, seq, model.providers, rt, ref)
