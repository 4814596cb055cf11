"""Quantized generation: tokens/s, prompt latency, size and fidelity of each recipe (section 3 of generation.py).

Speed: a GPT-2-small-shaped cached decoder (random weights: speed does not depend on them),
quantized by `edgeformer quantize` with each recipe; greedy generation, batch 1, a 32-token prompt
and 128 new tokens, 2 threads, every bundle timed in alternating blocks in one run.
Fidelity: the demo's decoder (pydoc-lm, "tiny" preset, trained as `edgeformer demo` trains it),
measured on held-out text of its corpus (the last 10%, never trained on).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeformer import runtime
from edgeformer.quantize import RecipeOptions, quantize_bundle
from edgeformer.quantize.generation_eval import GenerationData

# (row name, recipe, options): int4 at both compute types, since MatMulNBits' accuracy_level decides its kernel
SPEED_ROWS = [("float32", None, None), ("int8-dynamic", "int8-dynamic", RecipeOptions()),
              ("int4 (accuracy_level 0)", "int4", RecipeOptions(accuracy_level=0)),
              ("int4 (accuracy_level 4)", "int4", RecipeOptions(accuracy_level=4)), ("fp16", "fp16", RecipeOptions())]
FIDELITY_RECIPES = [("int8-dynamic", RecipeOptions()), ("int8-static", RecipeOptions()),
                    ("int4 (accuracy_level 0)", RecipeOptions(accuracy_level=0)),
                    ("int4 (accuracy_level 4)", RecipeOptions(accuracy_level=4)), ("fp16", RecipeOptions())]


def bundle_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file()) / 1e6


def held_out_paragraphs(n: int = 96) -> list[str]:
    """Paragraphs of the demo decoder's held-out text (pydoc-lm's last 10%), 80 to 600 characters."""
    from edgeformer.modeling.training.data import pydoc_corpus

    paras = [" ".join(p.split()) for p in pydoc_corpus().eval.split("\n\n")]
    return [p for p in paras if 80 <= len(p) <= 600][:n]


def text_tokenizer():
    from edgeformer.modeling.training.data import pydoc_corpus
    from edgeformer.modeling.training.tokenizer import train_tokenizer

    return train_tokenizer(pydoc_corpus().train.split("\n\n"), vocab_size=4096)


def speed(tmp: Path, cached: Path, prompt_tokens: int, new_tokens: int, rounds: int, threads: int) -> dict:
    """Quantize the big decoder with each recipe and time greedy generation, alternating bundles each round."""
    small_eval = GenerationData(texts=held_out_paragraphs(8), prompts=2, greedy_tokens=8)
    paths, quantize_s = {"float32": cached}, {}
    for name, recipe, opt in SPEED_ROWS[1:]:
        t0 = time.perf_counter()
        quantize_bundle(cached, tmp / name.replace(" ", "-"), recipe, data=small_eval, options=opt, bench_seconds=0.1)
        quantize_s[name] = time.perf_counter() - t0
        paths[name] = tmp / name.replace(" ", "-")
        print(f"  quantized {name} in {quantize_s[name]:.0f} s")
    models = {name: runtime.load(p, threads=threads) for name, p in paths.items()}
    vocab = models["float32"].manifest.config["vocab_size"]
    prompt = np.random.default_rng(0).integers(0, vocab, size=(1, prompt_tokens))
    totals = {n: [] for n in models}
    prefill = {n: [] for n in models}
    early, late = {n: [] for n in models}, {n: [] for n in models}
    for m in models.values():
        m.generate(prompt, max_new_tokens=4)  # warm-up
    for _ in range(rounds):
        for name, m in models.items():
            for _ in range(2):
                t = time.perf_counter()
                g = m.generate(prompt, max_new_tokens=new_tokens)
                totals[name].append(time.perf_counter() - t)
                prefill[name].append(g.prompt_ms)
                early[name] += g.token_ms[:16]
                late[name] += g.token_ms[-16:]
    rows = {}
    base = None
    for name in models:
        decode_s = float(np.median(totals[name]))
        tps = new_tokens / decode_s
        base = base or tps
        rows[name] = {"tokens_per_s": tps, "vs_float32": tps / base, "prefill_ms": float(np.median(prefill[name])),
                      "step_ms_first16": float(np.median(early[name])), "step_ms_last16": float(np.median(late[name])),
                      "bundle_mb": bundle_mb(paths[name]), "size_vs_float32": bundle_mb(paths[name]) / bundle_mb(cached),
                      "quantize_s": quantize_s.get(name), "runs": len(totals[name]),
                      "spread": float((np.max(totals[name]) - np.min(totals[name])) / decode_s)}
    return rows


def fidelity(tmp: Path, quick: bool) -> dict:
    """The demo's decoder, trained as the demo trains it, each recipe measured on held-out text."""
    from edgeformer.pipeline.demo_plan import PLAN
    from edgeformer.export import export_bundle
    from edgeformer.modeling.training.train import train_checkpoint

    preset, full, short = PLAN["decoder"]
    trained = train_checkpoint(tmp / "demo-decoder-ckpt", "decoder", preset, tc=short if quick else full, progress=False)
    export_bundle(tmp / "demo-decoder-ckpt", tmp / "demo-decoder", kv_cache=True)
    data = GenerationData(texts=held_out_paragraphs(), prompts=16, prompt_tokens=8, greedy_tokens=32)
    rows = {"trained": {"eval_perplexity": trained.final["eval_perplexity"]}}
    for name, opt in FIDELITY_RECIPES:
        recipe = name.split(" ")[0]
        r = quantize_bundle(tmp / "demo-decoder", tmp / f"demo-{name.replace(' ', '-')}", recipe, data=data, options=opt,
                            bench_seconds=0.2)
        f = r.fidelity
        rows[name] = {"perplexity_float32": f.float_perplexity, "perplexity": f.quant_perplexity,
                      "perplexity_increase": f.perplexity_increase, "next_token_agreement": f.next_token_agreement,
                      "greedy_agreement": f.greedy_agreement, "greedy_identical": f.greedy_identical,
                      "size_ratio": r.size_ratio}
    return rows


def print_tables(speed_rows: dict, fid_rows: dict, args) -> None:
    print(f"\nquantized generation, GPT-2 small shape, batch 1, {args.prompt_tokens}-token prompt + {args.new_tokens} new "
          f"tokens, {args.threads} threads (median of {2 * args.rounds} runs in {args.rounds} alternating rounds):")
    print(f"  {'recipe':<26}{'tokens/s':>10}{'vs fp32':>9}{'prefill ms':>12}{'step ms @<48':>14}{'step ms @>144':>15}"
          f"{'MB':>9}{'size':>8}{'spread':>8}")
    for name, r in speed_rows.items():
        print(f"  {name:<26}{r['tokens_per_s']:>10.1f}{r['vs_float32']:>8.2f}x{r['prefill_ms']:>12.1f}"
              f"{r['step_ms_first16']:>14.2f}{r['step_ms_last16']:>15.2f}{r['bundle_mb']:>9.1f}{r['size_vs_float32']:>8.1%}"
              f"{r['spread']:>8.0%}")
    print("  (spread: (slowest - fastest) / median of the runs; step ms: median decode step with fewer than 48 and more "
          "than 144 tokens of context)")
    print(f"\nfidelity on the demo's decoder (held-out pydoc-lm text; trained perplexity {fid_rows['trained']['eval_perplexity']:.2f}):")
    print(f"  {'recipe':<26}{'ppl fp32':>10}{'ppl':>9}{'increase':>10}{'next-token agree':>18}{'greedy agree':>14}"
          f"{'identical':>11}")
    for name, r in fid_rows.items():
        if name == "trained":
            continue
        print(f"  {name:<26}{r['perplexity_float32']:>10.3f}{r['perplexity']:>9.3f}{r['perplexity_increase']:>10.2%}"
              f"{r['next_token_agreement']:>18.3f}{r['greedy_agreement']:>14.3f}{r['greedy_identical']:>11.2f}")
