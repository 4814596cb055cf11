"""Will it fit a board? Peak memory of `edgeformer run` under address-space limits, and native latency
by thread count.

For each bundle (the demo's float32 encoder and decoder and the int8 encoder; small random-weight
ones without demo-out/, see board_check.py):
  - `edgeformer run BUNDLE --ids ...` (64 tokens) as a fresh process under `ulimit -v` of 512 MB and
    1 GB (bash's ulimit: the address-space limit, RLIMIT_AS): does it run at all, and its peak resident memory
    (getrusage of the child, as benchmarks/runtime_footprint.py measures it);
  - native x86 latency of one call (batch 1 x 64 tokens) with 1, 2 and 4 onnxruntime threads, pinned
    with `taskset -c` to 1, 2 and 2 cores (this machine's count caps the cores; 4 threads on 2 cores
    is reported as such). A board's latency is not this machine's: time it there.

    python benchmarks/board_footprint.py [--demo demo-out] [--cache .cache/board] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from board_check import ROOT, board_bundles  # noqa: E402

from edgeformer.runtime.cpu import cpu_model  # noqa: E402

LIMITS_MB = (512, 1024)
THREADS = (1, 2, 4)
IDS = " ".join(str(5 + i % 50) for i in range(64))

LATENCY = r"""
import json, sys
from edgeformer import runtime
from edgeformer.runtime.bench import measure_latency
from edgeformer.runtime.inputs import manifest_inputs
model = runtime.load(sys.argv[1], threads=int(sys.argv[2]))
feeds = manifest_inputs(model.manifest, 1, 64, seed=0, padded=False)
s = measure_latency(lambda: model(feeds), warmup=10, min_runs=30, min_seconds=2.0)
print(json.dumps(s.to_json()))
"""


# Starts the command and prints its exit code and peak RSS. The measured process must be forked by a
# small process: a child's ru_maxrss starts from its parent's resident set at the fork (or vfork, which
# shares it) and keeps it through the exec, so forking from this script (which has imported the
# quantizer) would report this script's size.
WAIT4 = ("import os, sys\n"
         "pid = os.posix_spawn(sys.argv[1], sys.argv[1:], dict(os.environ))\n"
         "_, status, usage = os.wait4(pid, 0)\n"
         "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, file=sys.stderr)\n")


def limited_run(exe: str, bundle: Path, limit_mb: int | None) -> dict:
    """One `edgeformer run` as a fresh process under `ulimit -v` (bash's: the address-space limit)."""
    limit = f"ulimit -v {limit_mb * 1024} && " if limit_mb is not None else ""
    argv = ["bash", "-c", limit + 'exec "$0" "$@"', sys.executable, "-c", WAIT4, exe, "run", str(bundle), "--ids", IDS]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    try:
        code, kb = (int(v) for v in err[-1].split())
        err = err[:-1]
    except (IndexError, ValueError):  # the helper itself did not start under the limit
        code, kb = proc.returncode or -1, 0
    ok = code == 0 and "row 0:" in proc.stdout
    last = (err or [f"exit {code}"])[-1]
    return {"ok": ok, "exit": code, "peak_rss_mb": kb / 1024.0, "seconds": seconds, **({} if ok else {"error": last[:160]})}


def latency(bundle: Path, threads: int, cores: str) -> dict:
    cmd = ["taskset", "-c", cores, sys.executable, "-c", LATENCY, str(bundle), str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default=str(ROOT / "demo-out"))
    ap.add_argument("--cache", default=str(ROOT / ".cache" / "board"))
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    bundles = board_bundles(Path(args.cache), Path(args.demo))
    exe = str(Path(sys.executable).with_name("edgeformer"))
    ncores = os.cpu_count() or 1
    result = {"cpu": f"{cpu_model()}, {os.cpu_count()} cores", "source": bundles["source"], "bundles": {}}
    for name in ("encoder", "decoder", "int8"):
        b = bundles[name]
        limited_run(exe, b, None)  # warm the page cache
        mem = {str(mb or "none"): limited_run(exe, b, mb) for mb in (None, *LIMITS_MB)}
        lat = {}
        for t in THREADS:
            cores = min(t, ncores)
            lat[t] = {"cores": cores, **latency(b, t, f"0-{cores - 1}")}
        size = sum(f["bytes"] for f in json.loads((b / "manifest.json").read_text())["files"].values()) / 1e6
        result["bundles"][name] = {"bundle": str(b), "mb": size, "memory": mem, "latency": lat}
    print(f"CPU: {result['cpu']}; bundles: {result['source']}; `edgeformer run` with 64 tokens, fresh process")
    cols = ["bundle", "MB"] + [f"ulimit -v {mb} MB: runs? peak RSS" for mb in LIMITS_MB] + ["no limit: peak RSS"] \
        + [f"{t} thr / {min(t, ncores)} core{'s' if min(t, ncores) > 1 else ''} ms" for t in THREADS]
    print("| " + " | ".join(cols) + " |\n|" + " --- |" * len(cols))
    for name, r in result["bundles"].items():
        mem, lat = r["memory"], r["latency"]
        row = [f"{name} ({'int8-dynamic' if name == 'int8' else 'float32'})", f"{r['mb']:.1f}"]
        for mb in LIMITS_MB:
            m = mem[str(mb)]
            row.append(f"yes, {m['peak_rss_mb']:.0f} MB" if m["ok"] else f"no ({m.get('error', '')[:60]})")
        row.append(f"{mem['none']['peak_rss_mb']:.0f} MB")
        row += [f"{lat[t]['median_ms']:.2f}" if "median_ms" in lat[t] else "failed" for t in THREADS]
        print("| " + " | ".join(row) + " |")
    print("latency: median of one call, batch 1 x 64 tokens, native x86 (not a board's), taskset-pinned")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
