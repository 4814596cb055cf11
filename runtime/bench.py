"""Latency measurement: warm up, then time many calls in one block and report percentiles.

Timing two engines by alternating calls lets each one's idle threads tax the other (see the
runtime's `spin` switch); callers time each side in its own block instead.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from .errors import EdgeformerError
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


def time_block(fn: Callable[[], object], warmup: int, min_runs: int, max_runs: int, min_seconds: float) -> list[float]:
    """Milliseconds of each call: `warmup` untimed calls, then at least `min_runs` for `min_seconds`."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


def stats(times: list[float]) -> LatencyStats:
    t = np.asarray(times)
    return LatencyStats(
        median_ms=float(np.median(t)),
        p90_ms=float(np.percentile(t, 90)),
        p99_ms=float(np.percentile(t, 99)),
        mean_ms=float(t.mean()),
        min_ms=float(t.min()),
        runs=len(times),
    )


def measure_latency(
    fn: Callable[[], object],
    warmup: int = 10,
    min_runs: int = 20,
    max_runs: int = 2000,
    min_seconds: float = 2.0,
) -> LatencyStats:
    """Call `fn` `warmup` times, then at least `min_runs` times and until `min_seconds` have passed."""
    return stats(time_block(fn, warmup, min_runs, max_runs, min_seconds))


def time_alternating(
    fns: dict[str, Callable[[], object]],
    rounds: int = 3,
    min_seconds: float = 2.0,
    warmup: int = 5,
    min_runs: int = 10,
    max_runs: int = 2000,
) -> dict[str, LatencyStats]:
    """Time each callable in its own blocks, the blocks alternating for `rounds` rounds (a, b, a, b, ...).

    Each side's samples are pooled, so a machine that speeds up or slows down mid-run shifts all
    alike; `min_seconds` is the time per callable, `warmup` / `min_runs` / `max_runs` per block.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name] += time_block(fn, warmup, min_runs, max_runs, min_seconds / rounds)
    return {name: stats(t) for name, t in times.items()}


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
    rounds: int = 3,
) -> BenchResult:
    """Time `model` on full-length random inputs of (batch, seq); with `reference`, time it too.

    `reference(feeds)` returns a no-argument callable (PyTorch eager on the same feeds). Each side
    is timed in its own blocks, never call by call, so neither's idle threads tax the other; with a
    reference the blocks alternate for `rounds` rounds (runtime, reference, runtime, ...) and each
    side's samples are pooled, so a machine that speeds up or slows down mid-run shifts both alike.
    `min_seconds` is the time per side.
    """
    if "cache" in model.manifest.model:  # its inputs include the cache: time generation instead
        raise EdgeformerError(f"{model.bundle.path} has a key/value cache; time it with `edgeformer generate` "
                              "(prompt and per-token latency) or benchmarks/generation.py")
    feeds = model.validate(manifest_inputs(model.manifest, batch, seq, seed, padded=False))
    session = model.session
    run_rt = lambda: session.run(None, feeds)  # noqa: E731
    run_ref = reference(feeds) if reference else None
    rounds = rounds if reference else 1
    rt_times: list[float] = []
    ref_times: list[float] = []
    for _ in range(rounds):
        rt_times += time_block(run_rt, 5, 10, 2000, min_seconds / rounds)
        if run_ref is not None:
            ref_times += time_block(run_ref, 5, 10, 2000, min_seconds / rounds)
    return BenchResult(batch, seq, model.providers, stats(rt_times), stats(ref_times) if run_ref else None)
