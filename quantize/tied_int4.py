"""int4: one 4-bit copy of a tied embedding table, read by both the LM head and the embedding lookup.

lm_head.py gives a tied head its own (C, V) weight, and the int4 recipe then stores the table twice:
MatMulNBits packs the head's weight as (V, C/32 blocks, 16 bytes) with a scale per block, and
GatherBlockQuantized packs the embedding as (V, C) int4 with a scale per 32 values along C. Both
are the same numbers (blocks of 32 along C, one row per token, symmetric, zero point 8), so the
Gather can read the head's bytes (measured: identical outputs):

    head_Q4 (V, C/32, 16) uint8 ──► MatMulNBits(hidden, ·, head_scales) ─► logits
         │                                       │
         └► Reshape(V, C/2) ─► GatherBlockQuantized(·, input_ids, Reshape(head_scales, (V, C/32)), bits=4) ─► embeddings

For GPT-2 small that drops 19 MB (the table is 38.6 M of its 124 M weights). A head that kept a
GGUF's Q8_0 blocks (source_blocks.py), or that int8-weights quantized, is shared the same way at 8
bits (zero point 128, the default of both ops); onnxruntime's quantizer leaves an embedding lookup
float at 8 bits, so that plain Gather becomes the GatherBlockQuantized here. Only symmetric blocks
whose size divides C are shared; anything else keeps its own copy.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .onnx_nodes import drop_unused_initializers, node_attrs, set_attr

MS_DOMAIN = "com.microsoft"


def share_tied_tables(model: onnx.ModelProto, pairs: list[tuple[str, str]]) -> int:
    """Point each tied GatherBlockQuantized at its LM head's MatMulNBits weights; returns how many were shared.

    `pairs` are (embedding output, logits output) of tied heads, as lm_head.tied_heads found them
    before quantization (node outputs keep their names through the quantizer).
    """
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    shared = 0
    for gather_out, head_out in pairs:
        gather, head = producers.get(gather_out), producers.get(head_out)
        if gather is None or head is None or head.op_type != "MatMulNBits":
            continue
        h = node_attrs(head)
        N, K, block = h["N"], h["K"], h["block_size"]
        bits = h.get("bits", 4)
        if gather.op_type == "Gather" and bits == 8 and node_attrs(gather).get("axis", 0) == 0:
            gather = block_gather(graph, gather, block)
        if gather.op_type != "GatherBlockQuantized":
            continue
        g = node_attrs(gather)
        if (len(gather.input) > 3 or len(head.input) > 3 and head.input[3] or bits not in (4, 8)
                or g.get("block_size") != block or g.get("quantize_axis") != 1 or g.get("gather_axis", 0) != 0
                or K % block):
            continue
        stem = head.output[0]
        data_shape = numpy_helper.from_array(np.array([N, K * bits // 8], np.int64), f"{stem}.shared_data_shape")
        scale_shape = numpy_helper.from_array(np.array([N, K // block], np.int64), f"{stem}.shared_scale_shape")
        graph.initializer.extend([data_shape, scale_shape])
        reshape_data = helper.make_node("Reshape", [head.input[1], data_shape.name], [f"{stem}.shared_data"],
                                        name=f"{head.name}.shared_data")
        reshape_scales = helper.make_node("Reshape", [head.input[2], scale_shape.name], [f"{stem}.shared_scales"],
                                          name=f"{head.name}.shared_scales")
        old = [gather.input[0], gather.input[2]]
        gather.input[0], gather.input[2] = reshape_data.output[0], reshape_scales.output[0]
        set_attr(gather, "bits", bits)
        index = list(graph.node).index(gather)
        graph.node.insert(index, reshape_scales)
        graph.node.insert(index, reshape_data)
        drop_unused_initializers(graph, old)
        shared += 1
    return shared


def block_gather(graph: onnx.GraphProto, gather: onnx.NodeProto, block: int) -> onnx.NodeProto:
    """A float Gather(table, ids) replaced in place by GatherBlockQuantized(table, ids, scales) whose data and
    scales share_tied_tables then points at the head's; the float table is dropped once nothing reads it."""
    new = helper.make_node("GatherBlockQuantized", [gather.input[0], gather.input[1], gather.input[0]], list(gather.output),
                           name=gather.name, domain=MS_DOMAIN, gather_axis=0, quantize_axis=1, block_size=block, bits=8)
    index = list(graph.node).index(gather)
    graph.node.remove(gather)
    graph.node.insert(index, new)
    return graph.node[index]  # the graph's copy (a repeated field stores copies), which the caller then edits
