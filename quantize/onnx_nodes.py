"""Editing quantized graphs in place (onnx protos): a node's attributes and the initializers it leaves behind."""

from __future__ import annotations

from typing import Any, Iterable

import onnx
from onnx import helper


def node_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def set_attr(node: onnx.NodeProto, name: str, value: Any) -> None:
    """Give `node` the attribute `name` = `value`, replacing any it had."""
    for a in [a for a in node.attribute if a.name == name]:
        node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))


def drop_unused_initializers(graph: onnx.GraphProto, names: Iterable[str]) -> None:
    """Remove the initializers called `names` that no node of `graph` reads any more."""
    still_used = {i for n in graph.node for i in n.input}
    gone = set(names) - still_used
    for init in [i for i in graph.initializer if i.name in gone]:
        graph.initializer.remove(init)
