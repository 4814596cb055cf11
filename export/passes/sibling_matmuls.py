"""Products of one input with several weights as one product: a gated feed-forward's gate and up projections.

A gated feed-forward (Llama, Qwen2) reads its input through two weights of the same width:

    x ─┬─► MatMul(W_gate (C, F)) ─► g ─► SiLU ─┐
       └─► MatMul(W_up   (C, F)) ─► u ─────────┴─► Mul ─► ...

and this pass writes them as one product and a split:

    x ─► MatMul([W_gate | W_up] (C, 2F)) ─► Split(F, F) ─┬─► g
                                                          └─► u

The numbers are the same (each output column is the same dot product), and the quantizers see one
weight: int4 runs one MatMulNBits kernel where there were two, with one correction product for a
GGUF's Q4_1 blocks instead of two. At one token a step is mostly per-kernel cost, so this is
measurable in decode (benchmarks/smollm2.py). Only weights that are constant, 2-D, read by nothing
else (a tied embedding table is not merged) and of the same first dimension are merged; a group is
merged in graph order.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def _weight(node: ir.Node) -> np.ndarray | None:
    """The constant (K, N) weight of a standard MatMul read by this node alone, or None."""
    if node.op_type != "MatMul" or node.domain != "" or len(node.inputs) != 2:
        return None
    value = node.inputs[1]
    if value is None or value.const_value is None or len(value.uses()) != 1 or value.is_graph_output():
        return None
    array = value.const_value.numpy()
    return array if array.ndim == 2 else None


def _siblings(value: ir.Value) -> list[tuple[ir.Node, np.ndarray]]:
    """The MatMuls that multiply `value` by a weight of their own, grouped by the first one's K and dtype."""
    found = []
    for use in value.uses():
        node = use.node
        if use.idx != 0:
            continue
        weight = _weight(node)
        if weight is not None:
            found.append((node, weight))
    if not found:
        return []
    k, dtype = found[0][1].shape[0], found[0][1].dtype
    return [(n, w) for n, w in found if w.shape[0] == k and w.dtype == dtype]


def merge_sibling_matmuls(model: ir.Model) -> int:
    """Merge every group of MatMuls sharing an input and a weight width; return how many groups were merged."""
    graph = model.graph
    merged = 0
    seen: set[str] = set()
    for node in list(graph):
        if node.op_type != "MatMul" or node.domain != "" or not node.inputs or node.inputs[0] is None:
            continue
        source = node.inputs[0]
        if source.name in seen:
            continue
        group = _siblings(source)
        if len(group) < 2:
            continue
        seen.add(source.name)
        group.sort(key=lambda nw: graph.index(nw[0]))
        nodes, weights = [n for n, _ in group], [w for _, w in group]
        joined = ir.Value(name=f"{nodes[0].name}_merged_weight", shape=ir.Shape([weights[0].shape[0], sum(w.shape[1] for w in weights)]),
                          type=nodes[0].inputs[1].type, const_value=ir.tensor(np.concatenate(weights, axis=1)))
        graph.register_initializer(joined)
        sizes = ir.Value(name=f"{nodes[0].name}_merged_sizes", shape=ir.Shape([len(weights)]),
                         type=ir.TensorType(ir.DataType.INT64),
                         const_value=ir.tensor(np.array([w.shape[1] for w in weights], dtype=np.int64)))
        graph.register_initializer(sizes)
        product = ir.node("MatMul", [source, joined], name=f"{nodes[0].name}_merged")
        split = ir.node("Split", [product.outputs[0], sizes], {"axis": -1}, num_outputs=len(nodes),
                        name=f"{nodes[0].name}_merged_split")
        first = nodes[0].outputs[0]
        if first.shape is not None:
            product.outputs[0].shape = ir.Shape([*list(first.shape)[:-1], joined.shape[1]])
        product.outputs[0].type = first.type
        graph.insert_before(nodes[0], [product, split])
        for old, piece in zip(nodes, split.outputs):
            out = old.outputs[0]
            piece.shape, piece.type = out.shape, out.type
            if out.is_graph_output():
                graph.outputs[graph.outputs.index(out)] = piece
                piece.name, out.name = out.name, f"{out.name}_merged_away"
            out.replace_all_uses_with(piece)
        old_weights = [n.inputs[1] for n in nodes]
        graph.remove(nodes, safe=True)
        for weight in old_weights:  # read by nothing now
            graph.initializers.pop(weight.name, None)
        merged += 1
    return merged
