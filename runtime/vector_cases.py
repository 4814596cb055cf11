"""The cases recorded into a bundle's vectors.json, by bundle kind (docs/vectors.md says why each).

    every bundle             run: padded random inputs at two sizes (a cached decoder: its prompt step)
    text encoder             embed and/or classify: built-in texts (accents, CJK, emoji, code, one
                             past the model's length), with the token ids they became
    cached decoder, seq2seq  generate: greedy, and sampled with a seed
    image classifier         classify_images: a deterministic uint8 batch
    speech (Conformer)       transcribe: tones and noise clips; run: padded waveforms
    keyword spotter          classify_audio: the same clips; run: padded waveforms

Each kind's task cases and run inputs are its entry in runtime/kinds.py (built in runtime/examples.py).
Inputs are drawn from fixed seeds: recording the same bundle twice writes the same file.
Tolerances (`atol`) are relative to each case's largest expected value (see `tolerance`).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np

from .errors import EdgeformerError
from .kinds import kind_of
from .records import BLOCK_RECIPES

FORMAT = "edgeformer.vectors"
FORMAT_VERSION = 1
# The largest |this runtime - another| allowed, times max(1, the case's largest |expected value|):
# float32: NEON vs AVX kernels measured 1.5e-8 to 7.8e-7 (deploy/arm64.py), onnxruntime-web's WASM
#   vs native about 1.5e-6: 1e-5 passes rounding and fails a wrong pooling, mask or normalisation.
FLOAT32_TOL = 1e-5
# quantized: int8 products sum exactly on every CPU, but the float arithmetic around them (dynamic
#   activation scales) can land on the other side of a rounding step: measured up to 5.7e-4 relative
#   between x86 VNNI and ARM (deploy/arm64.py), under 1e-6 between x86 AVX2 and ARM with 7-bit weights.
QUANT_TOL = 5e-3
# int4 (MatMulNBits at accuracy_level 4 quantizes activations to int8 per block, each CPU's kernel its
#   own way): a tiny decoder's logits differed by 7.2e-3 between x86 AVX2 and emulated Cortex-A76, while
#   int4's own error against float32 there is 6.4e-2 (an encoder's hidden states: 9.6e-2): 2e-2 sits between.
INT4_TOL = 2e-2
MAX_VALUES = 65536  # an output larger than this (a big vocabulary's logits) is left out of a run case,
MAX_CASE_VALUES = 131072  # and outputs past this many values in all (a deep model's cache), in graph order
PROMPT_SETS = [["The quick brown fox", "Edge devices"], ["A small model", "The lazy dog sleeps near the data"],
               ["Numbers from the same kernels", "Run it"]]  # tried in order (generation_cases)
GREEDY_TOKENS = 32
GREEDY = {"temperature": 0.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0, "seed": None}
SAMPLED = {"temperature": 0.8, "top_k": 20, "top_p": 0.95, "repetition_penalty": 1.0, "seed": 7}


# ------------------------------------------------------------------------------------------ calls


def call_run(model, args: dict) -> dict:
    return {"outputs": model(args["inputs"])}


def call_embed(model, args: dict) -> dict:
    return {"embeddings": model.embed(args["texts"], normalize=args["normalize"])}


def call_classify(model, args: dict) -> dict:
    c = model.classify(args["texts"])
    return {"labels": c.labels, "probabilities": c.probabilities}


def call_generate(model, args: dict) -> dict:
    g = model.generate(args["prompt"], max_new_tokens=args["max_new_tokens"], temperature=args["temperature"],
                       top_k=args["top_k"], top_p=args["top_p"], repetition_penalty=args["repetition_penalty"],
                       seed=args["seed"])
    return {"token_ids": g.token_ids, "texts": g.texts, "stop_reasons": g.stop_reasons}


def call_classify_images(model, args: dict) -> dict:
    c = model.classify_images(args["images"], layout=args["layout"])
    return {"labels": c.labels, "probabilities": c.probabilities}


def call_transcribe(model, args: dict) -> dict:
    return {"texts": model.transcribe(list(args["waveforms"]), sample_rate=args["sample_rate"])}


def call_classify_audio(model, args: dict) -> dict:
    c = model.classify_audio(list(args["waveforms"]), sample_rate=args["sample_rate"])
    return {"labels": c.labels, "probabilities": c.probabilities}


# call -> (function, the args it needs, the expect keys it gives)
CALLS: dict[str, tuple[Callable[[Any, dict], dict], tuple[str, ...], tuple[str, ...]]] = {
    "run": (call_run, ("inputs",), ("outputs",)),
    "embed": (call_embed, ("texts", "normalize"), ("embeddings",)),
    "classify": (call_classify, ("texts",), ("labels", "probabilities")),
    "generate": (call_generate, ("prompt", "max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty",
                                 "seed"), ("token_ids", "texts", "stop_reasons")),
    "classify_images": (call_classify_images, ("images", "layout"), ("labels", "probabilities")),
    "transcribe": (call_transcribe, ("waveforms", "sample_rate"), ("texts",)),
    "classify_audio": (call_classify_audio, ("waveforms", "sample_rate"), ("labels", "probabilities")),
}
TEXT_CALLS = ("embed", "classify")


def call(model, case: dict) -> dict:
    """Run one case's call on `model`; its answers as the case's `expect` holds them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the long text's truncation is part of the case
        return CALLS[case["call"]][0](model, case["args"])


def recorded_by(model) -> dict:
    """The header of a vectors file: format, and where and on which graph the answers were recorded."""
    import onnxruntime

    from .artifacts import package_versions
    from .cpu import describe

    host = describe()
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "recorded": {"runtime": "python", "edgeformer": package_versions(("edgeformer",)).get("edgeformer"),
                         "onnxruntime": onnxruntime.__version__, "cpu": host["cpu"], "machine": host["machine"],
                         "int8_class": host["int8_class"], "graph": model.manifest.graph}}


def record_vectors(model) -> dict:
    """The header and every case of `model`'s kind, answered by this runtime."""
    base = tolerance(model.manifest)
    cases = [answer(model, name, kind, args, base) for name, kind, args in case_args(model)]
    if kind_of(model.manifest).generates:
        cases += generation_cases(model, base)
    return {**recorded_by(model), "cases": cases}


def answer(model, name: str, kind: str, args: dict, base: float) -> dict:
    """One case: its call and arguments, the answer this runtime gives, its tolerance."""
    case = {"name": name, "call": kind, "args": args}
    if kind in TEXT_CALLS or (kind == "generate" and isinstance(args["prompt"][0], str)):
        case["tokens"] = fed_tokens(model, args.get("texts", args.get("prompt")), truncate=kind in TEXT_CALLS)
    expect = call(model, case)
    if kind == "run":
        expect = {"outputs": recordable_outputs(expect["outputs"])}
    case["expect"] = expect
    case["atol"] = base * max(1.0, largest(expect))
    if kind == "generate":
        case["stable_steps"] = stable_steps(model, args, expect, base)
    return case


def generation_cases(model, base: float) -> list[dict]:
    """`greedy` and `sampled` from the candidate prompts whose choices have the most margin (the first
    whose every step has one): a near tie makes a step that another runtime may decide otherwise."""
    best: tuple[int, list[dict]] | None = None
    for prompt in candidate_prompts(model):
        common = {"prompt": prompt, "max_new_tokens": new_tokens(model, prompt)}
        pair = [answer(model, "greedy", "generate", {**common, **GREEDY}, base),
                answer(model, "sampled", "generate", {**common, **SAMPLED}, base)]
        stable = sum(sum(c["stable_steps"]) for c in pair)
        if best is None or stable > best[0]:
            best = (stable, pair)
        if all(n >= len(ids) + (why == "stop") for c in pair
               for n, ids, why in zip(c["stable_steps"], c["expect"]["token_ids"], c["expect"]["stop_reasons"])):
            break
    return best[1]


def candidate_prompts(model) -> list:
    if model.bundle.tokenizer_path is not None:
        return PROMPT_SETS
    return [id_prompts(model, k) for k in range(len(PROMPT_SETS))]


def tolerance(manifest) -> float:
    if not manifest.quantization:
        return FLOAT32_TOL
    q = manifest.quantization
    if q.recipe in BLOCK_RECIPES:  # at accuracy_level 0 (a web folder's copy) MatMulNBits computes in float32
        return FLOAT32_TOL if q.accuracy_level == 0 else INT4_TOL
    return QUANT_TOL


def recordable_outputs(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs a run case keeps: finite, at most MAX_VALUES each and MAX_CASE_VALUES together."""
    kept, total = {}, 0
    for name, a in outputs.items():
        if a.size <= MAX_VALUES and total + a.size <= MAX_CASE_VALUES and (a.dtype.kind != "f" or np.isfinite(a).all()):
            kept[name], total = a, total + a.size
    return kept


def largest(value) -> float:
    """The largest |x| over the float tensors in an expect tree."""
    if isinstance(value, dict):
        return max((largest(v) for v in value.values()), default=0.0)
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size:
        return float(np.abs(value).max())
    return 0.0


def case_args(model) -> list[tuple[str, str, dict]]:
    """(name, call, args) of every case: the task cases of the bundle's kind, then its padded run inputs."""
    kind = kind_of(model.manifest)
    cases = kind.task_cases(model)
    return cases + [(f"padded-{i}", "run", {"inputs": inputs}) for i, inputs in enumerate(kind.run_inputs(model))]


def stable_steps(model, args: dict, expect: dict, base: float) -> list[int]:
    """Per row, how many of its first steps chose their token with a margin: a choice that no change of
    the logits within base x max(1, |logits|) could flip (runtime.sampling.stable_choice). A port must
    agree on those; past a near tie, a runtime whose logits differ by rounding may go another way."""
    from .generate import generate
    from .sampling import Sampling, SplitMix64, stable_choice

    if args["repetition_penalty"] != 1.0:
        raise EdgeformerError("test vectors record generation without a repetition penalty")
    sampling = Sampling(args["temperature"], args["top_k"], args["top_p"])
    g = generate(model, args["prompt"], max_new_tokens=args["max_new_tokens"], temperature=args["temperature"],
                 top_k=args["top_k"], top_p=args["top_p"], seed=args["seed"], return_logits=True)
    draws = SplitMix64(args["seed"] if args["seed"] is not None else 0)
    rows = len(expect["token_ids"])
    steps = [len(ids) + (reason == "stop") for ids, reason in zip(expect["token_ids"], expect["stop_reasons"])]
    stable, broken = [0] * rows, [False] * rows
    for step, logits in enumerate(g.logits):
        u = draws.random(rows) if not sampling.greedy else np.zeros(rows)
        for row in range(rows):
            if broken[row] or step >= steps[row]:
                continue
            x = logits[row].astype(np.float64)
            if stable_choice(x, sampling, float(u[row]), base * max(1.0, float(np.abs(x).max()))):
                stable[row] += 1
            else:
                broken[row] = True
    return stable


def fed_tokens(model, texts, truncate: bool) -> list[list[int]]:
    """The ids the runtime's tokenizer gives each text, cut to the model's length when `truncate`
    (what embed and classify feed, without padding; a prompt is fed whole)."""
    tok = model.tokenizer
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise EdgeformerError("a text case holds something other than texts")
    if not truncate:
        return [tok.encode(t) for t in texts]
    max_len = model.manifest.axes.get("seq", {}).get("max") or 512
    batch = tok.encode_batch(texts, max_len, truncation=True)
    return [row[:n].tolist() for row, n in zip(batch.input_ids, batch.attention_mask.sum(axis=1))]


def id_prompts(model, offset: int = 0) -> list[list[int]]:
    """Two prompts of token ids (5 and 2 tokens) that are neither padding nor a stop token; `offset`
    gives another pair."""
    cache, vocab = model.manifest.cache, int(model.manifest.config["vocab_size"])
    avoid = {int(cache.pad_id), *([int(cache.eos_id)] if getattr(cache, "eos_id", None) is not None else [])}
    ids = [i for i in range(4, vocab) if i not in avoid] or [i for i in range(vocab) if i not in avoid]
    pick = lambda k: ids[(k * 37 + offset * 11) % len(ids)]  # noqa: E731  spread over the vocabulary
    return [[pick(k) for k in range(5)], [pick(k) for k in range(5, 7)]]


def new_tokens(model, prompt) -> int:
    """GREEDY_TOKENS, or what the context leaves after the longest prompt."""
    from .generate import decoder_for

    lengths = [len(p) for p in fed_tokens(model, prompt, truncate=False)] if isinstance(prompt[0], str) \
        else [len(p) for p in prompt]
    room = decoder_for(model).room(max(lengths))
    if room < 1:
        raise EdgeformerError(f"{model.bundle.path}: the test prompts leave no room to generate")
    return min(GREEDY_TOKENS, room)


