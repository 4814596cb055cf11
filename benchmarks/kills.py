"""Kill campaign: SIGKILL at random moments while artifacts are written and replaced, then check
that the next reader finds a complete artifact and no work folder is left.

Two kinds of victims, each killed `--trials` times at a random moment:
    replace   a process replacing a bundle with --overwrite semantics in a loop (atomic_directory):
              most of its time is spent in the copy and the renames, so kills land in the window
              between them far more often than in a real export
    VERB      `edgeformer export|quantize|train` on a tiny model (--verbs), killed at a random
              moment in [0.5, --max-delay] seconds

    python benchmarks/kills.py [--trials 30] [--verbs quantize export] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from edgeformer import runtime
from edgeformer.runtime.artifacts import leftovers, recover
from edgeformer.runtime.cpu import cpu_model, load_average

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "v1"
EDGEFORMER = str(Path(sys.executable).with_name("edgeformer"))

REPLACER = textwrap.dedent("""
    import shutil, sys
    from pathlib import Path
    from edgeformer.runtime.artifacts import atomic_directory
    final, sources = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    print("ready", flush=True)
    i = 0
    while True:
        src = sources[i % len(sources)]
        with atomic_directory(final, overwrite=True) as tmp:
            for f in src.iterdir():
                shutil.copy(f, tmp / f.name)
        i += 1
""")


def check(out: Path, must_exist: bool) -> str:
    """'ok: ...' or a description of what is wrong after recovery (and what recovery had to do)."""
    done = recover(out)
    how = ("; replacement completed" if any(d.startswith("completed") for d in done) else
           "; replacement undone" if any(d.startswith("restored") for d in done) else
           "; work folder removed" if done else "")
    return _state(out, must_exist) + how


def _state(out: Path, must_exist: bool) -> str:
    if leftovers(out):
        return f"leftover {leftovers(out)[0][0].name}"
    if not out.exists():
        return "missing after a replacement" if must_exist else "ok: absent"
    if (out / "manifest.json").exists():
        runtime.load(out)
        return "ok: bundle loads"
    from edgeformer.modeling import load

    load(out)
    return "ok: checkpoint loads"


def replace_trial(root: Path, rng: random.Random) -> str:
    out = root / "bundle"
    if not out.exists():
        shutil.copytree(GOLDEN / "plain", out)
    proc = subprocess.Popen([sys.executable, "-c", REPLACER, str(out), str(GOLDEN / "plain"), str(GOLDEN / "int8")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.readline()  # imports done: the loop is running
    time.sleep(rng.uniform(0.05, 0.6))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return check(out, must_exist=True)


def verb_trial(root: Path, verb: str, sources: dict, rng: random.Random, max_delay: float) -> str:
    out = root / f"{verb}-out"
    overwrite = rng.random() < 0.5 and out.exists()
    args = {"export": [sources["ckpt"], "--out", out],
            "quantize": [sources["bundle"], "--out", out, "--recipe", "int8-dynamic"],
            "train": ["--arch", "encoder", "--data", sources["data"], "--out", out, "--epochs", "1", "--seq-len", "16",
                      "--vocab-size", "300", "--batch-size", "8"]}[verb]
    proc = subprocess.Popen([EDGEFORMER, verb, *map(str, args)] + (["--overwrite"] if overwrite else []),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.5, max_delay))
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result = check(out, must_exist=overwrite)
    return result + (" (finished before the kill)" if finished else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--verbs", nargs="*", default=[])
    ap.add_argument("--max-delay", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="edgeformer-kills-"))
    sources = {}
    if args.verbs:
        from edgeformer.modeling import ModelConfig, Transformer, save

        sources["ckpt"] = save(Transformer(ModelConfig(vocab_size=300, d_model=32, n_heads=4, n_layers=2, d_ff=64,
                                                       max_len=64, dropout=0.0)), root / "ckpt")
        sources["bundle"] = GOLDEN / "plain"  # quantize measures fidelity on text: a bundle with a tokenizer
        sources["data"] = root / "data.txt"
        sources["data"].write_text("\n".join(f"sample {i} about edge devices and small models" for i in range(200)))
    report = {"cpu": cpu_model(), "load_average_before": load_average(), "trials": {}}
    for victim in ["replace"] + args.verbs:
        outcomes = []
        for _ in range(args.trials):
            outcomes.append(replace_trial(root, rng) if victim == "replace"
                            else verb_trial(root, victim, sources, rng, args.max_delay))
        bad = [o for o in outcomes if not o.startswith("ok")]
        counts = {o: outcomes.count(o) for o in sorted(set(outcomes))}
        report["trials"][victim] = {"kills": len(outcomes), "survived": len(outcomes) - len(bad), "outcomes": counts}
        print(f"{victim}: {len(outcomes) - len(bad)} of {len(outcomes)} kills left a complete artifact and no work "
              f"folder; {counts}")
    report["load_average_after"] = load_average()
    print(f"CPU {report['cpu']}; load average {report['load_average_before']} -> {report['load_average_after']}")
    shutil.rmtree(root, ignore_errors=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    if any(t["survived"] < t["kills"] for t in report["trials"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
