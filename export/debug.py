"""`edgeformer debug BUNDLE --reference CKPT`: where a bundle first leaves its PyTorch checkpoint.

The bundle's graph runs once per input batch with the outputs of every PyTorch module exposed
(edgeformer.debug); the checkpoint runs the same inputs with forward hooks on those modules.
Which ONNX tensor is which module's output comes from the exporter's node metadata: a module's
output is the tensor its nodes produce and nodes outside it read (see GraphIndex.module_boundaries);
a leaf module's input is hooked too, so a Linear is checked on both sides. When the first tensor
over the budget is found, the weights its nodes read are checked against the module's parameters,
which names the node exactly when a weight in the graph is not the checkpoint's.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np
import torch
from onnx import numpy_helper

from edgeformer.debug.compare import FLOAT32_ATOL, QUANT_JUMP, QUANT_REL, Budget, TensorError, accumulate, valid_positions
from edgeformer.debug.graph import DebugError, GraphIndex, load_graph
from edgeformer.debug.probe import run_exposed
from edgeformer.debug.report import DebugReport
from edgeformer.debug.scopes import metadata_notes
from edgeformer.debug.search import finding_for, layer_curve, locate, walk, worst_jump
from edgeformer.modeling import checkpoint
from edgeformer.modeling.config import ModelConfig
from edgeformer.modeling.models.transformer import LayerCache, Transformer
from edgeformer.runtime.bundle import LOGITS_TO_KEEP, open_bundle
from edgeformer.runtime.inputs import example_inputs


def default_cases(max_len: int) -> list[tuple[int, int]]:
    """(batch, seq): a short single row, a padded batch, and a long padded batch (at most 128 tokens)."""
    return sorted({(1, min(7, max_len)), (2, min(16, max_len)), (2, min(128, max_len))})


def _feeds(manifest, cases: Sequence[tuple[int, int]], seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    cached = manifest.cache is not None
    out = []
    for batch, seq in cases:
        if not cached:
            out.append(example_inputs(manifest.inputs, {"batch": batch, "seq": seq}, rng, padded=True))
            continue
        # a decode step after `past` cached tokens: every token real, positions continuing the cache
        total_max = manifest.axes.get("total", {}).get("max") or 2 * seq
        seq = min(seq, total_max - 1)
        past = min(5, total_max - seq)
        feeds = {}
        for spec in manifest.inputs:
            if spec.name == "input_ids":
                feeds[spec.name] = rng.integers(0, int(spec.max or 1) + 1, size=(batch, seq), dtype=np.int64)
            elif spec.name == "attention_mask":
                feeds[spec.name] = np.ones((batch, past + seq), dtype=np.int64)
            elif spec.name == "position_ids":
                feeds[spec.name] = np.broadcast_to(np.arange(past, past + seq), (batch, seq)).astype(np.int64).copy()
            elif spec.name == manifest.cache.logits_to_keep:
                feeds[spec.name] = np.array([0], dtype=np.int64)  # every position's logits, to compare them all
            else:  # past keys/values (batch, heads, past, head dim)
                shape = tuple(batch if d == "batch" else past if d == "past" else d for d in spec.shape)
                feeds[spec.name] = rng.standard_normal(shape).astype(np.float32)
        out.append(feeds)
    return out


def _forward(model: Transformer, feeds: Mapping[str, np.ndarray], cached: bool) -> None:
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items()}
    if cached:
        n = model.cfg.n_layers
        cache = [LayerCache(t[f"past_key_values.{i}.key"], t[f"past_key_values.{i}.value"]) for i in range(n)]
        model(t["input_ids"], t["attention_mask"], position_ids=t["position_ids"], cache=cache,
              logits_to_keep=int(np.asarray(feeds.get(LOGITS_TO_KEEP, 0)).ravel()[0]))
    else:
        model(**t)


def torch_tensors(model: Transformer, index: GraphIndex, feeds_list: Sequence[Mapping[str, np.ndarray]],
                  cached: bool = False) -> tuple[list[str], list[list[tuple[str, list[str], np.ndarray]]]]:
    """Run `model` on each batch with hooks on every module the graph's metadata names.

    Returns the ONNX tensors to expose and, per batch, (module, candidate ONNX tensors, PyTorch value):
    a module's output against the tensors leaving its nodes, a module's input against those entering.
    Only tensors written by nodes that carry the exporter's metadata are candidates (a quantizer's
    new nodes are placed by their neighbours, which is not exact enough to compare). A module called
    more than once in a forward (a shared module) is left out.
    """
    named = dict(model.named_modules())

    def exact(t: str) -> bool:  # written by a node whose module the exporter recorded (not guessed from neighbours)
        k = index.producer.get(t)
        return k is not None and index.scopes[k].source == "metadata"

    targets = {m: ([t for t in ins if exact(t)], [t for t in outs if exact(t)])
               for m, (ins, outs) in index.module_boundaries().items() if m and m in named}
    seen: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)

    def keep(key, value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            seen[key].append(value.detach().float().numpy().copy())

    def on_output(name):
        return lambda module, args, output: keep((name, "out"), output)

    def on_input(name):
        return lambda module, args: keep((name, "in"), args[0]) if args else None

    handles = []
    for name in targets:
        handles.append(named[name].register_forward_hook(on_output(name)))
        handles.append(named[name].register_forward_pre_hook(on_input(name)))
    exposed: list[str] = []
    for m, (ins, outs) in targets.items():
        exposed += [t for t in ins + outs if t not in index.graph_inputs]
    per_batch = []
    model = model.eval()
    try:
        for feeds in feeds_list:
            seen.clear()
            with torch.no_grad():
                _forward(model, feeds, cached)
            items = []
            for (m, kind), values in seen.items():
                if len(values) == 1:
                    ins, outs = targets[m]
                    items.append((m, outs if kind == "out" else ins, values[0]))
            per_batch.append(items)
    finally:
        for h in handles:
            h.remove()
    return list(dict.fromkeys(exposed)), per_batch


def weight_mismatch(index: GraphIndex, region: Sequence[int], model: Transformer) -> tuple[int, str] | None:
    """The first node of `region` that reads a weight unlike every parameter of its module (transposed or not)."""
    named = dict(model.named_modules())
    for k in region:
        module = named.get(index.scopes[k].module)
        if module is None:
            continue
        params = [(n, p.detach().float().numpy()) for n, p in
                  list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))]
        for name in index.nodes[k].input:
            init = index.initializers.get(name)
            if init is None:
                continue
            w = numpy_helper.to_array(init)
            if w.dtype.kind != "f" or w.size <= 1:
                continue
            best = None
            for pname, p in params:
                if p.size != w.size:
                    continue
                views = [w.reshape(p.shape)] + ([w.T] if w.ndim == 2 and w.T.shape == p.shape else [])
                d = min(float(np.abs(v.astype(np.float64) - p).max()) for v in views)
                if best is None or d < best[0]:
                    best = (d, pname, float(np.abs(p).max()))
            if best is not None and best[0] > 1e-6 + 1e-5 * best[2]:
                where = f"{index.scopes[k].module}.{best[1]}" if index.scopes[k].module else best[1]
                return k, f"weight {name} differs from the checkpoint's {where} by max abs {best[0]:.3g}"
    return None


def debug_checkpoint(
    bundle_path: str | os.PathLike,
    reference: str | os.PathLike | Transformer,
    atol: float | None = None,
    cases: Sequence[tuple[int, int]] | None = None,
    seed: int = 0,
    rel: float = QUANT_REL,
    jump: float = QUANT_JUMP,
) -> DebugReport:
    """Compare the bundle at `bundle_path` with its PyTorch checkpoint (a path or a loaded model), module by module.

    A float32 bundle's budget is max abs error `atol` (default: the tolerance its parity gate
    recorded, 1e-4); a quantized bundle's is relative, `rel` and `jump` (see edgeformer.debug.compare).
    """
    bundle = open_bundle(bundle_path)
    manifest = bundle.manifest
    model = reference if isinstance(reference, Transformer) else checkpoint.load(reference)
    if model.cfg != ModelConfig.from_dict(manifest.config):  # older manifests lack newer fields: their defaults
        raise DebugError(f"the reference has a different model config from bundle {bundle_path}")
    if model.cfg.arch == "seq2seq":
        raise DebugError("debug compares one graph with its checkpoint; a seq2seq bundle's two graphs are not covered yet")
    if manifest.quantization:
        budget = Budget("relative", rel=rel, jump=jump)
    else:
        budget = Budget("atol", atol if atol is not None else (manifest.parity_atol or FLOAT32_ATOL))
    graph = load_graph(bundle.model_path)
    index = GraphIndex(graph)
    cached = manifest.cache is not None
    if cases is None:
        cases = default_cases(model.cfg.max_len)
        if model.cfg.vision:
            cases = [(2, model.cfg.max_len)]
    feeds_list = _feeds(manifest, cases, seed)
    exposed, per_batch = torch_tensors(model, index, feeds_list, cached)
    got_list = run_exposed(graph, exposed + index.graph_outputs, feeds_list)
    errors: dict[str, TensorError] = {}
    for feeds, got, items in zip(feeds_list, got_list, per_batch):
        refs: dict[str, np.ndarray] = {}
        for _, candidates, value in items:
            matches = [t for t in candidates if t in got and got[t].shape == value.shape]
            if len(matches) == 1 and matches[0] not in refs:
                refs[matches[0]] = value
        accumulate(errors, refs, got, valid_positions(feeds))
    rows = walk(index, errors, budget)
    finding = locate(index, rows, errors)
    if finding is not None and budget.kind == "atol":
        region = index.region(finding.row.tensor, errors)
        bad = weight_mismatch(index, region, model)
        if bad is not None:
            finding = finding_for(index, finding.row, region, bad[0], bad[1])
    notes = metadata_notes(index)
    compared_modules = {r.module for r in rows}
    notes.append(f"{len(rows)} tensors compared with PyTorch (outputs and inputs of {len(compared_modules)} modules)")
    return DebugReport("checkpoint", budget, rows, layer_curve(index, errors), finding, worst_jump(rows),
                       nodes=len(index.nodes), batches=[list(c) for c in cases], notes=notes)


def explain_parity_failure(bundle_path: str | os.PathLike, model: Transformer, atol: float | None = None) -> list[str]:
    """The lines to print when the export parity gate fails: the first diverging node and its module.

    Never raises: a debug run that cannot complete says so in its one line.
    """
    try:
        return [debug_checkpoint(bundle_path, model, atol=atol).line()]
    except Exception as e:  # a diagnosis must not hide the gate's own failure
        return [f"debug: could not locate the divergence: {(str(e).strip().splitlines() or [type(e).__name__])[0]}"]
