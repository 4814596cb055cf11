"""Give a tied LM head a weight of its own, so that the recipes quantize the largest matrix of a small LM.

The exporter writes a head tied to the token embedding as a Transpose of the embedding table:

    lm_head.weight (V, C) ─┬─► Gather(·, input_ids) ─► embeddings
                           └─► Transpose(perm=[1, 0]) ─► MatMul(hidden, ·) ─► logits (B, T, V)

The recipes quantize MatMuls whose second input is an initializer; this one's is a Transpose's
output, so without this pass the head (V x C: 38.6 M of GPT-2 small's 124 M weights) stays
float32. The pass folds the Transpose into a (C, V) initializer:

    lm_head.weight (V, C) ───────────► Gather(·, input_ids) ─► embeddings
    lm_head.weight.T (C, V) ─────────► MatMul(hidden, ·) ─► logits

The float32 graph gets one more copy of the table on disk; the quantized graph stores each copy at
its own bit width (the Gather's blocks run along C, the MatMul's along C too, see recipes.int4).
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper


def fold_transposed_weights(model: onnx.ModelProto) -> list[str]:
    """Fold every 2-D Transpose of an initializer that feeds a MatMul's weight input; returns the MatMuls."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    producers = {o: n for n in graph.node for o in n.output}
    folded, dropped = [], []
    for node in graph.node:
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx"):
            continue
        transpose = producers.get(node.input[1])
        if transpose is None or transpose.op_type != "Transpose" or transpose.input[0] not in inits:
            continue
        perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), [1, 0])
        table = numpy_helper.to_array(inits[transpose.input[0]])
        if table.ndim != 2 or perm != [1, 0]:
            continue
        name = f"{transpose.input[0]}.T"
        if name not in inits:
            inits[name] = numpy_helper.from_array(table.T.copy(), name)
            graph.initializer.append(inits[name])
        node.input[1] = name
        folded.append(node.name)
        uses[transpose.output[0]] -= 1
        if uses[transpose.output[0]] == 0:
            dropped.append(transpose)
    for node in dropped:
        graph.node.remove(node)
    return folded


def tied_heads(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(token-embedding Gather output, LM head MatMul output) of every head that transposes the Gather's table."""
    inits = {i.name for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    gathers = {n.input[0]: n for n in model.graph.node if n.op_type == "Gather" and n.input[0] in inits}
    pairs = []
    for node in model.graph.node:
        transpose = producers.get(node.input[1]) if node.op_type == "MatMul" else None
        if transpose is not None and transpose.op_type == "Transpose" and transpose.input[0] in gathers:
            pairs.append((gathers[transpose.input[0]].output[0], node.output[0]))
    return pairs
