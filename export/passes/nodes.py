"""What the graph passes match on, written once for all of them."""

from __future__ import annotations

import onnx_ir as ir


def producer(value: ir.Value | None, op_type: str) -> ir.Node | None:
    """The standard-domain `op_type` node that makes `value`, or None (no value, a graph input, another op)."""
    node = value.producer() if value is not None else None
    return node if node is not None and node.op_type == op_type and node.domain == "" else None
