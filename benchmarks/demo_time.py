"""How long `make demo` takes: `edgeformer demo` in a fresh process, per stage, against the 5-minute budget.

    python benchmarks/demo_time.py [--quick] [--budget 300] [--keep DIR]

Runs the demo into a new temporary folder (nothing cached from an earlier run; the install is not
timed), then prints a markdown table of each stage's wall-clock and CPU seconds (from the demo's
summary.json), the process's total, the load average (`uptime`) at the start and the end, and the
CPU model (`lscpu`). The budget is for two idle cores: on a machine busy with other jobs the wall
clock says little, so the table also gives the process's CPU seconds (user + system, all threads),
which another job's load barely moves. Exit status 1 when the demo fails, or with --strict when the
wall clock is over the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeformer.runtime.cpu import cpu_model, load_average


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Time `edgeformer demo --quick` instead.")
    parser.add_argument("--budget", type=float, default=300.0, help="Seconds the whole demo may take.")
    parser.add_argument("--keep", type=Path, help="Write the demo here instead of a temporary folder (must not exist).")
    parser.add_argument("--strict", action="store_true", help="Exit 1 when the wall clock is over the budget.")
    args = parser.parse_args()
    exe = str(Path(sys.executable).with_name("edgeformer"))
    if args.keep and args.keep.exists():
        parser.error(f"{args.keep} exists; the demo is timed from nothing")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "demo-out"
        cmd = [exe, "demo", "--out", str(out), "--json", str(Path(tmp) / "summary.json")] + (["--quick"] if args.quick else [])
        load_start, cpu = load_average(), f"{cpu_model()}, {os.cpu_count()} CPUs visible"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_end = load_average()
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            print(f"`{' '.join(cmd)}` failed (exit {proc.returncode})")
            return 1
        summary = json.loads((Path(tmp) / "summary.json").read_text())
    process_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stages, stage_cpu = summary["stages"], summary["stage_cpu_seconds"]
    print(f"`edgeformer demo{' --quick' if args.quick else ''}` in a fresh process, nothing cached\n")
    print("| stage | seconds | CPU seconds |\n| --- | --- | --- |")
    for name, seconds in stages.items():
        print(f"| {name} | {seconds:.1f} | {stage_cpu[name]:.1f} |")
    print(f"| stages together | {summary['total_seconds']:.1f} | {sum(stage_cpu.values()):.1f} |")
    print(f"| process (imports, start-up and exit included) | {wall:.1f} | {process_cpu:.1f} |")
    held = wall <= args.budget
    print(f"\nCPU: {cpu}; load average at start {load_start}, at end {load_end}")
    print(f"Budget {args.budget:.0f} s on two idle cores: {'held' if held else 'NOT held'} by the wall clock "
          f"({wall:.0f} s); the process used {process_cpu:.0f} CPU seconds"
          + ("" if held else " (with other jobs on the machine, see the load average, the wall clock overstates it)"))
    models = summary["models"]
    print(f"Held-out: encoder accuracy {models['encoder']['accuracy']:.3f}, decoder perplexity "
          f"{models['decoder']['perplexity']:.1f}, int8 accuracy {summary['quantization']['int8_accuracy']:.3f}, "
          f"distillation retention {summary['distillation']['report']['retention']:.3f}")
    for arch, m in models.items():
        b = m["bench"]
        print(f"Speed-up {arch}: {b['speedup_vs_eager']:.2f}x " if b["reliable"] else f"Speed-up {arch}: unreliable, ",
              end="")
        print(f"({b['reason']})")
    return 1 if args.strict and not held else 0


if __name__ == "__main__":
    sys.exit(main())
