"""CPU graph: the packed QKV projection and attention as one onnxruntime `com.microsoft.Attention` node.

After `attention_to_3d`, each self-attention layer reads

    x ─► MatMul(W_qkv) ─► Add(b_qkv) ─► Split(C, C, C) ─┬─ q ─┐
                                                         ├─ k ─┼─► Attention(q_num_heads=H, kv_num_heads=H) ─► ...
                                                         └─ v ─┘        ▲
                                                    mask (B, 1, T, T) ───┘

and this pass rewrites it to

    x ─► com.microsoft.Attention(W_qkv, b_qkv, num_heads=H, unidirectional=is_causal) ─► ...
                 ▲
    Cast(Squeeze(mask, 1), int32)  (B, T, T), built once and shared by every layer

onnxruntime's CPU kernel runs the three projections as one packed GEMM and the per-head products in
its own threaded loop, without the Split's copies or the 3-D MatMul's separate bias Add: on
all-MiniLM-L6-v2 at 128 tokens this is the graph Optimum's O3 level writes. The mask stays the full
(B, T, T) boolean the exporter built (padding keys masked, the diagonal kept), so every position,
padded ones included, gets the values the portable graph gives; the contrib kernel adds -10000 where
the mask is 0, which is exactly zero after softmax in float32 whenever a row has a kept key, and the
diagonal guarantees one.

Only the standard-domain graph is portable (web, mobile, TensorRT); this one needs onnxruntime's CPU
(or CUDA) contrib kernels, so it is written only when the export asks for the CPU graph. A node whose
surroundings differ in any way (a key/value cache, grouped-query heads, a float mask, a custom scale,
softcap, weights that are not constants) is left as it was.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from .nodes import producer

CONTRIB = "com.microsoft"


def _constant(value: ir.Value | None) -> np.ndarray | None:
    tensor = ir.convenience.get_const_tensor(value) if value is not None else None
    return None if tensor is None else np.asarray(tensor.numpy())


def _attr(node: ir.Node, name: str, default):
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


def _packed_projection(node: ir.Node) -> tuple[ir.Node, ir.Node, ir.Node, ir.Value, ir.Value] | None:
    """(split, add, matmul, W (C, 3C), b (3C)) feeding q, k and v of `node`, or None."""
    split = producer(node.inputs[0], "Split")
    if split is None or [v for v in node.inputs[:3]] != list(split.outputs) or _attr(split, "axis", 0) not in (2, -1):
        return None
    if any(len(v.uses()) != 1 for v in split.outputs):
        return None
    add = producer(split.inputs[0], "Add")
    if add is None or len(add.outputs[0].uses()) != 1:
        return None
    matmul_side = [i for i, v in enumerate(add.inputs) if producer(v, "MatMul") is not None]
    if len(matmul_side) != 1:
        return None
    matmul = producer(add.inputs[matmul_side[0]], "MatMul")
    bias_value = add.inputs[1 - matmul_side[0]]
    weight, bias = _constant(matmul.inputs[1]), _constant(bias_value)
    if len(matmul.outputs[0].uses()) != 1 or weight is None or bias is None:
        return None
    if weight.ndim != 2 or bias.shape != (weight.shape[1],) or weight.shape[1] != 3 * weight.shape[0]:
        return None
    sizes = _constant(split.inputs[1]) if len(split.inputs) > 1 else None
    third = weight.shape[0]
    if sizes is not None and list(sizes.ravel()) != [third] * 3:
        return None
    return split, add, matmul, matmul.inputs[1], bias_value


def _mask_index(graph: ir.Graph, mask: ir.Value, before: ir.Node, made: dict[int, ir.Value]) -> ir.Value | None:
    """The (B, T, T) int32 mask for `mask`, a (B, 1, T, T) boolean; built once per mask value."""
    if id(mask) in made:
        return made[id(mask)]
    if mask.dtype != ir.DataType.BOOL or mask.shape is None or len(mask.shape) != 4 or mask.shape[1] != 1:
        return None
    maker = mask.producer()
    axes = ir.node("Constant", [], {"value": ir.tensor(np.array([1], dtype=np.int64))})
    squeeze = ir.node("Squeeze", [mask, axes.outputs[0]])
    cast = ir.node("Cast", [squeeze.outputs[0]], {"to": int(ir.DataType.INT32)})
    out = cast.outputs[0]
    out.name, out.dtype = f"{mask.name}_index", ir.DataType.INT32
    out.shape = ir.Shape([mask.shape[0], mask.shape[2], mask.shape[3]])
    if maker is not None:
        graph.insert_after(maker, [axes, squeeze, cast])
    else:
        graph.insert_before(before, [axes, squeeze, cast])
    made[id(mask)] = out
    return out


def attention_to_contrib(model: ir.Model) -> int:
    """Rewrite every matching 3-D Attention node of `model` in place; return how many were rewritten."""
    graph = model.graph
    masks: dict[int, ir.Value] = {}
    rewritten = 0
    for node in list(graph):
        if node.op_type != "Attention" or node.domain != "" or len(node.inputs) not in (3, 4) or len(node.outputs) != 1:
            continue
        heads, kv_heads = _attr(node, "q_num_heads", 0), _attr(node, "kv_num_heads", 0)
        if heads < 1 or heads != kv_heads or _attr(node, "softcap", 0.0) != 0.0 or _attr(node, "qk_matmul_output_mode", 0) != 0:
            continue
        packed = _packed_projection(node)
        if packed is None:
            continue
        split, add, matmul, weight, bias = packed
        head_dim = ir.convenience.get_const_tensor(weight).shape[0] // heads
        scale = _attr(node, "scale", None)
        if scale is not None and not math.isclose(scale, 1.0 / math.sqrt(head_dim), rel_tol=1e-6):
            continue
        inputs = [matmul.inputs[0], weight, bias]
        if len(node.inputs) == 4 and node.inputs[3] is not None:
            index = _mask_index(graph, node.inputs[3], matmul, masks)
            if index is None:
                continue
            inputs.append(index)
        fused = ir.node("Attention", inputs, {"num_heads": heads, "unidirectional": int(_attr(node, "is_causal", 0))},
                        domain=CONTRIB)
        graph.insert_before(node, [fused])
        out = fused.outputs[0]
        out.shape, out.type = node.outputs[0].shape, node.outputs[0].type
        node.outputs[0].replace_all_uses_with(out)
        if node.outputs[0].is_graph_output():
            graph.outputs[graph.outputs.index(node.outputs[0])] = out
            out.name, node.outputs[0].name = node.outputs[0].name, f"{node.outputs[0].name}_unused"
        graph.remove([node, split, add, matmul], safe=True)
        rewritten += 1
    if rewritten:
        model.opset_imports[CONTRIB] = 1
    return rewritten
