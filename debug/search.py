"""The divergence search: the first node in graph order whose output is over the budget.

Each compared tensor's error is set beside the error that reached its node from upstream (the
worst error of the nearest compared tensors it depends on). Error only grows downstream of a fault,
so the first node in topological order that is over the budget is the earliest place the numbers
leave the reference; the node blamed is the one of its region that reads the largest weight.
`compare_graphs` runs the whole search for a rewritten (quantized) graph against its float32 graph;
edgeformer.export.debug runs it against a PyTorch checkpoint.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx

from .compare import Budget, TensorError, accumulate, valid_positions
from .graph import GraphIndex
from .probe import run_exposed
from .report import DebugReport, Finding, LayerRow, NodeRow
from .scopes import metadata_notes

_FLOAT_DTYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}


def walk(index: GraphIndex, errors: Mapping[str, TensorError], budget: Budget) -> list[NodeRow]:
    """Every compared tensor in topological order, with the error that reached its node from upstream."""
    upstream: dict[str, TensorError] = {}
    zero = TensorError()
    rows = []
    for k, n in enumerate(index.nodes):
        inputs = [upstream.get(i, zero) for i in n.input if i and i not in index.constants]
        worst_in = TensorError(max_abs=max((e.max_abs for e in inputs), default=0.0),
                               rel=max((e.rel for e in inputs), default=0.0))
        for o in n.output:
            e = errors.get(o)
            if e is None or e.elements == 0:
                upstream[o] = worst_in
                continue
            upstream[o] = e
            s = index.scopes[k]
            origin = index.origin_node[k] if index.origin is not None else None
            float_node = None
            if index.origin is not None and o in index.origin.producer:
                float_node = index.origin.nodes[index.origin.producer[o]].name
            elif origin is not None:
                float_node = index.origin.nodes[origin].name
            rows.append(NodeRow(k, n.name, n.op_type, o, s.module, s.cls, s.source, e.max_abs, e.mean_abs, e.rel,
                                e.cosine, worst_in.max_abs, worst_in.rel, budget.over(e, worst_in), float_node))
    return rows


def locate(index: GraphIndex, rows: list[NodeRow], compared: Iterable[str]) -> Finding | None:
    """The first row over the budget, and the node of its region to name: the one that reads the largest weight
    (a MatMul rather than the bias Add after it), else the tensor's producer."""
    first = next((r for r in rows if r.over), None)
    if first is None:
        return None
    region = index.region(first.tensor, compared)
    main = max(region, key=lambda k: (index.weight_size(k), k)) if region else index.producer[first.tensor]
    if index.weight_size(main) == 0:
        main = index.producer[first.tensor]
    return finding_for(index, first, region, main)


def finding_for(index: GraphIndex, row: NodeRow, region: list[int], main: int, cause: str | None = None) -> Finding:
    n, s = index.nodes[main], index.scopes[main]
    float_node = float_op = None
    if index.origin is not None and index.origin_node[main] is not None:
        fn = index.origin.nodes[index.origin_node[main]]
        float_node, float_op = fn.name, fn.op_type
    return Finding(row, n.name, n.op_type, s.module, s.cls, s.source,
                   [f"{index.nodes[k].op_type} {index.nodes[k].name}" for k in region], float_node, float_op, cause)


def layer_curve(index: GraphIndex, errors: Mapping[str, TensorError], reference_index: GraphIndex | None = None
                ) -> list[LayerRow]:
    """The error at the end of each top-level stage: embeddings, every block, the final norm, each graph output."""
    bounds = (reference_index or index).module_boundaries()
    rows: list[LayerRow] = []
    seen: set[str] = set()

    containers = {m.rsplit(".", 1)[0] for m in bounds if "." in m and m.rsplit(".", 1)[1].isdigit()}

    def is_stage(m: str) -> bool:  # a top-level module, or one entry of a top-level list (blocks.3)
        parts = m.split(".")
        return (len(parts) == 1 and m not in containers) or (len(parts) == 2 and parts[1].isdigit())

    stages = [(m, outs) for m, (_, outs) in bounds.items() if m and is_stage(m) and outs]
    producer = (reference_index or index).producer
    stages.sort(key=lambda s: max(producer.get(t, -1) for t in s[1]))
    outputs = set(index.graph_outputs)
    for m, outs in stages:
        t = next((t for t in outs if t in errors and errors[t].elements), None)
        if t is None or t in seen:
            continue
        seen.add(t)
        e = errors[t]
        rows.append(LayerRow(f"{m} (output {t})" if t in outputs else m, t, e.max_abs, e.rel, e.cosine))
    for t in index.graph_outputs:
        e = errors.get(t)
        if t not in seen and e is not None and e.elements:
            rows.append(LayerRow(f"output {t}", t, e.max_abs, e.rel, e.cosine))
    return rows


def worst_jump(rows: list[NodeRow]) -> NodeRow | None:
    """The node that adds the most relative error to what reaches it (rel - input rel), if any node adds some."""
    best = max(rows, key=lambda r: r.rel - r.input_rel, default=None)
    return best if best is not None and best.rel - best.input_rel > 1e-6 else None


def shared_tensors(index: GraphIndex, ref_index: GraphIndex) -> list[str]:
    """The tensors both graphs compute under one name, less those the candidate rewrote on purpose."""
    common = []
    for t, k in index.producer.items():
        j = ref_index.producer.get(t)
        if j is None or t in index.constants or t in ref_index.constants:
            continue
        n, m = index.nodes[k], ref_index.nodes[j]
        if n.op_type == m.op_type and any(
                i in index.initializers and i not in ref_index.initializers
                and index.initializers[i].data_type in _FLOAT_DTYPES for i in n.input):
            continue  # the same operator with new float weights: rewritten on purpose (a smoothed LayerNorm)
        common.append(t)
    return common


def compare_graphs(candidate: onnx.ModelProto, reference: onnx.ModelProto,
                   feeds_list: Sequence[Mapping[str, np.ndarray]], budget: Budget) -> DebugReport:
    """`candidate` (a quantized, or otherwise rewritten, graph) against its float32 `reference`, tensor by tensor.

    Tensors are matched by name (the quantizer keeps the names of the float tensors it recomputes). A tensor
    whose producer has the same operator in both graphs but reads float weights the reference does not have
    was rewritten on purpose (smoothing folds 1/s into a LayerNorm's scale) and is not compared; its
    consumers are.
    """
    ref_index = GraphIndex(reference)
    index = GraphIndex(candidate, origin=ref_index)
    common = shared_tensors(index, ref_index)
    ref_values = run_exposed(reference, common, feeds_list)
    got_values = run_exposed(candidate, common, feeds_list)
    errors: dict[str, TensorError] = {}
    for feeds, r, g in zip(feeds_list, ref_values, got_values):
        accumulate(errors, r, g, valid_positions(feeds))
    rows = walk(index, errors, budget)
    finding = locate(index, rows, errors)
    report = DebugReport("float graph", budget, rows, layer_curve(index, errors, ref_index), finding, worst_jump(rows),
                         nodes=len(index.nodes), batches=[list(_batch_shape(f)) for f in feeds_list],
                         notes=metadata_notes(index))
    return report


def _batch_shape(feeds: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    first = next(iter(feeds.values()))
    return tuple(int(d) for d in np.shape(first)[:2])
