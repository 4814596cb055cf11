"""Exported float32 bundle vs PyTorch eager, same process run, at the performance yardstick's shape.

Builds a randomly initialised encoder of the `base` preset (6 layers x 384 wide, MiniLM-L6's
shape), exports it with fused attention (parity-gated), and times onnxruntime and PyTorch eager
in separate blocks on the same inputs. Latency does not depend on the weights' values.

    python benchmarks/bundle_vs_eager.py [--preset base] [--batch 1 8] [--seq 128] [--seconds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from edgeformer import runtime
from edgeformer.export import export_bundle
from edgeformer.modeling import ModelConfig, Transformer, save
from edgeformer.modeling.eager import eager_runner
from edgeformer.runtime.bench import bench_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--attention", default="fused", choices=["fused", "unfused"])
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_preset(args.preset, vocab_size=30522, num_labels=2, dropout=0.0)).eval()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        save(model, Path(tmp) / "ckpt")
        exported = export_bundle(Path(tmp) / "ckpt", Path(tmp) / "bundle", attention=args.attention)
        bundle = runtime.load(Path(tmp) / "bundle")
        worst = max(o.max_abs for o in exported.report.worst.values())
        print(f"{args.preset} preset, {model.num_parameters() / 1e6:.1f}M parameters, {args.attention} attention, "
              f"parity max abs {worst:.2g}; torch threads {torch.get_num_threads()}")
        print(f"{'batch x seq':>12} {'onnxruntime ms':>15} {'eager ms':>10} {'speed-up':>9}")
        for batch in args.batch:
            r = bench_model(bundle, batch, args.seq, lambda feeds: eager_runner(model, feeds), min_seconds=args.seconds)
            print(f"{batch:>5} x {args.seq:<5} {r.runtime.median_ms:>15.2f} {r.eager.median_ms:>10.2f} {r.speedup:>8.2f}x")
            results.append(r.to_json())
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"preset": args.preset, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
