"""int4: keep the blocks a weight already has (a GGUF's Q4_0, Q4_1 or Q8_0) instead of quantizing it again.

A checkpoint imported from a GGUF file holds llama.cpp's blocks dequantized to float32: each run of
32 weights along the input axis is one of

    Q4_1   w = d * q + m          q in 0..15, d and m float16
    Q4_0   w = d * (q - 8)        q in 0..15, d float16
    Q8_0   w = d * q              q in -127..127, d float16

Quantizing those numbers again to symmetric 4-bit blocks lands them on a second, different grid:
on SmolLM2-135M (Q4_1 layers, a Q8_0 tied embedding) that raised perplexity by 38.8%. The blocks
are recovered exactly from the float32 weights instead (every block is checked value for value
against the formula above, in float32 as gguf computes it), and MatMulNBits stores them as they
are:

    Q4_0 ─► MatMulNBits(bits=4, block_size=32, scales=d)                   (zero point 8, the default)
    Q8_0 ─► MatMulNBits(bits=8, block_size=32, scales=d)                   (data q + 128, zero point 128)
    Q4_1 ─► MatMulNBits(bits=4, block_size=32, scales=d, zero_points=z) + (A @ S) @ R

MatMulNBits' zero point is a 4-bit integer z = round(-m / d), and -m / d is rarely one (a float zero
point is exact but takes onnxruntime's slow path: 80x at one token). What z misses is a constant per
block, r = m + d * z, and its share of the product is the sum of each block's 32 inputs times r:

    A (.., K) ─► MatMul(S: K x K/32 of 0/1, one per K) ─► (.., K/32) ─► MatMul(R: K/32 x N) ─┐
    A ─► MatMulNBits(q, d, z) ───────────────────────────────────────────────────────────► Add ─► Y

two small products (K/32 rows) whose first is shared by every matrix that reads the same input.
So the int4 bundle computes with the weights the float32 bundle has, to a float rounding. A weight
with any block off those grids (a model that was never quantized) keeps the recipe's own blocks.
A tied embedding table follows its head (tied_int4.py shares the head's bytes with the lookup).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .onnx_nodes import drop_unused_initializers, node_attrs, set_attr

BLOCK = 32  # every GGUF block format this reads: Q4_0, Q4_1, Q8_0


@dataclass
class SourceBlocks:
    kind: str  # "q4_0" | "q4_1" | "q8_0"
    q: np.ndarray  # (N, K / 32, 32) uint8: 0..15 (4-bit) or q + 128 (8-bit)
    scales: np.ndarray  # (N, K / 32) float32
    zero_points: np.ndarray | None  # (N, K / 32) uint8 0..15 for Q4_1; None: the default (8 or 128)
    offsets: np.ndarray | None = None  # (N, K / 32) float32, Q4_1: m + d * zero point, what the zero point misses
    node: str = ""  # the float32 graph's MatMul

    @property
    def bits(self) -> int:
        return 8 if self.kind == "q8_0" else 4


def _half(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


def _exact(blocks: np.ndarray, rebuilt: np.ndarray) -> bool:
    return bool(np.array_equal(blocks, rebuilt))


def recover_blocks(weight_nk: np.ndarray) -> SourceBlocks | None:
    """The Q4_1, Q4_0 or Q8_0 blocks (32 along K) that `weight_nk` (N, K) is exactly, or None."""
    N, K = weight_nk.shape
    if K % BLOCK or weight_nk.dtype != np.float32 or not np.isfinite(weight_nk).all():
        return None
    b = weight_nk.reshape(N, K // BLOCK, BLOCK)
    lo, hi = b.min(-1), b.max(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Q4_1: the block's minimum is m (q = 0) and its maximum m + 15 d
        d = _half((hi - lo) / 15)
        m = lo
        q = np.clip(np.rint((b - m[..., None]) / d[..., None]), 0, 15)
        if (d > 0).all() and _exact(b, d[..., None] * q + m[..., None]):
            zero = np.clip(np.rint(-m / d), 0, 15)
            return SourceBlocks("q4_1", q.astype(np.uint8), d, zero.astype(np.uint8), (m + d * zero).astype(np.float32))
        # Q4_0 and Q8_0: the weight of largest magnitude is -8 d (Q4_0) or +-127 d (Q8_0)
        magnitude = np.abs(b)
        amax = magnitude.max(-1)
        peak = np.take_along_axis(b, magnitude.argmax(-1)[..., None], -1)[..., 0]
        d = _half(-peak / 8)
        q = np.clip(np.rint(b / d[..., None]), -8, 7)
        if (d != 0).all() and _exact(b, d[..., None] * q):
            return SourceBlocks("q4_0", (q + 8).astype(np.uint8), d, None)
        d = _half(amax / 127)
        q = np.clip(np.rint(b / d[..., None]), -127, 127)
        if (d > 0).all() and _exact(b, d[..., None] * q):
            return SourceBlocks("q8_0", (q + 128).astype(np.uint8), d, None)
    return None


def source_blocks(model: onnx.ModelProto, matmuls: list[str]) -> dict[str, SourceBlocks]:
    """Output name -> recovered blocks, for each named weight MatMul of the float32 `model` that has them."""
    weights = {i.name: i for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.name not in matmuls or node.input[1] not in weights:
            continue
        w = numpy_helper.to_array(weights[node.input[1]])  # (K, N)
        if w.ndim == 2:
            blocks = recover_blocks(np.ascontiguousarray(w.T))
            if blocks is not None:
                blocks.node = node.name
                found[node.output[0]] = blocks
    return found


def _pack_nibbles(x: np.ndarray) -> np.ndarray:
    """Values 0..15, two to a byte along the last axis, low nibble first (padded with 0 to an even length):
    MatMulNBits' 4-bit data (N, K / 32, 32) -> (N, K / 32, 16) and its zero points (N, nb) -> N rows of
    ceil(nb / 2) bytes."""
    if x.shape[-1] % 2:
        x = np.concatenate([x, np.zeros((*x.shape[:-1], 1), np.uint8)], -1)
    return (x[..., 0::2] | (x[..., 1::2] << 4)).astype(np.uint8)


def _offset_branch(graph: onnx.GraphProto, node: onnx.NodeProto, offsets: np.ndarray, sums: dict[str, str]) -> list:
    """Nodes that add (A @ S) @ R to `node`'s output and take over its name; (A @ S) is made once per input A."""
    N, nb = offsets.shape
    a, out = node.input[0], node.output[0]
    made = []
    if a not in sums:
        indicator = f"block_sums.{nb * BLOCK}"
        if not any(i.name == indicator for i in graph.initializer):
            graph.initializer.append(numpy_helper.from_array(
                np.repeat(np.eye(nb, dtype=np.float32), BLOCK, axis=0), indicator))  # (K, nb): 1 where k is in block b
        sums[a] = f"{a}.block_sums"
        made.append(helper.make_node("MatMul", [a, indicator], [sums[a]], name=f"{sums[a]}"))
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(offsets.T), f"{out}.q4_1_offsets"))
    node.output[0] = f"{out}.q4_1_blocks"
    made.append(helper.make_node("MatMul", [sums[a], f"{out}.q4_1_offsets"], [f"{out}.q4_1_offset"], name=f"{out}.q4_1_offset"))
    made.append(helper.make_node("Add", [node.output[0], f"{out}.q4_1_offset"], [out], name=f"{out}.q4_1_add"))
    return made


def keep_source_blocks(model: onnx.ModelProto, blocks: dict[str, SourceBlocks]) -> None:
    """Give each 32-block MatMulNBits of `model` whose output is in `blocks` those blocks.

    A tied embedding lookup (GatherBlockQuantized) reading the same table is pointed at the head's bytes
    afterwards by tied_int4.share_tied_tables, which takes 4- and 8-bit heads.
    """
    graph = model.graph
    nodes, sums, replaced = [], {}, []
    for node in list(graph.node):
        nodes.append(node)
        found = blocks.get(node.output[0]) if node.op_type == "MatMulNBits" else None
        if found is None or node_attrs(node).get("block_size") != BLOCK:
            continue
        stem, kind = node.output[0], found.kind
        replaced += node.input[1:]
        data = _pack_nibbles(found.q) if found.bits == 4 else found.q
        graph.initializer.append(numpy_helper.from_array(data, f"{stem}.{kind}"))
        graph.initializer.append(numpy_helper.from_array(found.scales.reshape(-1), f"{stem}.{kind}_scales"))
        del node.input[1:]
        node.input.extend([f"{stem}.{kind}", f"{stem}.{kind}_scales"])
        if found.zero_points is not None:
            graph.initializer.append(numpy_helper.from_array(_pack_nibbles(found.zero_points).reshape(-1),
                                                             f"{stem}.{kind}_zero_points"))
            node.input.append(f"{stem}.{kind}_zero_points")
        set_attr(node, "bits", found.bits)
        if found.offsets is not None:  # after the node: its input exists there, and its output is renamed
            nodes.extend(_offset_branch(graph, node, found.offsets, sums))
    del graph.node[:]
    graph.node.extend(nodes)
    drop_unused_initializers(graph, [name for name in replaced if name])
