"""`edgeformer demo`: the whole path on built-in data, every stage timed, ending in summary tables.

Stages, in order (each one's wall and CPU seconds go to the stage table and summary.json):
  train      a small encoder (stdlib-topics, 6-way classification) and decoder (pydoc-lm language model)
  export     both with fused attention behind the parity gate; the encoder bundle classifies held-out
             docstrings through the torch-free runtime
  benchmark  each bundle against PyTorch eager, alternating blocks until the timings settle; a ratio
             whose timings did not settle is printed as unreliable, with its spread, not as a result
  quantize   the encoder bundle to int8-dynamic, measured on the held-out set (accuracy, agreement, size)
  generate   the decoder exported again with a key/value cache, continuing a prompt through the runtime;
             then quantized to int4 (its fidelity on held-out text) and continuing the same prompt
  distill    the encoder into a student with half its layers and local (sliding-window) attention;
             both exported and compared
  deploy     the encoder bundle as an Android folder (fixed shapes) and an arm64 folder
  web        the encoder bundle as a web folder, checked in headless Chromium (edgeformer.js on
             onnxruntime-web) at 1 and 2 threads; a screenshot of its page (web-demo.png)
  vision     a ViT trained on the digits images, exported, classifying held-out images (cli/demo_vision.py)
Nothing is cached between runs: every checkpoint and bundle is made again, overwriting --out.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import click

from edgeformer import runtime
from edgeformer.export import export_bundle
from edgeformer.modeling import load as load_checkpoint
from edgeformer.modeling.training.data import stdlib_topics
from edgeformer.modeling.eager import eager_runner
from edgeformer.modeling.training.train import TrainConfig, train_checkpoint
from edgeformer.pipeline.demo_plan import PLAN
from edgeformer.runtime.bench import bench_model

from .output import ms, table

# arch -> (preset, full training, --quick training). Sized so that the whole demo stays within five
# minutes on two idle cores (benchmarks/demo_time.py) while the held-out metrics stay meaningful.
DISTILL = (TrainConfig(epochs=2, lr=2e-3), TrainConfig(epochs=1, steps_per_epoch=12))  # full, --quick
# The student attends to the 32 tokens on either side of each token (computed block by block, also
# in its exported graph), the usual way a full-attention model is made to read long inputs.
STUDENT_ATTENTION = {"attention_kind": "local", "window": 32}
BENCH_SEQ = 128
# Speed-up timing, per model: at least `min_seconds` per side in 3 alternating rounds, then on until
# both sides settle or `max_seconds` (both sides together) pass.
BENCH = {"min_seconds": 1.0, "max_seconds": 6.0}
BENCH_QUICK = {"min_seconds": 0.3, "max_seconds": 1.5}
GENERATE = {"prompt": "The for statement", "repetition_penalty": 1.3}
DEPLOY = [("android", {"fixed_shape": {"batch": 1, "seq": 64}}), ("arm64", {})]


class Stages:
    """Wall-clock and CPU seconds of each stage (CPU: all of this process's threads)."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.start = time.perf_counter()

    @contextmanager
    def __call__(self, name: str, title: str):
        click.echo(f"\n== {name}: {title}")
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - w0
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start

    def rows(self) -> list[list]:
        total = self.total
        rows = [[name, f"{s:.1f}", f"{self.cpu[name]:.1f}", f"{s / total:.0%}"] for name, s in self.wall.items()]
        return rows + [["total", f"{total:.1f}", f"{sum(self.cpu.values()):.1f}", "100%"]]


def run_demo(out: str | Path, quick: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = Stages()
    summary: dict = {"quick": quick, "models": {}}
    trained = {}
    for arch, (preset, full, short) in PLAN.items():
        with stage("train", f"{arch} ({preset} preset)"):
            trained[arch] = train_checkpoint(out / f"{arch}-ckpt", arch, preset, tc=short if quick else full, overwrite=True)
    exported = {}
    with stage("export", "both with fused attention, parity gate; the encoder bundle on held-out docstrings"):
        for arch in PLAN:
            exported[arch] = export_bundle(out / f"{arch}-ckpt", out / f"{arch}-bundle", overwrite=True)
        summary["examples"] = classify_examples(out / "encoder-bundle")
        for ex in summary["examples"]:
            click.echo(f"  {ex['predicted']:<12} ({ex['probability']:.2f}, true: {ex['label']:<11}) {ex['text'][:70]}")
    rows = []
    with stage("benchmark", f"batch 1 x {BENCH_SEQ} tokens, onnxruntime and PyTorch eager in alternating blocks"):
        for arch, (preset, _, _) in PLAN.items():
            m, row = model_row(arch, preset, out, trained[arch], exported[arch], BENCH_QUICK if quick else BENCH)
            summary["models"][arch] = m
            rows.append(row)
            click.echo(f"  {arch}: {m['bench']['reason']}")
    with stage("quantize", "the encoder bundle to int8-dynamic, measured on the held-out set"):
        summary["quantization"] = quantize_example(out)
    with stage("generate", "the decoder exported with a key/value cache, generating through the runtime"):
        g = summary["generation"] = generate_example(out / "decoder-ckpt", out / "decoder-cached-bundle", 24 if quick else 48)
        click.echo(f"  [{g['prompt']}]{g['text']}")
        click.echo(f"  (cache parity max abs {g['parity_max_abs']:.1e}; prompt {g['prompt_ms']:.2f} ms, then "
                   f"{g['per_token_ms']:.2f} ms per token; greedy with repetition penalty {GENERATE['repetition_penalty']})")
        summary["quantized_generation"] = quantized_generation_example(out, quick)
    with stage("distill", "the encoder into a local-attention student with half the layers (started from teacher blocks)"):
        summary["distillation"] = distill_example(out, quick)
    with stage("deploy", "the encoder bundle for Android (fixed shapes) and arm64"):
        summary["deployments"] = deploy_example(out)
    with stage("web", "the encoder bundle as a web folder, checked in headless Chromium at 1 and 2 threads"):
        summary["web"] = web_example(out)
    with stage("vision", "a ViT trained on 8x8 digits, exported, classifying held-out images without PyTorch"):
        from .demo_vision import vision_example

        summary["vision"] = vision_example(out, quick)

    click.echo()
    table(f"edgeformer demo (batch 1, {BENCH_SEQ} tokens, float32, same run)",
          ["model", "preset", "params", "held-out", "parity max abs", "attention", "onnxruntime ms", "eager ms",
           "speed-up", "spread ort / eager", "bundle MB"], rows)
    q = summary["quantization"]
    table("int8-dynamic encoder (held-out docstrings, same run)",
          ["bundle", "accuracy", "agreement with float32", "mean cosine", "MB", "batch 1 ms"],
          [["float32", f"{q['float32_accuracy']:.3f}", "-", "-", f"{q['float32_mb']:.1f}", ms(q["float32_ms"])],
           ["int8-dynamic", f"{q['int8_accuracy']:.3f}", f"{q['agreement']:.3f}", f"{q['mean_cosine']:.4f}",
            f"{q['int8_mb']:.1f}", ms(q["int8_ms"])]])
    summary["stages"] = {name: round(s, 2) for name, s in stage.wall.items()}
    summary["stage_cpu_seconds"] = {name: round(s, 2) for name, s in stage.cpu.items()}
    summary["total_seconds"] = round(stage.total, 2)
    table("stage times", ["stage", "seconds", "CPU seconds", "share"], stage.rows())
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    click.echo(f"checkpoints, bundles, deployments and summary.json are in {out}/")
    return summary


def model_row(arch: str, preset: str, out: Path, trained, exported, timing: dict) -> tuple[dict, list]:
    """Time one bundle against PyTorch eager; its summary entry and its row of the demo table."""
    model, reference = runtime.load(exported.path), load_checkpoint(out / f"{arch}-ckpt")
    seq = min(BENCH_SEQ, reference.cfg.max_len)
    bench = bench_model(model, 1, seq, lambda feeds: eager_runner(reference, feeds), **timing)
    worst = max(o.max_abs for o in exported.report.worst.values())
    metric = ("accuracy", trained.final["eval_accuracy"]) if arch == "encoder" else ("perplexity", trained.final["eval_perplexity"])
    size_mb = sum(f["bytes"] for f in exported.manifest.files.values()) / 1e6
    spread = f"{bench.runtime.spread:.0%} / {bench.eager.spread:.0%}"
    shown = f"{metric[1]:.3f}" if metric[0] == "accuracy" else f"{metric[1]:.1f}"
    row = [arch, preset, f"{reference.num_parameters() / 1e6:.2f}M", f"{metric[0]} {shown}", f"{worst:.1e}",
           f"{exported.manifest.attention.count} x Attention", ms(bench.runtime.median_ms), ms(bench.eager.median_ms),
           bench.speedup_text(), spread, f"{size_mb:.1f}"]
    entry = {"checkpoint": str(out / f"{arch}-ckpt"), "bundle": str(exported.path), "preset": preset,
             "parameters": reference.num_parameters(), metric[0]: metric[1], "history": trained.history,
             "train_seconds": trained.seconds,
             "parity_max_abs": worst, "bench": bench.to_json(), "bundle_mb": size_mb}
    return entry, row


def held_out() -> list[tuple[str, str]]:
    """The encoder's held-out docstrings, as (text, label name)."""
    data = stdlib_topics()
    return [(t, data.labels[y]) for t, y in data.eval]


def classify_examples(bundle_dir: Path, n: int = 5) -> list[dict]:
    """Classify held-out docstrings through the runtime's text API (the bundle's own tokenizer)."""
    held = held_out()[::37][:n]
    result = runtime.load(bundle_dir).classify([t for t, _ in held])
    return [{"text": t, "label": label, "predicted": predicted, "probability": float(p.max())}
            for (t, label), predicted, p in zip(held, result.labels, result.probabilities)]


def quantize_example(out: Path) -> dict:
    """int8-dynamic of the encoder bundle, with its accuracy on the held-out set and its agreement with float32."""
    from edgeformer.quantize import EvalSet, evaluate, quantize_bundle

    held = held_out()
    src, dst = out / "encoder-bundle", out / "encoder-int8-bundle"
    # A fixed smoothing strength: "auto" would quantize once per candidate strength.
    result = quantize_bundle(src, dst, "int8-dynamic", data=EvalSet([t for t, _ in held], [y for _, y in held]),
                             overwrite=True, bench_seconds=0.3, smooth_alpha=0.7)
    session = runtime.load(dst).session
    agreement = evaluate(runtime.load(src), lambda feeds: session.run(None, dict(feeds)), EvalSet([t for t, _ in held]))
    f = result.fidelity
    mb = lambda d: sum(p.stat().st_size for p in Path(d).iterdir() if p.is_file()) / 1e6  # noqa: E731
    q = {"bundle": str(dst), "recipe": result.recipe, "smooth_alpha": result.smooth_alpha, "eval_texts": len(held),
         "float32_accuracy": f.float_metric, "int8_accuracy": f.quant_metric, "accuracy_drop": f.drop,
         "agreement": agreement.quant_metric, "mean_cosine": f.mean_cosine, "graph_size_ratio": result.size_ratio,
         "float32_mb": mb(src), "int8_mb": mb(dst), "float32_ms": result.float_ms, "int8_ms": result.quant_ms}
    click.echo(f"  accuracy {q['float32_accuracy']:.3f} -> {q['int8_accuracy']:.3f} on {len(held)} held-out docstrings, "
               f"agreement with float32 {q['agreement']:.3f}, graph {result.size_ratio:.2f}x the float32 size")
    return q


def generate_example(ckpt: Path, bundle_dir: Path, max_new_tokens: int) -> dict:
    """Export the decoder with its cache and continue a prompt through the runtime (no PyTorch in the loop)."""
    exported = export_bundle(ckpt, bundle_dir, kv_cache=True, overwrite=True)
    result = runtime.load(bundle_dir).generate(GENERATE["prompt"], max_new_tokens=max_new_tokens,
                                               repetition_penalty=GENERATE["repetition_penalty"])
    return {"bundle": str(bundle_dir), "prompt": GENERATE["prompt"], "text": result.texts[0],
            "new_tokens": len(result.token_ids[0]), "stop_reason": result.stop_reasons[0],
            "parity_max_abs": max(o.max_abs for o in exported.report.worst.values()),
            "prompt_ms": result.prompt_ms, "per_token_ms": result.per_token_ms}


def quantized_generation_example(out: Path, quick: bool) -> dict:
    """The cached decoder quantized to int4, measured on held-out text, continuing the demo's prompt."""
    from edgeformer.modeling.training.data import pydoc_corpus
    from edgeformer.quantize import quantize_bundle
    from edgeformer.quantize.generation_eval import GenerationData

    held = [p for p in (" ".join(p.split()) for p in pydoc_corpus().eval.split("\n\n")) if 80 <= len(p) <= 600]
    data = GenerationData(texts=held[:16 if quick else 48], prompts=4 if quick else 8, greedy_tokens=16)
    dst = out / "decoder-int4-bundle"
    r = quantize_bundle(out / "decoder-cached-bundle", dst, "int4", data=data, overwrite=True, bench_seconds=0.2)
    g = runtime.load(dst).generate(GENERATE["prompt"], max_new_tokens=24 if quick else 48,
                                   repetition_penalty=GENERATE["repetition_penalty"])
    f = r.fidelity
    click.echo(f"  int4: [{GENERATE['prompt']}]{g.texts[0]}")
    click.echo(f"  (perplexity {f.float_perplexity:.2f} -> {f.quant_perplexity:.2f} ({f.perplexity_increase:+.2%}) on "
               f"{len(data.texts)} held-out paragraphs, next-token agreement {f.next_token_agreement:.3f}, greedy "
               f"agreement {f.greedy_agreement:.3f}; graphs {r.size_ratio:.0%} of float32; {g.per_token_ms:.2f} ms per token)")
    return {"bundle": str(dst), "recipe": "int4", "text": g.texts[0], "new_tokens": len(g.token_ids[0]),
            "fidelity": f.to_json(), "size_ratio": r.size_ratio, "per_token_ms": g.per_token_ms}


def distill_example(out: Path, quick: bool) -> dict:
    """Distill the demo's encoder into a student with half its layers; export both and compare."""
    from edgeformer.export.distill_report import distill_report
    from edgeformer.modeling.distillation import distill_checkpoint

    from .distill_cmd import report_rows

    teacher, student = out / "encoder-ckpt", out / "student-ckpt"
    layers = max(1, load_checkpoint(teacher).cfg.n_layers // 2)
    result = distill_checkpoint(teacher, PLAN["encoder"][0], student, layers=layers, tc=DISTILL[quick], overwrite=True,
                                overrides=STUDENT_ATTENTION)
    report = distill_report(teacher, student, result, out / "distill-bundles", seconds=0.3 if quick else 1.0)
    table(f"distillation report (float32, {report['seq']} tokens, same run; student: local attention, "
          f"window {STUDENT_ATTENTION['window']})", *report_rows(report))
    return {"checkpoint": str(student), "result": result.to_json(), "report": report, "student_attention": STUDENT_ATTENTION}


def deploy_example(out: Path) -> list[dict]:
    """The encoder bundle as device folders; what each checked on this machine."""
    from edgeformer.deploy import DeployOptions, deploy

    done = []
    for target, options in DEPLOY:
        folder = out / f"encoder-{target}"
        result = deploy(out / "encoder-bundle", target, folder, DeployOptions(**options), overwrite=True)
        checks = result.deployment.checks
        shape = ",".join(f"{k}={v}" for k, v in options.get("fixed_shape", {}).items())
        click.echo(f"  {target}{f' ({shape})' if shape else ''}: {folder}/{result.deployment.graph}, see {folder}/README.md")
        for c in checks:
            click.echo(f"    {c.line()}")
        if not checks:
            click.echo("    nothing checked here (`edgeformer deploy --target arm64 --check` runs it on emulated aarch64)")
        done.append({"target": target, "folder": str(folder), "graph": result.deployment.graph,
                     "fixed_shape": options.get("fixed_shape"), "checks": [c.to_json() for c in checks]})
    return done


def web_example(out: Path) -> dict:
    """The encoder bundle as a web folder, checked in Chromium; a screenshot of its page classifying docstrings."""
    from edgeformer.deploy import DeployError, deploy, web
    from edgeformer.deploy.web_check import page_screenshot

    folder = out / "encoder-web"
    try:
        result = deploy(out / "encoder-bundle", "web", folder, overwrite=True)
    except DeployError as e:  # no Chromium or Node.js here: the rest of the demo still runs
        click.echo(f"  skipped: {e}")
        return {"skipped": str(e)}
    for c in result.deployment.checks:
        click.echo(f"    {c.line()}")
    png = page_screenshot(folder, out / "web-demo.png", web.chromium_path(), web.node_path(), web.WEB_DIR,
                          texts=[t for t, _ in held_out()[::37][:4]])
    click.echo(f"  {folder}/index.html (serve it: edgeformer serve {folder}); screenshot {png}")
    return {"folder": str(folder), "checks": [c.to_json() for c in result.deployment.checks], "screenshot": str(png),
            "pages": result.manifest.deploy.extra["web"]["pages"]}
