"""Attention on (B, T, C) tensors: drop the head-splitting Reshape/Transpose pairs around each Attention.

The exporter writes scaled_dot_product_attention as a 4-D `Attention` node fed and drained by
layout changes:

    Split ─┬─ q ─► Reshape(B,T,H,d) ─► Transpose(0,2,1,3) ─┐
           ├─ k ─► Reshape(B,T,H,d) ─► Transpose(0,2,1,3) ─┼─► Attention ─► Transpose(0,2,1,3) ─► Reshape(B,T,C) ─► ...
           └─ v ─► Reshape(B,T,H,d) ─► Transpose(0,2,1,3) ─┘       ▲
                                                           mask ───┘

Opset 23's `Attention` takes 3-D inputs when told the head counts, so this pass rewrites it to

    Split ─┬─ q ─┐
           ├─ k ─┼─► Attention(q_num_heads=H, kv_num_heads=H) ─► ...
           └─ v ─┘        ▲
                  mask ───┘

removing eight nodes per layer and their copies of the activations (measured on all-MiniLM-L6-v2,
128 tokens, 2 CPU cores: about 0.5 ms of 20 ms). A node whose surroundings differ in any way is
left as it was.

The 3-D node needs (N, L, C) inputs with the same N and L as the 4-D Reshape's target. Where the
exporter merged that Reshape with one before it (local attention's blocks: (B, n*W, C) straight to
(B*n, W, H, d)), the Reshape's input has other leading axes, so the pass puts a Reshape to
(N, L, H*d) in its place, built from the same N and L; on the way out, a Reshape whose leading axes
differ from the node's output is kept and reads the node's (N, L, C) output, which holds the same
elements in the same order.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .nodes import producer

HEADS_FIRST = [0, 2, 1, 3]


def _perm_is_heads_first(node: ir.Node) -> bool:
    attr = node.attributes.get("perm")
    return attr is not None and list(attr.value) == HEADS_FIRST


def _head_dims(reshape: ir.Node) -> tuple[int, int] | None:
    """(H, d) from a Reshape to (N, L, H, d), its shape given as a constant or a Concat of pieces."""
    shape = reshape.inputs[1]
    const = ir.convenience.get_const_tensor(shape)
    if const is not None:
        dims = const.numpy().ravel()
        return (int(dims[2]), int(dims[3])) if dims.size == 4 and dims[2] > 0 and dims[3] > 0 else None
    concat = producer(shape, "Concat")
    if concat is None or len(concat.inputs) != 4:
        return None
    pieces = [ir.convenience.get_const_tensor(v) for v in concat.inputs[2:]]
    if any(p is None for p in pieces):
        return None
    heads, dim = (int(np.asarray(p.numpy()).ravel()[0]) for p in pieces)
    return (heads, dim) if heads > 0 and dim > 0 else None


def _same_leading_axes(a: ir.Value, b: ir.Value) -> bool:
    """Whether the recorded shapes of a and b agree, dimension for dimension, on their first two axes."""
    if a.shape is None or b.shape is None or len(a.shape) < 2 or len(b.shape) < 2:
        return False
    return all(x == y and x is not None for x, y in zip(list(a.shape)[:2], list(b.shape)[:2]))


def _keeps_leading_axes(reshape: ir.Node) -> bool:
    """Reshape((N, L, C) -> (N, L, H, d)): its input is already what the 3-D node takes."""
    source, target = reshape.inputs[0], reshape.outputs[0]
    return source.shape is not None and len(source.shape) == 3 and _same_leading_axes(source, target)


def _flattenable(reshape: ir.Node) -> bool:
    """Whether _flat_value can take this Reshape's place, checked before any node is inserted."""
    if _keeps_leading_axes(reshape):
        return True
    target, shape = reshape.outputs[0], reshape.inputs[1]
    if target.shape is None or len(target.shape) != 4:
        return False
    return ir.convenience.get_const_tensor(shape) is not None or producer(shape, "Concat") is not None


def _flat_value(graph: ir.Graph, reshape: ir.Node, heads: int, dim: int) -> ir.Value | None:
    """The (N, L, H*d) value the 3-D node takes in place of Reshape(x, (N, L, H, d)).

    When x is already (N, L, C) it is x itself. When the exporter merged this Reshape with one before
    it (x is, say, (B, n*L, C)), a Reshape of x to (N, L, H*d) takes its place, built from the same
    N and L pieces: feeding x straight in would give the node the wrong batch and sequence axes.
    """
    source, target = reshape.inputs[0], reshape.outputs[0]
    if _keeps_leading_axes(reshape):
        return source
    if not _flattenable(reshape):
        return None
    shape = reshape.inputs[1]
    const = ir.convenience.get_const_tensor(shape)
    if const is not None:
        flat_shape = ir.node("Constant", [], {"value": ir.tensor(np.array([*const.numpy().ravel()[:2], heads * dim], dtype=np.int64))})
        nodes = [flat_shape]
    else:
        concat = producer(shape, "Concat")
        piece = ir.node("Constant", [], {"value": ir.tensor(np.array([heads * dim], dtype=np.int64))})
        flat_shape = ir.node("Concat", [concat.inputs[0], concat.inputs[1], piece.outputs[0]], {"axis": 0})
        nodes = [piece, flat_shape]
    flat = ir.node("Reshape", [source, flat_shape.outputs[0]])
    nodes.append(flat)
    out = flat.outputs[0]
    out.shape = ir.Shape([target.shape[0], target.shape[1], heads * dim])
    out.type = target.type
    out.name = f"{target.name}_3d"
    graph.insert_before(reshape, nodes)
    return out


def _split_input(value: ir.Value) -> tuple[ir.Node, ir.Node, tuple[int, int]] | None:
    """For q, k or v: (the head-splitting Reshape, the Transpose after it, (H, d))."""
    transpose = producer(value, "Transpose")
    if transpose is None or not _perm_is_heads_first(transpose) or len(transpose.outputs[0].uses()) != 1:
        return None
    reshape = producer(transpose.inputs[0], "Reshape")
    if reshape is None or len(reshape.outputs[0].uses()) != 1:
        return None
    dims = _head_dims(reshape)
    if dims is None:
        return None
    return (reshape, transpose, dims)


def _merge_output(node: ir.Node) -> tuple[ir.Node, ir.Node] | None:
    uses = node.outputs[0].uses()
    if len(uses) != 1:
        return None
    transpose = uses[0].node
    if transpose.op_type != "Transpose" or not _perm_is_heads_first(transpose) or len(transpose.outputs[0].uses()) != 1:
        return None
    reshape = transpose.outputs[0].uses()[0].node
    if reshape.op_type != "Reshape" or reshape.outputs[0].shape is None or len(reshape.outputs[0].shape) != 3:
        return None
    return transpose, reshape


def attention_to_3d(model: ir.Model) -> int:
    """Rewrite every matching Attention node of `model` in place; return how many were rewritten."""
    graph = model.graph
    rewritten = 0
    for node in list(graph):
        if node.op_type != "Attention" or node.domain != "" or len(node.inputs) < 3:
            continue
        if any(name in node.attributes for name in ("q_num_heads", "kv_num_heads")):
            continue
        parts = [_split_input(v) for v in node.inputs[:3]]
        tail = _merge_output(node)
        if any(p is None for p in parts) or tail is None or len({p[2] for p in parts}) != 1:
            continue
        heads, dim = parts[0][2]
        if not all(_flattenable(reshape) for reshape, _, _ in parts):  # nothing inserted for a node left alone
            continue
        flats = [_flat_value(graph, reshape, heads, dim) for reshape, _, _ in parts]
        for i, flat in enumerate(flats):
            node.replace_input_with(i, flat)
        node.attributes["q_num_heads"] = ir.AttrInt64("q_num_heads", heads)
        node.attributes["kv_num_heads"] = ir.AttrInt64("kv_num_heads", heads)
        transpose, reshape = tail
        out = node.outputs[0]
        merged = reshape.outputs[0]
        out.type = merged.type
        if _same_leading_axes(transpose.outputs[0], merged):  # (N, L, H, d) -> (N, L, C): the node's own output
            out.shape = merged.shape
            merged.replace_all_uses_with(out)
            if merged.is_graph_output():  # keep the graph's output name
                index = graph.outputs.index(merged)
                graph.outputs[index] = out
                out.name, merged.name = merged.name, f"{merged.name}_unused"
            dead = [reshape, transpose]
        else:  # a merged Reshape to other leading axes reads the same elements from the 3-D output
            out.shape = ir.Shape([*list(transpose.outputs[0].shape)[:2], heads * dim]) if transpose.outputs[0].shape else None
            reshape.replace_input_with(0, out)
            dead = [transpose]
        dead += [n for reshape_in, transpose_in, _ in parts for n in (transpose_in, reshape_in)]
        graph.remove(dead, safe=True)
        rewritten += 1
    return rewritten
