"""`edgeformer demo`: the whole path on built-in data, ending in one summary table.

Trains a small encoder (stdlib-topics classification) and a small decoder (pydoc-lm language
model), exports both with fused attention behind the parity gate, runs the encoder bundle on
held-out text through the torch-free runtime, times each bundle against PyTorch eager, and
exports the decoder again with a key/value cache to generate text through the runtime.
Last, the encoder is distilled into a student with half its layers, and both are compared.
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
    click.echo("\n== decoder: export with a key/value cache, parity gate, generate through the runtime")
    summary["generation"] = generate_example(out / "decoder-ckpt", out / "decoder-cached-bundle", 24 if quick else 48)
    g = summary["generation"]
    click.echo(f"  [{g['prompt']}]{g['text']}")
    click.echo(f"  (cache parity max abs {g['parity_max_abs']:.1e}; prompt {g['prompt_ms']:.2f} ms, then "
               f"{g['per_token_ms']:.2f} ms per token; greedy with repetition penalty {GENERATE['repetition_penalty']})")
    summary["distillation"] = distill_example(out, quick)
    click.echo()
    table(f"edgeformer demo (batch 1, {BENCH_SEQ} tokens, float32, same run)",
          ["model", "preset", "params", "held-out", "parity max abs", "attention", "onnxruntime ms", "eager ms",
           "speed-up", "bundle MB"], rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    click.echo(f"checkpoints, bundles and summary.json are in {out}/")
    return summary


GENERATE = {"prompt": "The for statement", "repetition_penalty": 1.3}


def generate_example(ckpt: Path, bundle_dir: Path, max_new_tokens: int) -> dict:
    """Export the decoder with its cache and continue a prompt through the runtime (no PyTorch in the loop)."""
    exported = export_bundle(ckpt, bundle_dir, kv_cache=True, overwrite=True)
    result = runtime.load(bundle_dir).generate(GENERATE["prompt"], max_new_tokens=max_new_tokens,
                                               repetition_penalty=GENERATE["repetition_penalty"])
    return {"bundle": str(bundle_dir), "prompt": GENERATE["prompt"], "text": result.texts[0],
            "new_tokens": len(result.token_ids[0]), "stop_reason": result.stop_reasons[0],
            "parity_max_abs": max(o.max_abs for o in exported.report.worst.values()),
            "prompt_ms": result.prompt_ms, "per_token_ms": result.per_token_ms}


def classify_examples(bundle_dir: Path, n: int = 5) -> list[dict]:
    """Classify held-out docstrings through the runtime's text API (the bundle's own tokenizer)."""
    held = stdlib_topics().eval[::37][:n]
    result = runtime.load(bundle_dir).classify([t for t, _ in held])
    return [{"text": t, "label": result.label_names[y], "predicted": label, "probability": float(p.max())}
            for (t, y), label, p in zip(held, result.labels, result.probabilities)]


def distill_example(out: Path, quick: bool) -> dict:
    """Distill the demo's encoder into a student with half its layers; export both and compare."""
    from edgeformer.modeling.distill import distill_checkpoint

    from .distill_cmd import distill_report, report_rows

    click.echo("\n== encoder: distill into a student with half the layers (started from teacher blocks 0 and 3)")
    teacher, student = out / "encoder-ckpt", out / "student-ckpt"
    tc = TrainConfig(epochs=1, steps_per_epoch=12) if quick else TrainConfig(epochs=3)
    result = distill_checkpoint(teacher, "small", student, layers=2, tc=tc, overwrite=True)
    report = distill_report(teacher, student, result, out / "distill-bundles", seconds=0.3 if quick else 2.0)
    table(f"distillation report (float32, {report['seq']} tokens, same run)", *report_rows(report))
    return {"checkpoint": str(student), "result": result.to_json(), "report": report}
