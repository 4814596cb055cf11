"""Graph checks run on every export: the ONNX checker, and a count of the attention it fused."""

from __future__ import annotations

from collections import Counter

import onnx

from .onnx import ExportError

PACKED_OP = "com.microsoft.Attention"  # onnxruntime's packed-QKV attention (export/passes/packed_attention.py)


def op_counts(model: onnx.ModelProto) -> Counter:
    """Node counts by op type (with the domain prefixed when not standard), functions included."""
    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    return Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in nodes)


def check_graph(model: onnx.ModelProto, attention: str, n_layers: int) -> dict:
    """Run onnx.checker and verify the attention form; return the manifest's `attention` record."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the exported graph fails onnx.checker: {str(e).splitlines()[0]}") from None
    counts = op_counts(model)
    fused, softmax = counts.get("Attention", 0), counts.get("Softmax", 0)
    packed = counts.get(PACKED_OP, 0)
    if attention == "fused" and fused != n_layers:
        raise ExportError(f"expected {n_layers} fused Attention nodes (one per layer), found {fused}")
    if attention == "unfused" and (fused or softmax != n_layers):
        raise ExportError(f"expected an unfused graph with {n_layers} Softmax nodes, found {fused} Attention and {softmax} Softmax")
    if attention == "packed" and (packed != n_layers or fused):
        raise ExportError(f"--attention packed rewrote {packed} of {n_layers} attention layers; it takes self-attention "
                          "without a key/value cache, with as many key/value heads as query heads and a boolean or no "
                          "mask: export this model with --attention fused")
    op, count = {"fused": ("Attention", fused), "unfused": ("MatMul+Softmax", softmax), "packed": (PACKED_OP, packed)}[attention]
    record = {"kind": attention, "op": op, "count": count, "nodes": sum(counts.values())}
    if attention == "fused":
        attrs = [{a.name for a in n.attribute} for n in model.graph.node if n.op_type == "Attention"]
        record["layout"] = "3d" if all("q_num_heads" in a for a in attrs) else "4d"
    return record
