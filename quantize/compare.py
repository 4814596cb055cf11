"""`edgeformer quantize --compare`: every recipe on one bundle, then all of them timed in one session.

Timing each recipe beside its own float32 run lets the machine's speed change between rows: the
float32 column once moved from 28 to 61 ms down one table. Here the recipes are quantized first
(with a recipe counter and an estimate of the time left), then float32 and every quantized graph
are timed in blocks that alternate round after round, as `edgeformer bench` times two sides
(runtime/bench.py: SettleRule). Every row shares one float32 figure; a row whose side did not
settle says so instead of printing a ratio.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from edgeformer import runtime
from edgeformer.runtime.bench import Clock, Settled, SettleRule, time_until_settled
from edgeformer.runtime.inputs import manifest_inputs
from edgeformer.runtime.kinds import reads_arrays

from .bundle import quantize_bundle
from .evaluate import EvaluationData
from .recipes import RECIPES, RecipeOptions
from .result import QuantizeResult

FLOAT = "float32"  # the reference side of the timing session
QUANTIZE_BENCH_SECONDS = 0.0  # quantize_bundle's own timing is replaced by the session's: keep it to its minimum runs


@dataclass
class ComparedRecipe(QuantizeResult):
    """A recipe's row: the quantization result, with latencies from the shared timing session."""

    float_spread: float = 0.0  # p10-p90 range over the median, float32 side
    quant_spread: float = 0.0
    reliable: bool = True  # both sides settled (SettleRule); otherwise the speed-up is not reported
    failures: list[str] = field(default_factory=list)  # e.g. "int4 spread 62% > 50%"
    timing: str = ""  # the whole session's verdict, the same on every row

    @property
    def speedup(self) -> float:
        return self.float_ms / self.quant_ms if self.quant_ms else float("nan")

    def speedup_text(self) -> str:
        """'1.82x', or 'unreliable' when a side of this row did not settle (why_unreliable says why)."""
        return f"{self.speedup:.2f}x" if self.reliable else "unreliable"

    def why_unreliable(self) -> str:
        """'int4: 1.82x is unreliable (int4 spread 62% > 50%)'; empty when reliable."""
        if self.reliable:
            return ""
        return f"{self.recipe}: {self.speedup:.2f}x is unreliable ({', '.join(self.failures) or 'too few rounds'})"

    def to_json(self) -> dict:
        return {**super().to_json(), "timing": {"reliable": self.reliable, "failures": self.failures,
                                                "session": self.timing, "spread_p10_p90_over_median":
                                                {FLOAT: self.float_spread, "quantized": self.quant_spread}}}


def session_rows(results: list[QuantizeResult], settled: Settled, rule: SettleRule) -> list[ComparedRecipe]:
    """Each recipe's row from one timing session whose sides are FLOAT and the recipe names.

    A row is reliable when its two sides passed the rule's judgement after at least its minimum
    rounds; another recipe that did not settle leaves it reliable (they were judged side by side).
    """
    v = settled.verdict
    rows = []
    for r in results:
        st_f, st_q = v.stats[FLOAT], v.stats[r.recipe]
        failures = [f for f in v.failures if f.split(" ")[0] in (FLOAT, r.recipe)]
        base = {f.name: getattr(r, f.name) for f in fields(QuantizeResult)}
        base.update(float_ms=st_f.median_ms, quant_ms=st_q.median_ms)
        rows.append(ComparedRecipe(**base, float_spread=st_f.spread, quant_spread=st_q.spread,
                                   reliable=not failures and v.rounds >= rule.min_rounds, failures=failures,
                                   timing=settled.reason))
    return rows


def time_left(elapsed: float, done: int, total: int, timing_seconds: float) -> str:
    """'about 2 min 10 s left' after `done` of `total` recipes took `elapsed` seconds, plus the timing session."""
    if done == 0:
        return "estimate after the first"
    seconds = elapsed / done * (total - done) + timing_seconds
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"about {minutes} min {secs} s left" if minutes else f"about {secs} s left"


def timing_rule(bench_seconds: float, sides: int) -> SettleRule:
    """bench's rule for two sides, stretched to `sides`: `bench_seconds` per side in at least three rounds,
    at most three times that before the session is called unreliable."""
    return SettleRule(block_seconds=bench_seconds / 3, min_rounds=3, window=3, max_seconds=3 * bench_seconds * sides)


def timing_feeds(model: runtime.Model, data: EvaluationData | None) -> dict[str, np.ndarray]:
    """Batch 1: the first evaluation input for images and audio, else one full-length random row (as bench)."""
    if reads_arrays(model.manifest):
        return data.latency_feeds()
    seq = min(128, model.manifest.axes.get("seq", {}).get("max", 128))
    return model.validate(manifest_inputs(model.manifest, 1, seq, 0, padded=False))


def time_session(models: dict[str, runtime.Model], feeds: dict[str, np.ndarray], rule: SettleRule) -> Settled:
    """Every model on the same feeds, in blocks that alternate until all settle (runtime/bench.py)."""
    calls = {name: (lambda run=m.run: run(None, feeds)) for name, m in models.items()}
    return time_until_settled(calls, rule)


def compare_recipes(bundle: str | os.PathLike, data: EvaluationData | None = None, options: RecipeOptions | None = None,
                    calib_data: str | os.PathLike | None = None, smooth_alpha: float | str | None = "auto",
                    bench_seconds: float = 1.0, progress: Callable[[str], None] = lambda msg: None,
                    clock: Clock = time.perf_counter) -> list[ComparedRecipe]:
    """Quantize `bundle` with every recipe (nothing is kept), then time float32 and all recipes in one session."""
    recipes = list(RECIPES)
    rule = timing_rule(bench_seconds, len(recipes) + 1)
    results: list[QuantizeResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        start = clock()
        for i, name in enumerate(recipes):
            progress(f"recipe {i + 1} of {len(recipes)}: {name} "
                     f"({time_left(clock() - start, i, len(recipes), rule.max_seconds)})")
            results.append(quantize_bundle(bundle, Path(tmp) / name, name, None, data, options,
                                           bench_seconds=QUANTIZE_BENCH_SECONDS, progress=progress,
                                           calib_data=calib_data, smooth_alpha=smooth_alpha))
        ref = runtime.load(bundle)
        models = {FLOAT: ref, **{name: runtime.load(Path(tmp) / name) for name in recipes}}
        progress(f"timing {FLOAT} and {len(recipes)} recipes at batch 1 in alternating blocks of "
                 f"{rule.block_seconds:.2g} s (at most {rule.max_seconds:.0f} s)")
        settled = time_session(models, timing_feeds(ref, data), rule)
    return session_rows(results, settled, rule)


__all__ = ["ComparedRecipe", "FLOAT", "compare_recipes", "session_rows", "time_left", "timing_rule"]
