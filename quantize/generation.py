"""`edgeformer quantize` for generation bundles: a key/value-cache decoder, or seq2seq (encoder + cached decoder).

Every graph of the bundle goes through the same recipe; the cache interface (past/present names,
float32 dtypes, shapes, the `logits_to_keep` input) stays as it was, so `generate`, `stream` and the
CLI run the result as they ran the float32 bundle. What each recipe covers, per graph (recorded in the manifest's
quantization `coverage`):

    weight MatMuls                 every recipe (int8-static keeps the FFN output projections float)
    LM head (tied or not)          every recipe: a tied head is first given its own weight (lm_head.py),
                                   except in fp16, where the one tied table is stored in float16
    token-embedding Gather         int8-dynamic, int8-static: int8; int4: 4-bit blocks, shared with a tied
                                   head (tied_int4.py); int8-weights: a tied head's 8-bit blocks, else
                                   float32; fp16: the float16 table, read through a Cast
    position tables (Gather)       float32: small, and read once per token
    cross-attention K/V (seq2seq)  as the weight MatMuls: they sit in encoder.onnx, run once per source

Fidelity is measured on what users see (generation_eval.py). With a budget (`max_drop`: the
relative perplexity increase, or exact-match points for seq2seq with metric "exact-match"), a
bundle that loses too much gets its most sensitive MatMuls back in float, one at a time, until the
budget holds; if it never does, nothing is written.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from edgeformer import runtime
from edgeformer.runtime.artifacts import atomic_directory
from edgeformer.runtime.bundle import SEQ2SEQ, TOKENIZER_FILE, ParityRecord, QuantizationRecord, write_manifest
from edgeformer.runtime.records import BLOCK_RECIPES
from edgeformer.runtime.graph_files import graph_bytes, save_options
from edgeformer.runtime.vectors import write_vectors
from edgeformer.runtime.cpu import describe
from edgeformer.runtime.generate import empty_cache

from .budget import keep_within_budget
from .calibration import default_calibration_texts
from .evaluate import EvalSet
from .generation_eval import (BUDGET_METRICS, EXACT_MATCH, GenerationData, check_data, default_generation_data,
                              GenerationFidelity, evaluate_generation, every_position, read_generation_data,
                              teacher_forced_batches)
from .lm_head import fold_transposed_weights, tied_heads
from .source_blocks import BLOCK, SourceBlocks, keep_source_blocks, source_blocks
from .tied_int4 import share_tied_tables
from .recipes import QuantizeError, RecipeOptions, activation_fed_matmuls, apply_recipe, quantizable_matmuls
from .record import quantization_record, quantized_manifest
from .result import BudgetError, QuantizeResult

SENSITIVITY_ROWS = 16  # texts (or pairs) that rank nodes; the final check uses the whole evaluation set
TOKEN_EMBEDDING = {"int8-dynamic": "int8", "int8-static": "int8", "int4": "int4", "int8-weights": "float32",
                   "fp16": "float32"}


def check_cache_graph(model: runtime.Model) -> None:
    """Refuse a generation bundle whose manifest's cache record does not describe its graphs."""
    cache = model.manifest.cache
    where = model.bundle.path
    if cache is None:
        raise QuantizeError(f"{where} is a {model.manifest.kind} bundle without a cache record; the bundle is inconsistent")
    outputs = [o.name for o in model.session.get_outputs()]
    if outputs != ["logits"] + list(cache.present):
        raise QuantizeError(f"{where}/{model.manifest.graph} returns {outputs}; the manifest's cache record expects "
                            f"logits + {len(cache.present)} present tensors")
    inputs = {i.name: i for i in model.session.get_inputs()}
    expected = list(cache.past) + list(cache.cross or [])
    for name in expected:
        shape = inputs[name].shape if name in inputs else None
        if shape is None or len(shape) != 4 or shape[1] != cache.heads or shape[3] != cache.head_dim:
            raise QuantizeError(f"{where}/{model.manifest.graph}: cache input {name} is {shape or 'missing'}; the manifest "
                                f"records (batch, {cache.heads}, past, {cache.head_dim})")
    if cache.logits_to_keep is not None and cache.logits_to_keep not in inputs:
        raise QuantizeError(f"{where}/{model.manifest.graph} has no input {cache.logits_to_keep}; the manifest's cache "
                            "record says the graph takes it")
    if len(cache.past) != 2 * cache.layers:
        raise QuantizeError(f"{where}: the cache record lists {len(cache.past)} past tensors for {cache.layers} layers; "
                            "expected a key and a value per layer")
    if model.manifest.kind == SEQ2SEQ:
        enc = [o.name for o in model.graph("encoder").session.get_outputs()]
        if enc != list(cache.cross or []):
            raise QuantizeError(f"{where}/{cache.encoder} returns {enc}; the manifest's cache record expects {cache.cross}")


def graph_files(model: runtime.Model) -> list[str]:
    return [g.file for g in model.manifest.graphs]


def _reaches(model: onnx.ModelProto, targets: set[str]) -> set[str]:
    """Names of the MatMul nodes whose output reaches one of `targets` without passing another MatMul."""
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    found = set()
    for n in model.graph.node:
        if n.op_type != "MatMul":
            continue
        stack, seen = list(n.output), set()
        while stack:
            v = stack.pop()
            if v in targets:
                found.add(n.name)
                break
            for c in consumers.get(v, []):
                if c.op_type != "MatMul" and c.name not in seen:
                    seen.add(c.name)
                    stack += list(c.output)
    return found


def side_gathers(model: onnx.ModelProto) -> list[str]:
    """Gathers of weight tables that are not indexed by input_ids (position tables): kept float32."""
    weights = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "Gather" and n.input[0] in weights and n.input[1] != "input_ids"]


@dataclasses.dataclass
class PreparedGraph:
    """One float32 graph ready for a recipe: its tied head folded, what stays float by policy."""

    file: str
    path: Path
    matmuls: list[str]  # weight MatMuls (the LM head included)
    lm_head: list[str]
    cross_kv: list[str]  # seq2seq encoder: the cross-attention key/value projections
    exclude: list[str]  # kept float by the recipe's policy (position tables; int8-static's FFN outputs)
    tied: list[tuple[str, str]]  # (embedding output, logits output) of a head tied to the embedding
    blocks: dict[str, SourceBlocks] = dataclasses.field(default_factory=dict)  # block recipes: MatMul output -> its GGUF blocks


def prepare_graphs(model: runtime.Model, work: Path, recipe: str, block_size: int = 32) -> list[PreparedGraph]:
    prepared = []
    cache = model.manifest.cache
    for file in graph_files(model):
        graph = onnx.load(str(model.bundle.path / file))
        tied = tied_heads(graph)
        if recipe != "fp16":  # float16 converts the one table (the Gather reads it through a Cast): no second copy
            fold_transposed_weights(graph)
        path = work / f"float-{file}"
        onnx.save(graph, str(path))
        matmuls = quantizable_matmuls(graph)
        head = sorted(_reaches(graph, {"logits"}) & set(matmuls))
        cross = sorted(_reaches(graph, set(cache.cross or [])) & set(matmuls)) if file == cache.encoder else []
        exclude = side_gathers(graph) + (activation_fed_matmuls(graph) if recipe == "int8-static" else [])
        keeps = recipe in BLOCK_RECIPES and block_size == BLOCK  # a GGUF's blocks, kept as they are: the model's own weights
        blocks = source_blocks(graph, matmuls) if keeps else {}
        prepared.append(PreparedGraph(file, path, matmuls, head, cross, exclude, tied, blocks))
    return prepared


def coverage(prepared: list[PreparedGraph], recipe: str, kept: dict[str, list[str]]) -> dict:
    out = {}
    for g in prepared:
        floats = set(g.exclude) | set(kept.get(g.file, []))
        quantized = [m for m in g.matmuls if m not in floats]
        entry = {"weight_matmuls": f"{len(quantized)}/{len(g.matmuls)}", "token_embedding": TOKEN_EMBEDDING[recipe],
                 "position_tables": "float32"}
        if recipe == "fp16" and g.tied:  # the tied table itself is stored in float16, read by both
            entry.update(lm_head="fp16", lm_head_tied=True, token_embedding="float16, shared with the LM head")
        if g.lm_head:
            entry["lm_head"] = recipe if all(m not in floats for m in g.lm_head) else "float32"
            entry["lm_head_tied"] = bool(g.tied)
            if recipe in BLOCK_RECIPES and g.tied and entry["lm_head"] == recipe:
                entry["token_embedding"] = f"int{BLOCK_RECIPES[recipe]}, shared with the LM head"
        kinds = [b.kind for b in g.blocks.values() if b.node not in floats]
        if kinds:  # int4, int8-weights: the weights that kept the source file's blocks (quantize/source_blocks.py)
            entry["source_blocks"] = {k: kinds.count(k) for k in sorted(set(kinds))}
            head_kinds = {b.kind for b in g.blocks.values() if b.node in g.lm_head and b.node not in floats}
            if head_kinds == {"q8_0"}:
                entry["lm_head"] = "int8, the source's Q8_0 blocks"
                if g.tied:
                    entry["token_embedding"] = "int8, shared with the LM head"
        if g.cross_kv:
            entry["cross_attention_kv"] = f"{sum(m not in floats for m in g.cross_kv)}/{len(g.cross_kv)}"
        out[g.file] = entry
    return out


def calibration_feeds(model: runtime.Model, data: GenerationData, rows: int = 64, batch_rows: int = 8) -> dict[str, list]:
    """int8-static's calibration batches per graph file, every batch of one graph the same shape.

    A cached decoder calibrates on texts (one prefill step each, empty past); seq2seq on (source,
    target) pairs: the encoder on the sources, the decoder teacher-forced on the targets.
    """
    seq2seq = model.manifest.kind == SEQ2SEQ
    if (seq2seq and not data.pairs) or (not seq2seq and not data.texts):
        raise QuantizeError("int8-static calibrates on " + ("(source, target) pairs; give --calib-data as JSON Lines with "
                            "\"text\" and \"target\"" if seq2seq else "prompts; the calibration set is empty"))
    sample = GenerationData(texts=data.texts[:rows], pairs=data.pairs[:rows])
    # one batch holding every row, so all are padded to one length, then split into equal batches
    (batch,) = teacher_forced_batches(model, sample, batch_size=rows)
    cache = model.manifest.cache
    n = len(batch.targets)
    size = max(d for d in range(1, min(batch_rows, n) + 1) if n % d == 0)
    out: dict[str, list] = {model.manifest.graph: []}
    if seq2seq:
        out[cache.encoder] = []
    for i in range(0, n, size):
        rows_of = lambda feeds: {k: np.ascontiguousarray(v[i:i + size]) for k, v in feeds.items()}  # noqa: E731
        feeds = {**rows_of(batch.decoder), **every_position(cache)}  # the head calibrated on every position
        feeds.update(zip(cache.past, empty_cache(cache, size, io_binding=False)))
        if seq2seq:
            source = rows_of(batch.source)
            out[cache.encoder].append(source)
            feeds.update(zip(cache.cross, model.graph("encoder").session.run(cache.cross, source)))
        out[model.manifest.graph].append(feeds)
    return out


def write_candidate(ref: runtime.Model, recipe: str, prepared: list[PreparedGraph], opt: RecipeOptions,
                    kept: dict[str, list[str]], calib: dict[str, list] | None, dst: Path) -> runtime.Model:
    """Quantize every graph into `dst` (a bundle directory with the float32 bundle's manifest) and load it."""
    for g in prepared:
        graph_opt = dataclasses.replace(opt, exclude=opt.exclude + g.exclude + kept.get(g.file, []),
                                        calibration_batches=calib.get(g.file) if calib else None)
        apply_recipe(recipe, g.path, dst / g.file, graph_opt)
        if recipe in BLOCK_RECIPES and (g.tied or g.blocks):
            graph = onnx.load(str(dst / g.file))
            keep_source_blocks(graph, g.blocks)
            share_tied_tables(graph, g.tied)
            onnx.save(graph, str(dst / g.file), **save_options(graph, dst / g.file))
    if not (dst / TOKENIZER_FILE).exists():
        shutil.copyfile(ref.bundle.tokenizer_path, dst / TOKENIZER_FILE)
    write_manifest(dst, quantized_manifest(ref.manifest, QuantizationRecord(recipe=recipe)))
    return runtime.load(dst, verify=False)


def by_file(nodes: list[tuple[str, str]]) -> dict[str, list[str]]:
    """(graph file, node) pairs -> graph file -> nodes."""
    out: dict[str, list[str]] = {}
    for file, node in nodes:
        out.setdefault(file, []).append(node)
    return out


def decode_speed(model: runtime.Model, prompt: list[int], new_tokens: int, seconds: float) -> dict:
    """Median prompt (prefill) latency and per-token decode latency of greedy generations, batch 1."""
    prefill, per_token, start = [], [], time.perf_counter()
    while not prefill or time.perf_counter() - start < seconds:
        g = model.generate([prompt], max_new_tokens=new_tokens, on_overflow="truncate")
        prefill.append(g.prompt_ms)
        per_token.append(g.per_token_ms)
    return {"prefill_ms": float(np.median(prefill)), "per_token_ms": float(np.median(per_token))}


def check_metric(model: runtime.Model, metric: str) -> str:
    if metric not in BUDGET_METRICS:
        raise QuantizeError(f"unknown budget metric {metric!r}; expected one of: {', '.join(BUDGET_METRICS)}")
    if BUDGET_METRICS[metric] == EXACT_MATCH and model.manifest.kind != SEQ2SEQ:
        raise QuantizeError(f"budget metric {metric} does not exist for a {model.manifest.kind} bundle (its task is "
                            "language modelling); use perplexity")
    return BUDGET_METRICS[metric]


def generation_inputs(ref: runtime.Model, recipe: str, data, calib) -> tuple[GenerationData | None, GenerationData | None]:
    """The evaluation and calibration sets as GenerationData, from EvalSets, files or the built-in texts."""
    def convert(value):
        if value is None or isinstance(value, GenerationData):
            return value
        if isinstance(value, EvalSet):
            return GenerationData(texts=list(value.texts))
        return read_generation_data(value)

    data, calib = convert(data), convert(calib)
    if recipe == "int8-static" and calib is None and ref.manifest.kind != SEQ2SEQ:
        calib = GenerationData(texts=default_calibration_texts())
    return data, calib


def quantize_generation_bundle(ref: runtime.Model, src: Path, out: Path, recipe: str, max_drop: float | None,
                               data: GenerationData | None, opt: RecipeOptions, overwrite: bool,
                               progress: Callable[[str], None], calib: GenerationData | None = None,
                               metric: str = "perplexity", bench_seconds: float = 1.0):
    """Quantize every graph of the generation bundle `ref` (loaded from `src`) into `out`; see the module doc."""
    check_cache_graph(ref)
    metric = check_metric(ref, metric)
    data = data or default_generation_data(ref)
    check_data(ref, data)
    calib_feeds = None
    if recipe == "int8-static":
        calib_feeds = calibration_feeds(ref, calib or GenerationData())
    with tempfile.TemporaryDirectory(prefix="edgeformer-quantize-") as work, atomic_directory(out, overwrite) as tmp:
        work = Path(work)
        prepared = prepare_graphs(ref, work, recipe, opt.block_size)
        candidate = lambda nodes, where: write_candidate(ref, recipe, prepared, opt, by_file(nodes), calib_feeds, where)  # noqa: E731
        cand = None

        def measure_kept(nodes: list[tuple[str, str]]) -> GenerationFidelity:
            nonlocal cand  # the last candidate measured is the one the bundle ships
            cand = candidate(nodes, tmp)
            return evaluate_generation(ref, cand, data, metric, greedy=False)

        trial, subset = work / "trial", data.subset(SENSITIVITY_ROWS)
        trial.mkdir()
        fid = measure_kept([])
        progress(f"{recipe}: {fid.metric} {fid.quant_metric:.5g} (float32 {fid.float_metric:.5g}), drop {fid.drop:.4g}")
        fid, kept_nodes = keep_within_budget(
            fid, max_drop, lambda: [(g.file, n) for g in prepared for n in g.matmuls if n not in g.exclude],
            lambda node: evaluate_generation(ref, candidate([node], trial), subset, metric, greedy=False).drop,
            measure_kept, progress, name=lambda node: f"{node[0]}:{node[1]}")
        kept = by_file(kept_nodes)
        fid = evaluate_generation(ref, cand, data, metric, greedy=True)
        kept_names = [f"{g.file}:{n}" for g in prepared for n in g.exclude + kept.get(g.file, [])
                      if n in g.matmuls]
        result = QuantizeResult(Path(out), recipe, fid, kept_names, max_drop=max_drop)
        size = lambda d: sum(graph_bytes(d / f) for f in graph_files(ref))  # noqa: E731
        result.size_ratio = size(tmp) / size(ref.bundle.path)
        if not result.passed:
            result.path = None
            raise BudgetError(result)
        prompt = ref.tokenizer.encode(data.texts[0] if data.texts else data.pairs[0][0])[:32] or [ref.manifest.cache.pad_id]
        speed_f, speed_q = (decode_speed(m, prompt, 16, bench_seconds) for m in (ref, cand))
        result.float_ms, result.quant_ms = speed_f["per_token_ms"], speed_q["per_token_ms"]
        manifest = cand.manifest
        manifest.quantization = quantization_record(
            recipe, opt, kept_names, Path(src).name, coverage=coverage(prepared, recipe, kept),
            calibration=({"rows": sum(len(b["input_ids"]) for b in calib_feeds[manifest.graph]), "method": opt.calibration,
                          "data": "given"} if calib_feeds else None))
        manifest.quantization.measured = {"size_ratio": result.size_ratio, "batch": 1, "prompt_tokens": len(prompt),
                                          "new_tokens": 16, "float32": speed_f, "quantized": speed_q, "cpu": describe()}
        manifest.parity = ParityRecord(passed=True, kind="budget", max_drop=max_drop, fidelity=fid.to_json(),
                                       eval_texts=data.rows)
        write_vectors(tmp, cand)  # recorded on the graphs written last: the ones the bundle ships
        write_manifest(tmp, manifest)
    return result


def generation_budget_parity(bundle_path, reference_config: dict, reference_logits, data: GenerationData | None = None):
    """A quantized generation bundle against its checkpoint (PyTorch's teacher-forced logits, run by the caller).

    The budget metric is the perplexity increase on the evaluation set; it passes within the budget
    recorded at quantization or, with none, within the increase then measured plus 10% and 1e-3
    (the reference changed from the float32 bundle to PyTorch). Returns (fidelity, limit, passed).
    """
    bundle = runtime.load(bundle_path)
    if reference_config != bundle.manifest.config:
        raise QuantizeError(f"the reference has a different model config from bundle {bundle_path}")
    recorded = bundle.manifest.parity
    limit = recorded.max_drop if recorded is not None and recorded.max_drop is not None else None
    if recorded is not None and (recorded.fidelity or {}).get("metric") == EXACT_MATCH:
        limit = None  # the budget was on exact match; the check here is on perplexity
    if limit is None:
        increase = (recorded.fidelity or {}).get("perplexity_increase", 0.0) if recorded is not None else 0.0
        limit = max(increase, 0.0) * 1.1 + 1e-3
    data = data or default_generation_data(bundle)
    fid = evaluate_generation(bundle, bundle, data, greedy=False, reference_logits=reference_logits)
    return fid, limit, fid.drop <= limit
