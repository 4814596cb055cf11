"""Soak: resident memory against the number of calls, for every runtime entry point, in one process.

A service that embeds the runtime calls it millions of times; memory that grows per call is a leak
that only shows after hours. Each entry point (run, embed, classify, generate, stream, and refused
bad input) is called in a loop; resident memory (psutil RSS) is sampled every `--every` calls after
a warm-up. Growth is the last sample over the first, in percent; a least-squares slope in bytes per
call says whether it keeps climbing.

    python benchmarks/soak.py [--calls 3000] [--every 250] [--json FILE]

Uses the golden bundles of tests/golden (a tiny encoder with a tokenizer and a cached decoder), so
it needs no demo run; pass --encoder/--decoder for others.
"""

from __future__ import annotations

import argparse
import gc
import json
import warnings
from pathlib import Path

import numpy as np
import psutil

from edgeformer import runtime
from edgeformer.runtime.cpu import cpu_model, load_average
from edgeformer.runtime.errors import EdgeformerError

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "v1"
TEXTS = ["the quick brown fox jumps over the lazy dog", "edge devices run small transformers", "a " * 80]


def entry_points(encoder: runtime.Model, decoder: runtime.Model):
    ids = np.array([[5, 9, 12, 40, 41, 42], [7, 8, 9, 0, 0, 0]])
    mask = (ids > 0).astype(np.int64)

    def bad_input():
        try:
            encoder({"input_ids": [[1, 2], [3]]})
        except EdgeformerError:
            pass

    return {
        "run": lambda i: encoder(input_ids=ids, attention_mask=mask),
        "embed": lambda i: encoder.embed(TEXTS),
        "classify": lambda i: encoder.classify(TEXTS),
        "generate": lambda i: decoder.generate([[1 + i % 50, 2, 3]], max_new_tokens=8, temperature=0.8, seed=i),
        "stream": lambda i: list(decoder.stream([[4, 5 + i % 50]], max_new_tokens=8)),
        "refused input": lambda i: bad_input(),
    }


def soak(fn, calls: int, every: int, warmup: int) -> dict:
    proc = psutil.Process()
    for i in range(warmup):
        fn(i)
    gc.collect()
    samples = []
    for i in range(calls):
        fn(i)
        if i % every == 0 or i == calls - 1:
            samples.append((i + 1, proc.memory_info().rss))
    x = np.array([s[0] for s in samples], dtype=float)
    y = np.array([s[1] for s in samples], dtype=float)
    slope = float(np.polyfit(x, y, 1)[0]) if len(samples) > 2 else 0.0
    return {"calls": calls, "rss_first_mb": y[0] / 2**20, "rss_last_mb": y[-1] / 2**20,
            "growth_pct": 100 * (y[-1] - y[0]) / y[0], "slope_bytes_per_call": slope,
            "samples": [(int(c), round(r / 2**20, 2)) for c, r in samples]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default=str(GOLDEN / "plain"))
    ap.add_argument("--decoder", default=str(GOLDEN / "cached"))
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)  # truncation warnings of the long text
    encoder, decoder = runtime.load(args.encoder), runtime.load(args.decoder)
    results = {"cpu": cpu_model(), "load_average_before": load_average(), "entry_points": {}}
    print(f"soak: {args.calls} calls per entry point after {args.warmup} warm-up calls; CPU {results['cpu']}, "
          f"load average {results['load_average_before']}")
    print(f"{'entry point':<15} {'RSS first MB':>12} {'RSS last MB':>12} {'growth %':>9} {'bytes/call':>11}")
    for name, fn in entry_points(encoder, decoder).items():
        r = soak(fn, args.calls, args.every, args.warmup)
        results["entry_points"][name] = r
        print(f"{name:<15} {r['rss_first_mb']:>12.1f} {r['rss_last_mb']:>12.1f} {r['growth_pct']:>9.2f} "
              f"{r['slope_bytes_per_call']:>11.1f}")
    results["load_average_after"] = load_average()
    print(f"load average after: {results['load_average_after']}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
