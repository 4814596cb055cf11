"""What the export of a long-input attention kind must show: no fused Attention node scores seq x seq.

A banded mask on full attention would pass parity and still compute (and hold) the whole T x T
score matrix. The exporter records each value's symbolic shape, so the graph itself says how big
every node's scores are: queries (axis 2 of q) by keys (axis 2 of k). For local and Longformer
blocks that is W x 3W (+ G), for Linformer T x k, for LSH a chunk by two chunks, for Longformer's
global rows G x T. Any node whose queries and keys both run over the whole `seq` axis is refused.
"""

from __future__ import annotations

import onnx

from .onnx import ExportError


def score_shapes(model: onnx.ModelProto) -> list[tuple]:
    """(query length, key length) of every fused Attention node, as the graph's shapes name them
    (axis 2 of 4-D (B, H, T, hd) inputs, axis 1 of 3-D (B, T, C) ones)."""
    known = {v.name: v.type.tensor_type.shape for v in list(model.graph.value_info) + list(model.graph.input)}

    def length(name: str):
        shape = known.get(name)
        if shape is None or len(shape.dim) not in (3, 4):
            return None
        d = shape.dim[len(shape.dim) - 2]
        return d.dim_param or d.dim_value

    return [(length(n.input[0]), length(n.input[1])) for n in model.graph.node if n.op_type == "Attention"]


def check_subquadratic(model: onnx.ModelProto, seq_axis: str = "seq") -> list[tuple]:
    """Refuse a graph that scores all `seq` queries against all `seq` keys anywhere; returns the score shapes."""
    shapes = score_shapes(model)
    for q, k in shapes:
        if q is None or k is None:
            raise ExportError("an Attention node of this long-input graph has no recorded shape; cannot show it is not seq x seq")
        if q == seq_axis and k == seq_axis:
            raise ExportError(f"an Attention node scores {seq_axis} x {seq_axis}: the long-input attention was exported as full attention")
    return shapes
