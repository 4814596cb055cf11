"""Latency measurement: warm up, then time many calls in one block and report percentiles.

Timing two engines by alternating calls lets each one's idle threads tax the other (see the
runtime's `spin` switch); callers time each side in its own block instead. Comparing two sides
(`time_until_settled`, used by `bench_model` with a reference), the blocks alternate round after
round until both sides' timings have settled or a time limit passes: a ratio measured while the
machine was busy with other work is marked unreliable, with the reason, rather than reported.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from .bundle import AUDIO
from .errors import EdgeformerError
from .inputs import manifest_inputs
from .model import Model

Clock = Callable[[], float]  # seconds, monotonic (time.perf_counter); tests pass a fake one


@dataclass
class LatencyStats:
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    p10_ms: float = 0.0
    p25_ms: float = 0.0
    p75_ms: float = 0.0

    def throughput(self, items_per_call: int) -> float:
        """Items per second at the median latency."""
        return items_per_call * 1000.0 / self.median_ms

    @property
    def spread(self) -> float:
        """p10-p90 range over the median: 0.2 means 80% of the calls lie within a band 20% of it wide."""
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms > 0 else 0.0

    @property
    def iqr_over_median(self) -> float:
        """Interquartile range over the median."""
        return (self.p75_ms - self.p25_ms) / self.median_ms if self.median_ms > 0 else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "p10_p90_over_median": self.spread, "iqr_over_median": self.iqr_over_median}


def time_block(fn: Callable[[], object], warmup: int, min_runs: int, max_runs: int, min_seconds: float,
               clock: Clock = time.perf_counter) -> list[float]:
    """Milliseconds of each call: `warmup` untimed calls, then at least `min_runs` for `min_seconds`."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = clock()
    while len(times) < max_runs and (len(times) < min_runs or clock() - start < min_seconds):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1e3)
    return times


def stats(times: list[float]) -> LatencyStats:
    t = np.asarray(times)
    p10, p25, p75, p90, p99 = (float(x) for x in np.percentile(t, [10, 25, 75, 90, 99]))
    return LatencyStats(median_ms=float(np.median(t)), p90_ms=p90, p99_ms=p99, mean_ms=float(t.mean()),
                        min_ms=float(t.min()), runs=len(times), p10_ms=p10, p25_ms=p25, p75_ms=p75)


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
        for name, block in alternating_round(fns, warmup, min_runs, max_runs, min_seconds / rounds).items():
            times[name] += block
    return {name: stats(t) for name, t in times.items()}


def alternating_round(fns: dict[str, Callable[[], object]], warmup: int, min_runs: int, max_runs: int,
                      seconds: float, clock: Clock = time.perf_counter) -> dict[str, list[float]]:
    """One round: a block of each callable in turn (see time_block); name -> milliseconds of each call."""
    return {name: time_block(fn, warmup, min_runs, max_runs, seconds, clock) for name, fn in fns.items()}


@dataclass(frozen=True)
class SettleRule:
    """When alternating blocks have settled enough for a ratio of their medians to be reported.

    After each round (one block per side) the last `window` rounds are judged, side by side:
    drift, the range of the side's per-round medians over their median, must be <= `max_drift`
    (the machine's speed held still), and spread, the p10-p90 range of the window's pooled calls
    over their median, <= `max_spread` (most calls saw the same machine: a burst of contention
    that slows anywhere from 10% to 90% of a side's calls widens it). Timing stops once
    both hold for every side after at least `min_rounds` rounds, or when `max_seconds` (all sides
    together, warm-up included; checked after each round, so the last round may end past it) have
    passed; then the result is unreliable, and says why.
    """

    block_seconds: float = 0.25  # each side's block per round
    min_rounds: int = 3
    window: int = 3  # the rounds judged and reported
    max_drift: float = 0.10
    max_spread: float = 0.50
    max_seconds: float = 10.0


@dataclass
class Verdict:
    """The judgement of a window of rounds: per-side statistics, drift and spread, and whether they pass."""

    stats: dict[str, LatencyStats]
    drift: dict[str, float]
    spread: dict[str, float]
    settled: bool
    failures: list[str] = field(default_factory=list)  # e.g. "eager spread 95% > 50%"
    rounds: int = 0

    def short(self) -> str:
        """What failed, briefly (for a table cell); empty when settled."""
        return "; ".join(f.split(" > ")[0] for f in self.failures)


def judge(rounds: list[dict[str, list[float]]], rule: SettleRule) -> Verdict:
    """Judge the last `rule.window` rounds of per-call milliseconds (`rounds[i][side]`); see SettleRule."""
    window = rounds[-rule.window:]
    out = Verdict({}, {}, {}, settled=len(rounds) >= rule.min_rounds, rounds=len(rounds))
    for name in rounds[0]:
        medians = [float(np.median(r[name])) for r in window]
        pooled = [t for r in window for t in r[name]]
        st = stats(pooled)
        mid = float(np.median(medians))
        out.stats[name] = st
        out.drift[name] = (max(medians) - min(medians)) / mid if mid > 0 else 0.0
        out.spread[name] = st.spread
        if len(window) > 1 and out.drift[name] > rule.max_drift:
            out.failures.append(f"{name} drift {out.drift[name]:.0%} > {rule.max_drift:.0%}")
        if out.spread[name] > rule.max_spread:
            out.failures.append(f"{name} spread {out.spread[name]:.0%} > {rule.max_spread:.0%}")
    out.settled = out.settled and not out.failures
    return out


@dataclass
class Settled:
    verdict: Verdict
    seconds: float

    @property
    def reliable(self) -> bool:
        return self.verdict.settled

    @property
    def reason(self) -> str:
        v = self.verdict
        if v.settled and v.rounds == 1:
            return f"one block in {self.seconds:.1f} s: p10-p90 spread {max(v.spread.values()):.0%} of the median"
        if v.settled:
            return (f"settled after {v.rounds} rounds in {self.seconds:.1f} s: round medians within "
                    f"{max(v.drift.values()):.0%}, p10-p90 spread at most {max(v.spread.values()):.0%} of the median")
        why = ", ".join(v.failures) or "fewer than the minimum rounds"
        return f"not settled after {v.rounds} rounds in {self.seconds:.1f} s: {why}"


def time_until_settled(
    fns: dict[str, Callable[[], object]],
    rule: SettleRule = SettleRule(),
    warmup: int = 3,
    min_runs: int = 5,
    max_runs: int = 2000,
    clock: Clock = time.perf_counter,
) -> Settled:
    """Time each callable in its own blocks, alternating (a, b, a, b, ...), until `rule` says settled or time is up.

    The statistics are those of the last `rule.window` rounds, the ones judged. `warmup` untimed
    calls start every block (the other side just ran), `min_runs` / `max_runs` bound each block.
    """
    start = clock()
    rounds: list[dict[str, list[float]]] = []
    while True:
        rounds.append(alternating_round(fns, warmup, min_runs, max_runs, rule.block_seconds, clock))
        verdict = judge(rounds, rule)
        if verdict.settled or clock() - start >= rule.max_seconds:
            return Settled(verdict, clock() - start)


@dataclass
class BenchResult:
    batch: int
    seq: int
    providers: list[str]
    runtime: LatencyStats
    eager: LatencyStats | None = None  # PyTorch eager on the same inputs, in the same process run
    reliable: bool = True  # the timings settled (SettleRule): the speed-up is a result, not noise
    reason: str = ""  # why they are (or are not) reliable
    verdict: Verdict | None = None
    seconds: float = 0.0  # spent timing

    @property
    def speedup(self) -> float | None:
        """PyTorch eager median / runtime median: above 1 means the bundle is faster. Check `reliable` first."""
        return self.eager.median_ms / self.runtime.median_ms if self.eager else None

    def speedup_text(self) -> str:
        """'1.52x', or 'unreliable (eager spread 95%)' when the timings did not settle, or '-' without eager."""
        if self.speedup is None:
            return "-"
        if self.reliable:
            return f"{self.speedup:.2f}x"
        return f"unreliable ({self.verdict.short() if self.verdict else self.reason})"

    def to_json(self) -> dict:
        return {"batch": self.batch, "seq": self.seq, "providers": self.providers,
                "runtime": self.runtime.to_json(), "throughput_per_s": self.runtime.throughput(self.batch),
                "eager": self.eager.to_json() if self.eager else None, "speedup_vs_eager": self.speedup,
                "reliable": self.reliable, "reason": self.reason, "timing_seconds": self.seconds,
                "rounds": self.verdict.rounds if self.verdict else 1,
                "drift": self.verdict.drift if self.verdict else None,
                "spread_p10_p90_over_median": ({"runtime": self.runtime.spread, "eager": self.eager.spread}
                                           if self.eager else {"runtime": self.runtime.spread})}


def bench_model(
    model: Model,
    batch: int,
    seq: int,
    reference: Callable[[dict[str, np.ndarray]], Callable[[], object]] | None = None,
    min_seconds: float = 2.0,
    seed: int = 0,
    rounds: int = 3,
    max_seconds: float | None = None,
    rule: SettleRule | None = None,
) -> BenchResult:
    """Time `model` on full-length random inputs of (batch, seq); with `reference`, time it too.

    `reference(feeds)` returns a no-argument callable (PyTorch eager on the same feeds). Each side
    is timed in its own blocks, never call by call, so neither's idle threads tax the other. With a
    reference the blocks alternate (runtime, reference, runtime, ...) for at least `rounds` rounds
    of `min_seconds / rounds` per side, and on until both sides settle (SettleRule: per-round
    medians steady, spread small) or `max_seconds` pass (default: three times the minimum); the
    result reports the last `rounds` rounds, and `reliable` / `reason` say whether they settled.
    Without a reference: one block of `min_seconds`, reliable when its spread is small.
    `rule` overrides all of that.
    """
    if model.manifest.cache is not None:  # its inputs include the cache: time generation instead
        raise EdgeformerError(f"{model.bundle.path} has a key/value cache; time it with `edgeformer generate` "
                              "(prompt and per-token latency) or benchmarks/generation.py")
    if model.manifest.modality == AUDIO:  # its inputs are audio samples, not tokens
        raise EdgeformerError(f"{model.bundle.path} reads audio; time it on real recordings with "
                              "benchmarks/speech_rtf.py (real-time factor) or `edgeformer run --audio`")
    model.check_size(batch, seq)  # before building (batch, seq) inputs: a huge --batch is refused, not allocated
    feeds = model.validate(manifest_inputs(model.manifest, batch, seq, seed, padded=False))
    run = model.run  # the graph call alone: inputs were checked once, above
    run_rt = lambda: run(None, feeds)  # noqa: E731
    if reference is None:
        rule = rule or SettleRule(min_rounds=1, window=1)
        start = time.perf_counter()
        verdict = judge([{"runtime": time_block(run_rt, 5, 10, 2000, min_seconds)}], rule)
        settled = Settled(verdict, time.perf_counter() - start)
        return BenchResult(batch, seq, model.providers, verdict.stats["runtime"], None, settled.reliable,
                           settled.reason, verdict, settled.seconds)
    rule = rule or SettleRule(block_seconds=min_seconds / rounds, min_rounds=rounds, window=rounds,
                              max_seconds=max_seconds if max_seconds is not None else 6 * min_seconds)
    settled = time_until_settled({"runtime": run_rt, "eager": reference(feeds)}, rule)
    v = settled.verdict
    return BenchResult(batch, seq, model.providers, v.stats["runtime"], v.stats["eager"], settled.reliable,
                       settled.reason, v, settled.seconds)
