"""Long inputs: peak memory and latency of the runtime for full attention and each long-input kind.

A base-size encoder (6 layers x 384, 6 heads; random weights, seed 0) is exported once per attention
kind through the real pipeline (export_bundle, parity gate included, at lengths up to 1,000). Then
every (kind, length) runs in a fresh process that loads the bundle with edgeformer.runtime, runs one
warm-up and --runs timed inferences at batch 1, and reports:

- peak RSS: the process's high-water resident set size (VmHWM in /proc/self/status; not getrusage's
  ru_maxrss, which keeps the peak of the parent that forked it);
- inference memory: the peak during inference minus the resident size just before it (session and
  weights loaded; the high-water mark is reset there through /proc/self/clear_refs), i.e. what
  running the input costs: the attention scores, activations and their buffers;
- attention memory: inference memory minus that of the "floor" bundle at the same length (the same
  encoder whose attention keeps a single projected row, so it measures everything but attention);
- latency: the median of the timed runs.

Lengths at or above --ulimit-from run under `ulimit -v` (RLIMIT_AS) of --ulimit-gb GiB, the budget of
a small board; a process that runs out reports the first line of its error. Kinds run in rotating
order, --rounds times per length, and each figure is the median over rounds, so contention on a
shared machine falls on every kind alike; the CPU model and load average are printed beside them.

    python benchmarks/long_context.py [--lengths 512 1024 4096 8192] [--runs 3] [--rounds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from process_memory import reset_peak, status_mb

KINDS = {  # attention settings per kind, for inputs up to 8,192 tokens
    "full": {},
    "local": {"attention_kind": "local", "window": 128},
    "longformer": {"attention_kind": "longformer", "window": 128, "global_tokens": 1},
    "linformer": {"attention_kind": "linformer", "linformer_k": 256},
    "lsh": {"attention_kind": "lsh", "window": 128, "lsh_buckets": 64, "lsh_rounds": 1},
    # The floor: the same encoder with attention over one projected row, so its scores cost nothing.
    # What it uses is what everything but attention costs (embeddings, projections, feed-forward).
    "floor": {"attention_kind": "linformer", "linformer_k": 1},
}


def build_bundles(root: Path, kinds: list[str], max_len: int, layers: int) -> dict[str, Path]:
    """One checkpoint and bundle per kind (skipped when already there)."""
    import torch

    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig, Transformer, save

    bundles = {}
    for kind in kinds:
        bundle = root / f"{kind}-bundle"
        if not (bundle / "manifest.json").is_file():
            torch.manual_seed(0)
            cfg = ModelConfig.from_preset("base", max_len=max_len, n_layers=layers, vocab_size=8192, dropout=0.0, **KINDS[kind])
            save(Transformer(cfg).eval(), root / f"{kind}-ckpt", overwrite=True)
            start = time.perf_counter()
            cases = [(1, 64), (2, 300), (1, 1000)]
            result = export_bundle(root / f"{kind}-ckpt", bundle, cases=cases, overwrite=True)
            worst = max(o.max_abs for o in result.report.worst.values())
            hashes = "" if result.report.hash_agreement is None else f", LSH hash agreement {result.report.hash_agreement:.4%}"
            print(f"exported {kind}: parity max abs {worst:.2g} at lengths 64, 300, 1000{hashes} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        bundles[kind] = bundle
    return bundles


def child(bundle: str, length: int, runs: int, threads: int) -> None:
    """One measurement, printed as one JSON line (run in a fresh process)."""
    import numpy as np

    from edgeformer import runtime

    model = runtime.load(bundle, threads=threads)
    ids = np.random.default_rng(0).integers(5, 8000, size=(1, length), dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    load_peak = status_mb("VmHWM")
    before = reset_peak()  # from here on the high-water mark is inference's
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        model(feeds)
        if i:  # the first run is the warm-up
            times.append(time.perf_counter() - start)
    peak = status_mb("VmHWM")
    print(json.dumps({"before_mb": before, "peak_mb": max(peak, load_peak), "inference_peak_mb": peak,
                      "ms": [t * 1000 for t in times]}))


def measure(bundle: Path, length: int, runs: int, threads: int, limit_gb: float | None) -> dict:
    def limit():
        if limit_gb:
            size = int(limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    proc = subprocess.run([sys.executable, __file__, "--child", str(bundle), str(length), str(runs), str(threads)],
                          capture_output=True, text=True, preexec_fn=limit)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(err) if "rror" in ln or "alloc" in ln), err[-1] if err else f"exit {proc.returncode}")
        return {"failed": reason.strip()[:160]}
    return json.loads(lines[-1])


def summarise(rounds: list[dict]) -> dict:
    if any("failed" in r for r in rounds):
        return {"failed": next(r["failed"] for r in rounds if "failed" in r)}
    ms = [statistics.median(r["ms"]) for r in rounds]
    return {"peak_mb": statistics.median(r["peak_mb"] for r in rounds),
            "inference_mb": statistics.median(r["inference_peak_mb"] - r["before_mb"] for r in rounds),
            "ms": statistics.median(ms), "ms_min": min(min(r["ms"]) for r in rounds), "ms_max": max(max(r["ms"]) for r in rounds)}


def table(results: dict, lengths: list[int], kinds: list[str]) -> list[str]:
    lines = ["| tokens | attention | peak RSS MB | inference MB | attention MB | vs full | latency ms (min-max) | vs full |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for length in lengths:
        row = results[str(length)]
        floor = row.get("floor", {}).get("inference_mb")
        full = row.get("full", {})
        for kind in kinds:
            r = row[kind]
            if "failed" in r:
                lines.append(f"| {length} | {kind} | failed: {r['failed']} | | | | | |")
                continue
            attn = r.get("attention_mb")
            mem = (f"{full['attention_mb'] / max(attn, 1.0):.1f}x less" if kind not in ("full", "floor")
                   and (full.get("attention_mb") or 0) >= 50 and attn is not None else "")  # below that: noise
            ratio = full["ms"] / r["ms"] if kind not in ("full", "floor") and "ms" in full else None
            speed = "" if ratio is None else f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
            lines.append(f"| {length} | {kind} | {r['peak_mb']:.0f} | {r['inference_mb']:.0f} | "
                         f"{'' if attn is None else f'{attn:.0f}'} | {mem} | "
                         f"{r['ms']:.0f} ({r['ms_min']:.0f}-{r['ms_max']:.0f}) | {speed} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=4, metavar=("BUNDLE", "LENGTH", "RUNS", "THREADS"), help=argparse.SUPPRESS)
    ap.add_argument("--dir", default="bench-out/long-context", help="Where the checkpoints and bundles go (reused).")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--lengths", nargs="+", type=int, default=[512, 1024, 4096, 8192])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--runs", type=int, default=3, help="Timed runs per process, after one warm-up.")
    ap.add_argument("--rounds", type=int, default=2, help="Fresh processes per (kind, length), in rotating order.")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ulimit-gb", type=float, default=2.0)
    ap.add_argument("--ulimit-from", type=int, default=8192, help="Run lengths from this one under the ulimit.")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    if args.child:
        bundle, length, runs, threads = args.child
        return child(bundle, int(length), int(runs), int(threads))
    from edgeformer.runtime.cpu import cpu_model, load_average

    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    bundles = build_bundles(root, args.kinds, max(args.lengths), args.layers)
    print(f"CPU: {cpu_model()}; load average before timing: {load_average()}", flush=True)
    results: dict = {}
    for length in args.lengths:
        limit = args.ulimit_gb if length >= args.ulimit_from else None
        per_kind: dict[str, list] = {k: [] for k in args.kinds}
        for r in range(args.rounds):
            order = args.kinds[r % len(args.kinds):] + args.kinds[:r % len(args.kinds)]
            for kind in order:
                per_kind[kind].append(measure(bundles[kind], length, args.runs, args.threads, limit))
                print(f"  {length} tokens, {kind}, round {r + 1}: {per_kind[kind][-1]}", flush=True)
        row = {k: {**summarise(v), "ulimit_gb": limit} for k, v in per_kind.items()}
        floor = row.get("floor", {}).get("inference_mb")
        for k, r in row.items():
            if "inference_mb" in r and floor is not None and k != "floor":
                r["attention_mb"] = max(r["inference_mb"] - floor, 0.0)
        results[str(length)] = row
    load = load_average()
    print(f"\nbase-size encoder ({args.layers} x 384, 6 heads), batch 1, {args.threads} threads, float32; "
          f"CPU {cpu_model()}; load average after: {load}; ulimit -v {args.ulimit_gb:g} GiB from {args.ulimit_from} tokens")
    print("\n".join(table(results, args.lengths, args.kinds)))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"cpu": cpu_model(), "load_average": load, "layers": args.layers,
                                                   "threads": args.threads, "settings": KINDS, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
