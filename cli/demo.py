"""`edgeformer demo`: the whole path on built-in data, ending in one summary table.

Trains a small encoder (stdlib-topics classification) and a small decoder (pydoc-lm language
model), exports both with fused attention behind the parity gate, runs the encoder bundle on
held-out text through the torch-free runtime, and times each bundle against PyTorch eager.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeformer import runtime
from edgeformer.export import export_bundle
from edgeformer.modeling import load as load_checkpoint
from edgeformer.modeling.data import stdlib_topics
from edgeformer.modeling.eager import eager_runner
from edgeformer.modeling.train import TrainConfig, train_checkpoint
from edgeformer.runtime.bench import bench_model

from .output import ms, table

# (arch, preset, training) for the full demo and for --quick.
PLAN = {
    "encoder": ("small", TrainConfig(epochs=6, lr=1e-3), TrainConfig(epochs=2)),
    "decoder": ("small", TrainConfig(epochs=3, lr=2e-3, steps_per_epoch=100), TrainConfig(epochs=1, steps_per_epoch=20)),
}
BENCH_SEQ = 128


def run_demo(out: str | Path, quick: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, summary = [], {"models": {}}
    for arch, (preset, full, short) in PLAN.items():
        ckpt, bundle_dir = out / f"{arch}-ckpt", out / f"{arch}-bundle"
        click.echo(f"\n== {arch}: train ({preset} preset)")
        result = train_checkpoint(ckpt, arch, preset, tc=short if quick else full, overwrite=True)
        click.echo(f"== {arch}: export with fused attention, parity gate")
        exported = export_bundle(ckpt, bundle_dir, overwrite=True)
        worst = max(o.max_abs for o in exported.report.worst.values())
        model = runtime.load(bundle_dir)
        reference = load_checkpoint(ckpt)
        seq = min(BENCH_SEQ, reference.cfg.max_len)
        click.echo(f"== {arch}: benchmark batch 1 x {seq} tokens, onnxruntime then PyTorch eager")
        bench = bench_model(model, 1, seq, lambda feeds: eager_runner(reference, feeds), min_seconds=0.5 if quick else 3.0)
        metric = ("accuracy", result.final["eval_accuracy"]) if arch == "encoder" else ("perplexity", result.final["eval_perplexity"])
        size_mb = sum(f["bytes"] for f in exported.manifest.files.values()) / 1e6
        rows.append([arch, preset, f"{reference.num_parameters() / 1e6:.2f}M", f"{metric[0]} {metric[1]:.3f}",
                     f"{worst:.1e}", f"{exported.manifest.attention['count']} x Attention", ms(bench.runtime.median_ms),
                     ms(bench.eager.median_ms), f"{bench.speedup:.2f}x", f"{size_mb:.1f}"])
        summary["models"][arch] = {"checkpoint": str(ckpt), "bundle": str(bundle_dir), "preset": preset,
                                   "parameters": reference.num_parameters(), metric[0]: metric[1],
                                   "parity_max_abs": worst, "bench": bench.to_json(), "bundle_mb": size_mb}
    summary["examples"] = classify_examples(out / "encoder-bundle")
    click.echo("\n== the encoder bundle, through the runtime, on held-out docstrings")
    for ex in summary["examples"]:
        click.echo(f"  {ex['predicted']:<12} ({ex['probability']:.2f}, true: {ex['label']:<11}) {ex['text'][:70]}")
    click.echo()
    table(f"edgeformer demo (batch 1, {BENCH_SEQ} tokens, float32, same run)",
          ["model", "preset", "params", "held-out", "parity max abs", "attention", "onnxruntime ms", "eager ms",
           "speed-up", "bundle MB"], rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    click.echo(f"checkpoints, bundles and summary.json are in {out}/")
    return summary


def classify_examples(bundle_dir: Path, n: int = 5) -> list[dict]:
    """Classify held-out docstrings through the runtime's text API (the bundle's own tokenizer)."""
    held = stdlib_topics().eval[::37][:n]
    result = runtime.load(bundle_dir).classify([t for t, _ in held])
    return [{"text": t, "label": result.label_names[y], "predicted": label, "probability": float(p.max())}
            for (t, y), label, p in zip(held, result.labels, result.probabilities)]
