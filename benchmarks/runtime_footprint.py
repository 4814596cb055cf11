"""How small the runtime is: peak resident memory and time to result of `edgeformer run`.

Each run is a fresh process, as on a board that starts the command per request: the time covers
interpreter start, imports, bundle verification (sha256), session creation, one inference and
printing. Peak memory is the child's maximum resident set size (getrusage).

    python benchmarks/runtime_footprint.py [--bundle demo-out/encoder-bundle] [--runs 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_MB, TARGET_S = 150.0, 1.0


def one_run(exe: str, bundle: str, ids: str) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen([exe, "run", bundle, "--ids", ids], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()  # outputs are small: no pipe deadlock
    _, status, usage = os.wait4(proc.pid, 0)  # reaps the child; Popen is not asked for it again
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0 or "row 0:" not in out:
        sys.exit(f"edgeformer run printed no result: {err.strip() or out.strip()}")
    return seconds, usage.ru_maxrss / 1024.0  # Linux reports kilobytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="demo-out/encoder-bundle")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    if not (Path(args.bundle) / "manifest.json").is_file():
        sys.exit(f"no bundle at {args.bundle}: run 'make demo' first, or pass --bundle")
    exe = str(Path(sys.executable).with_name("edgeformer"))
    ids = " ".join(str(5 + i % 50) for i in range(64))
    one_run(exe, args.bundle, ids)  # warm the page cache: a deployed board has the files on disk
    runs = [one_run(exe, args.bundle, ids) for _ in range(args.runs)]
    secs, mbs = [r[0] for r in runs], [r[1] for r in runs]
    result = {"bundle": args.bundle, "runs": len(runs), "tokens": 64,
              "seconds_median": statistics.median(secs), "seconds_max": max(secs),
              "peak_rss_mb_median": statistics.median(mbs), "peak_rss_mb_max": max(mbs),
              "targets": {"seconds": TARGET_S, "peak_rss_mb": TARGET_MB}}
    print(f"edgeformer run {args.bundle} (64 tokens), {len(runs)} fresh processes")
    print(f"  time to result: median {result['seconds_median']:.3f} s, max {result['seconds_max']:.3f} s (target < {TARGET_S} s)")
    print(f"  peak RSS:       median {result['peak_rss_mb_median']:.1f} MB, max {result['peak_rss_mb_max']:.1f} MB (target < {TARGET_MB} MB)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
