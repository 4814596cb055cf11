"""Generation speed: the key/value cache against full recomputation, and edgeformer against `transformers`.

Builds a randomly initialised GPT-2 with `transformers`' own GPT2Config (the shape of GPT-2
small by default: 12 layers x 768 wide, 50257 tokens), imports the same weights into edgeformer
(modeling/hf.py), and exports them twice: with the cache (--kv-cache) and without. Speed does not
depend on the weights' values. In one process run, on the same CPU:

1. per-token decode latency at --context tokens: one step of the cached graph (one new token,
   context - 1 cached) against recomputing the whole context with the plain bundle, each median
   of many calls in its own block;
2. greedy generation of --new-tokens after a --prompt-tokens prompt at batch 1: edgeformer's
   runtime (`model.generate`, cache kept in ONNX Runtime through I/O binding, and the same with the
   cache passed through numpy) against `GPT2LMHeadModel.generate` in PyTorch eager, alternating
   blocks for --rounds rounds; the tokens of both sides are compared;
3. quantized generation (benchmarks/generation_quantized.py): the cached bundle through
   `edgeformer quantize` with each recipe, tokens/s, prompt latency and size at --threads threads,
   and each recipe's fidelity on the demo's trained decoder.

    python benchmarks/generation.py [--layers 12] [--width 768] [--context 256] [--new-tokens 128] [--json FILE]
                                    [--parts cache,transformers,quantized] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgeformer import runtime
from edgeformer.export import export_bundle
from edgeformer.modeling.hf import import_hf
from edgeformer.runtime.bench import stats, time_block
from edgeformer.runtime.cpu import cpu_model

import generation_quantized
from edgeformer.runtime.generate import CachedDecoder


def build_gpt2(tmp: Path, layers: int, width: int, heads: int, positions: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=layers, n_embd=width, n_head=heads, n_positions=positions)
    hf = GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp / "hf", safe_serialization=True)
    return hf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--parts", default="cache,transformers,quantized", help="Which sections to run.")
    ap.add_argument("--threads", type=int, default=2, help="Section 3: ONNX Runtime intra-op threads.")
    ap.add_argument("--quick-fidelity", action="store_true", help="Section 3: train the demo decoder as --quick does.")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    out: dict = {"args": vars(args), "cpu": cpu_model(), "load_before": os.getloadavg()}
    print(f"CPU: {out['cpu']}, load average {out['load_before'][0]:.2f} {out['load_before'][1]:.2f} {out['load_before'][2]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        hf = build_gpt2(tmp, args.layers, args.width, args.heads, positions=1024)
        import_hf(tmp / "hf", tmp / "ckpt")
        # The random weights read any ids; a small tokenizer lets `edgeformer quantize` measure on text (section 3).
        generation_quantized.text_tokenizer().save(tmp / "ckpt" / "tokenizer.json")
        cached = export_bundle(tmp / "ckpt", tmp / "cached", kv_cache=True, cases=[(1, 1, 2), (2, 24, 2), (1, 250, 2)])
        exported = [cached]
        if parts & {"cache", "transformers"}:
            plain = export_bundle(tmp / "ckpt", tmp / "plain", cases=[(1, 16), (2, 64), (1, args.context)])
            exported.append(plain)
        worst = max(max(o.max_abs for o in r.report.worst.values()) for r in exported)
        print(f"GPT-2 shape: {args.layers} layers x {args.width} wide, {hf.num_parameters() / 1e6:.1f}M parameters; "
              f"exported with and without the cache in {time.perf_counter() - t0:.0f} s, parity max abs {worst:.2g}; "
              f"torch threads {torch.get_num_threads()}")
        vocab = hf.config.vocab_size
        if "quantized" in parts:
            print("\n3. quantized generation")
            speed_rows = generation_quantized.speed(tmp, tmp / "cached", args.prompt_tokens, args.new_tokens, args.rounds,
                                                    args.threads)
            fid_rows = generation_quantized.fidelity(tmp, args.quick_fidelity)
            generation_quantized.print_tables(speed_rows, fid_rows, args)
            out["quantized"] = {"speed": speed_rows, "fidelity": fid_rows, "threads": args.threads}
        if parts & {"cache", "transformers"}:
            sections_1_2(args, tmp, hf, worst, vocab, out)
    out["load_after"] = os.getloadavg()
    print(f"\nload average (1, 5, 15 min): before {out['load_before'][0]:.2f} {out['load_before'][1]:.2f} "
          f"{out['load_before'][2]:.2f}, after {out['load_after'][0]:.2f} {out['load_after'][1]:.2f} {out['load_after'][2]:.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")


def sections_1_2(args, tmp: Path, hf, worst: float, vocab: int, out: dict) -> None:
    """The cache against recomputation, and edgeformer's generation against transformers'."""
    model = runtime.load(tmp / "cached")
    full = runtime.load(tmp / "plain")

    # 1. One token at `context`: cached step against full recomputation.
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab, size=(1, args.context))
    decoder = CachedDecoder(model)
    _, past = decoder(ids[:, :-1], np.ones((1, args.context - 1), np.int64),
                      np.arange(args.context - 1)[None], decoder.empty_past(1))
    step = (ids[:, -1:], np.ones((1, args.context), np.int64), np.array([[args.context - 1]]))
    cached_ms = stats(time_block(lambda: decoder(*step, past), 5, 20, 5000, args.seconds)).median_ms
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    full_ms = stats(time_block(lambda: full.session.run(None, feeds), 3, 10, 1000, args.seconds)).median_ms
    print(f"\nper-token decode latency at {args.context} tokens of context (batch 1, median):")
    print(f"  with the cache (1 new token, {args.context - 1} cached)   {cached_ms:8.2f} ms")
    print(f"  without (recompute all {args.context} tokens)         {full_ms:8.2f} ms")
    print(f"  speed-up                                      {full_ms / cached_ms:8.2f}x  (target >= 5x)")
    out["decode"] = {"context": args.context, "cached_ms": cached_ms, "full_ms": full_ms, "speedup": full_ms / cached_ms}

    # 2. Greedy generation, tokens per second, edgeformer runtime against transformers' generate.
    prompt = rng.integers(0, vocab, size=(1, args.prompt_tokens))
    n = args.new_tokens
    times = {"edgeformer (I/O binding)": [], "edgeformer (cache via numpy)": [], "transformers generate": []}
    tokens = {}

    def ours(io_binding: bool):
        r = model.generate(prompt, max_new_tokens=n, io_binding=io_binding)
        return r.token_ids[0]

    def theirs():
        with torch.no_grad():
            g = hf.generate(torch.from_numpy(prompt), attention_mask=torch.ones(1, args.prompt_tokens, dtype=torch.long),
                            max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        return g[0, args.prompt_tokens:].tolist()

    runs = {"edgeformer (I/O binding)": lambda: ours(True), "edgeformer (cache via numpy)": lambda: ours(False),
            "transformers generate": theirs}
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(args.rounds):
        for name, fn in runs.items():
            for _ in range(2):
                t = time.perf_counter()
                tokens[name] = fn()
                times[name].append(time.perf_counter() - t)
    same = tokens["edgeformer (I/O binding)"] == tokens["transformers generate"]
    agree = sum(a == b for a, b in zip(tokens["edgeformer (I/O binding)"], tokens["transformers generate"]))
    print(f"\ngreedy generation, batch 1, {args.prompt_tokens}-token prompt + {n} new tokens "
          f"(median of {2 * args.rounds} runs, {args.rounds} alternating rounds):")
    base = n / float(np.median(times["transformers generate"]))
    rows = {}
    for name, ts in times.items():
        med = float(np.median(ts))
        rows[name] = {"seconds": med, "tokens_per_s": n / med, "vs_transformers": n / med / base}
        print(f"  {name:<30} {med * 1e3:9.1f} ms  {n / med:8.1f} tokens/s  {n / med / base:5.2f}x")
    print(f"  greedy tokens identical to transformers: {same} ({agree}/{n} positions agree); target >= 1.5x")
    out["generate"] = {"rows": rows, "same_tokens": same, "agreeing_positions": agree, "parity_max_abs": worst}


if __name__ == "__main__":
    main()
