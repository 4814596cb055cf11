"""Rotary attention with a key/value cache as three standard nodes: two `RotaryEmbedding` and one `Attention`.

The exporter writes a rotary layer (Llama, Qwen2, a rotary GPT) as the rotation spelled out on
(B, T, H, d) heads, layout changes around it, and the cache's concatenation outside the attention:

    Split ─┬─ q ─► Reshape(B,T,H,d) ─► rotate ─► Transpose(0,2,1,3) ──────────────────────────┐
           ├─ k ─► Reshape(B,T,Hkv,d) ─► rotate ─► Transpose(0,2,1,3) ─► Concat(past_k, ·) ────┼─► Attention ─► Transpose ─► Reshape(B,T,C)
           └─ v ─► Reshape(B,T,Hkv,d) ─► Transpose(0,2,1,3) ─────────► Concat(past_v, ·) ────┘      ▲
                                                                                          mask ─────┘
    rotate(x) = x * cos + Concat(-x[..., d/2:], x[..., :d/2]) * sin
    cos, sin  = Unsqueeze(GatherND(table (max_len, d), Unsqueeze(position_ids, -1)), 2)

(the Concat nodes are absent without a cache). Opset 23 has both halves as operators, so this pass
rewrites each layer to

    Split ─┬─ q ─► RotaryEmbedding(num_heads=H)   ─┐
           ├─ k ─► RotaryEmbedding(num_heads=Hkv) ─┼─► Attention(q_num_heads=H, kv_num_heads=Hkv, past_k, past_v) ─► ...
           └─ v ──────────────────────────────────┘     └─► present_k, present_v

with cos and sin tables of (max_len, d/2) shared by every layer. That is 25 nodes fewer per layer
with a cache; at one token a step is almost all per-node cost, so SmolLM2-135M (30 layers) decodes
a token in about a third less time (benchmarks/smollm2.py). The rotation is the same arithmetic
(channels i and i + d/2 turned by the angle at the token's position) and the cache is stored as
before: unrepeated key/value heads, keys rotated.

A layer is rewritten only when every piece is as drawn: the halves of each table equal (one angle
per channel pair), the rotation on the first and second half of the head, q and k read through
the same tables and positions, the attention without its optional outputs in use. Anything else is
left as it was.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from .nodes import producer

HEADS_FIRST = [0, 2, 1, 3]


def _const(value: ir.Value | None) -> np.ndarray | None:
    tensor = ir.convenience.get_const_tensor(value) if value is not None else None
    return None if tensor is None else np.asarray(tensor.numpy())


def _ints(value: ir.Value | None) -> list[int] | None:
    array = _const(value)
    return None if array is None else [int(v) for v in array.ravel()]


def _only_use(value: ir.Value) -> bool:
    return len(value.uses()) == 1 and not value.is_graph_output()


def _heads_first(value: ir.Value) -> ir.Value | None:
    """x where value = Transpose(x, (0, 2, 1, 3)) and nothing else reads the Transpose."""
    node = producer(value, "Transpose")
    attr = node.attributes.get("perm") if node is not None else None
    if attr is None or list(attr.value) != HEADS_FIRST or not _only_use(value):
        return None
    return node.inputs[0]


def _heads(value: ir.Value) -> tuple[ir.Value, int, int] | None:
    """(x, H, d) where value = Reshape(x (B, T, H*d), (B, T, H, d)), H and d constants of the shape."""
    reshape = producer(value, "Reshape")
    if reshape is None:
        return None
    source, shape = reshape.inputs[0], reshape.inputs[1]
    if source.shape is None or len(source.shape) != 3:
        return None
    dims = _ints(shape)
    if dims is None:
        concat = producer(shape, "Concat")
        pieces = [_ints(v) for v in concat.inputs[2:]] if concat is not None and len(concat.inputs) == 4 else [None]
        dims = None if any(p is None or len(p) != 1 for p in pieces) else [0, 0, pieces[0][0], pieces[1][0]]
    if dims is None or len(dims) != 4 or dims[2] <= 0 or dims[3] <= 0:
        return None
    return source, dims[2], dims[3]


def _angles(value: ir.Value) -> tuple[ir.Value, np.ndarray] | None:
    """(position_ids (B, T), table (max_len, d)) where value = Unsqueeze(GatherND(table, Unsqueeze(position_ids, -1)), 2)."""
    unsqueeze = producer(value, "Unsqueeze")
    gather = producer(unsqueeze.inputs[0], "GatherND") if unsqueeze is not None else None
    if gather is None or _ints(unsqueeze.inputs[1]) not in ([2], [-2]):
        return None
    batch_dims = gather.attributes.get("batch_dims")
    table, index = _const(gather.inputs[0]), producer(gather.inputs[1], "Unsqueeze")
    if (batch_dims is not None and batch_dims.value != 0) or table is None or table.ndim != 2 or index is None:
        return None
    if _ints(index.inputs[1]) not in ([-1], [2]):
        return None
    return index.inputs[0], table


def _slice_of(value: ir.Value, x: ir.Value, start: int, end: int, d: int) -> bool:
    """Whether value = x[..., start:end] along the last axis (of 4)."""
    node = producer(value, "Slice")
    if node is None or node.inputs[0] is not x or len(node.inputs) < 4:
        return False
    starts, ends, axes = (_ints(v) for v in node.inputs[1:4])
    steps = _ints(node.inputs[4]) if len(node.inputs) > 4 and node.inputs[4] is not None else [1]
    if None in (starts, ends, axes, steps) or len(starts) != 1 or axes[0] not in (-1, 3) or steps != [1]:
        return False
    return starts[0] == start and min(ends[0], d) == end


def _rotation(value: ir.Value, d: int) -> tuple[ir.Value, ir.Value, ir.Value] | None:
    """(x, cos, sin) where value = x * cos + Concat(-x[..., d/2:], x[..., :d/2]) * sin, either order of each operand."""
    add = producer(value, "Add")
    if add is None:
        return None
    for plain, turned in (add.inputs, reversed(add.inputs)):
        mul_plain, mul_turned = producer(plain, "Mul"), producer(turned, "Mul")
        if mul_plain is None or mul_turned is None:
            continue
        for concat, sin in (mul_turned.inputs, reversed(mul_turned.inputs)):
            cat = producer(concat, "Concat")
            if cat is None or len(cat.inputs) != 2 or cat.attributes.get("axis") is None or cat.attributes["axis"].value not in (-1, 3):
                continue
            neg = producer(cat.inputs[0], "Neg")
            upper = producer(neg.inputs[0], "Slice") if neg is not None else None
            x = upper.inputs[0] if upper is not None else None
            if x is None or not (_slice_of(neg.inputs[0], x, d // 2, d, d) and _slice_of(cat.inputs[1], x, 0, d // 2, d)):
                continue
            for x_side, cos in (mul_plain.inputs, reversed(mul_plain.inputs)):
                if x_side is x:
                    return x, cos, sin
    return None


def _rotated_heads(value: ir.Value) -> tuple[ir.Value, int, int, ir.Value, np.ndarray, np.ndarray] | None:
    """(x (B, T, H*d), H, d, position_ids, cos table, sin table) for value = rotate(Reshape(x)) laid out heads first."""
    rotated = _heads_first(value)
    x = _rotation_input(rotated) if rotated is not None else None
    heads = _heads(x) if x is not None else None
    if heads is None:
        return None
    source, H, d = heads
    found = _rotation(rotated, d)
    if found is None or found[0] is not x:  # the rotation turns the very heads the Reshape made
        return None
    _, cos, sin = found
    cos_angles, sin_angles = _angles(cos), _angles(sin)
    if cos_angles is None or sin_angles is None or cos_angles[0] is not sin_angles[0]:
        return None
    positions, cos_table = cos_angles
    sin_table = sin_angles[1]
    if d % 2 or cos_table.shape[1] != d or sin_table.shape != cos_table.shape:
        return None
    if not (np.array_equal(cos_table[:, :d // 2], cos_table[:, d // 2:]) and np.array_equal(sin_table[:, :d // 2], sin_table[:, d // 2:])):
        return None
    return source, H, d, positions, cos_table, sin_table


def _rotation_input(value: ir.Value) -> ir.Value | None:
    """The heads x a rotation reads: the operand of its products that a Reshape made (checked by _rotation)."""
    add = producer(value, "Add")
    for side in add.inputs if add is not None else ():
        mul = producer(side, "Mul")
        for operand in mul.inputs if mul is not None else ():
            if producer(operand, "Reshape") is not None:
                return operand
    return None


def _cached(value: ir.Value) -> tuple[ir.Value, ir.Value | None, ir.Value | None]:
    """(new, past, present): value = Concat(past, new) on the sequence axis, or (value, None, None) without a cache."""
    concat = producer(value, "Concat")
    axis = concat.attributes.get("axis") if concat is not None else None
    if concat is None or len(concat.inputs) != 2 or axis is None or axis.value not in (2, -2):
        return value, None, None
    past = concat.inputs[0]
    if not past.is_graph_input():
        return value, None, None
    return concat.inputs[1], past, value


def _merged_output(node: ir.Node) -> ir.Node | None:
    """The Reshape(Transpose(attention output), (B, T, C)) that reads the node's output and nothing else does."""
    out = node.outputs[0]
    if not _only_use(out):
        return None
    transpose = out.uses()[0].node
    attr = transpose.attributes.get("perm")
    if transpose.op_type != "Transpose" or attr is None or list(attr.value) != HEADS_FIRST or not _only_use(transpose.outputs[0]):
        return None
    reshape = transpose.outputs[0].uses()[0].node
    shape = reshape.outputs[0].shape
    return reshape if reshape.op_type == "Reshape" and shape is not None and len(shape) == 3 else None


class _Tables:
    """The (max_len, d/2) cos and sin initializers, one pair per distinct table, shared by every layer."""

    def __init__(self, graph: ir.Graph):
        self.graph, self.made = graph, []

    def get(self, cos: np.ndarray, sin: np.ndarray) -> tuple[ir.Value, ir.Value]:
        half = cos.shape[1] // 2
        for c, s, values in self.made:
            if np.array_equal(c, cos) and np.array_equal(s, sin):
                return values
        values = []
        for name, table in (("cos", cos), ("sin", sin)):
            array = np.ascontiguousarray(table[:, :half], dtype=np.float32)
            value = ir.Value(name=f"rotary_{name}_{len(self.made)}", shape=ir.Shape(array.shape),
                             type=ir.TensorType(ir.DataType.FLOAT), const_value=ir.tensor(array))
            self.graph.register_initializer(value)
            values.append(value)
        self.made.append((cos, sin, tuple(values)))
        return tuple(values)


def rotary_attention(model: ir.Model) -> int:
    """Rewrite every matching rotary Attention node of `model` in place; return how many were rewritten."""
    graph = model.graph
    tables = _Tables(graph)
    rewritten = 0
    for node in list(graph):
        if node.op_type != "Attention" or node.domain != "" or len(node.inputs) != 4 or node.inputs[3] is None:
            continue
        if any(name in node.attributes for name in ("q_num_heads", "kv_num_heads")) or any(o.uses() for o in node.outputs[1:]):
            continue
        k_new, past_k, present_k = _cached(node.inputs[1])
        v_new, past_v, present_v = _cached(node.inputs[2])
        if (past_k is None) != (past_v is None):
            continue
        q, k = _rotated_heads(node.inputs[0]), _rotated_heads(k_new)
        v_heads = _heads_first(v_new)
        v = _heads(v_heads) if v_heads is not None else None
        tail = _merged_output(node)
        if q is None or k is None or v is None or tail is None:
            continue
        if q[3] is not k[3] or q[2] != k[2] or k[1:3] != v[1:3]:  # one position input, one head size
            continue
        if not (np.array_equal(q[4], k[4]) and np.array_equal(q[5], k[5])):
            continue
        cos, sin = tables.get(q[4], q[5])
        rotate_q = ir.node("RotaryEmbedding", [q[0], cos, sin, q[3]], {"num_heads": q[1]})
        rotate_k = ir.node("RotaryEmbedding", [k[0], cos, sin, k[3]], {"num_heads": k[1]})
        for rotate, source in ((rotate_q, q[0]), (rotate_k, k[0])):
            rotate.outputs[0].shape, rotate.outputs[0].type = source.shape, source.type
        inputs = [rotate_q.outputs[0], rotate_k.outputs[0], v[0], node.inputs[3]]
        if past_k is not None:
            inputs += [past_k, past_v]
        fused = ir.node("Attention", inputs, num_outputs=3 if past_k is not None else 1)
        for name, attr in node.attributes.items():  # scale, softcap, is_causal, ... as they were
            fused.attributes[name] = ir.Attr(name, attr.type, attr.value)
        fused.attributes["q_num_heads"] = ir.AttrInt64("q_num_heads", q[1])
        fused.attributes["kv_num_heads"] = ir.AttrInt64("kv_num_heads", k[1])
        merged = tail.outputs[0]
        graph.insert_before(node, [rotate_q, rotate_k, fused])
        out = fused.outputs[0]
        out.shape, out.type = merged.shape, merged.type
        _take_place(graph, merged, out)
        if past_k is not None:
            for old, new in ((present_k, fused.outputs[1]), (present_v, fused.outputs[2])):
                new.shape, new.type = old.shape, old.type
                _take_place(graph, old, new)
        rewritten += 1
    if rewritten:  # the old rotations, layout changes and concatenations
        RemoveUnusedNodesPass()(model)
    return rewritten


def _take_place(graph: ir.Graph, old: ir.Value, new: ir.Value) -> None:
    """Every reader of `old` reads `new`; a graph output keeps its name."""
    if old.is_graph_output():
        graph.outputs[graph.outputs.index(old)] = new
        name = old.name
        old.name = f"{name}_replaced"
        new.name = name
    old.replace_all_uses_with(new)
