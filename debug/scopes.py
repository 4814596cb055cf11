"""Where a node comes from: the PyTorch module behind each node of a graph.

The dynamo exporter writes each node's PyTorch module path into its `metadata_props`
("pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy"). Nodes that a later pass or
onnxruntime.quantization created carry none; they are mapped, in this order, through the float32
graph (a node producing a tensor of the same name, a float node whose name prefixes theirs, a float
node reading the weight they read under a suffixed name: `val_107_quantized`, `val_107_scale`,
`val_107_smoothed`), and last through their neighbours' modules.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import onnx

if TYPE_CHECKING:
    from .graph import GraphIndex

SCOPES_KEY = "pkg.torch.onnx.name_scopes"
CLASSES_KEY = "pkg.torch.onnx.class_hierarchy"
WEIGHT_SUFFIXES = ("_quantized", "_scale", "_zero_point", "_smoothed", "_Transposed", "_fp16", "_DequantizeLinear")
_NO_MODULE = "_empty_nn_module_stack"


@dataclass(frozen=True)
class Scope:
    """The PyTorch module a node came from, relative to the model ("" is the model itself)."""

    module: str
    cls: str = ""
    source: str = "metadata"  # metadata | float graph | node name | weight name | neighbours

    def label(self) -> str:
        name = self.module or "(model)"
        return f"{name} ({self.cls})" if self.cls else name


def module_chain(module: str) -> list[str]:
    """"blocks.1.attn" -> ["", "blocks", "blocks.1", "blocks.1.attn"]: the module and everything around it."""
    parts = module.split(".") if module else []
    return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]


def _common_module(modules: Sequence[str]) -> str:
    split = [m.split(".") if m else [] for m in modules]
    common = []
    for parts in zip(*split):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return ".".join(common)


def metadata_scope(node: onnx.NodeProto) -> Scope | None:
    """The innermost module in the exporter's metadata, with the export wrapper and model prefix removed."""
    props = {p.key: p.value for p in node.metadata_props}
    if SCOPES_KEY not in props:
        return None
    try:
        scopes = list(ast.literal_eval(props[SCOPES_KEY]))
        classes = list(ast.literal_eval(props.get(CLASSES_KEY, "[]")))
    except (ValueError, SyntaxError):
        return None
    modules, classes = scopes[:-1], classes[:-1]  # the last entry is the operator itself
    if not modules or modules[0].startswith(_NO_MODULE):
        return Scope("", "", "metadata")
    if modules[0] == "":  # the export wrapper (export.onnx._Outputs): the model is its attribute modules[1]
        modules, classes = modules[1:], classes[1:]
    if not modules:
        return Scope("", "", "metadata")
    root = modules[0]
    name = modules[-1]
    rel = "" if name == root else name[len(root) + 1:] if name.startswith(root + ".") else name
    cls = classes[len(modules) - 1].rsplit(".", 1)[-1] if len(classes) >= len(modules) else ""
    return Scope(rel, cls, "metadata")


def _strip_weight_name(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for s in WEIGHT_SUFFIXES:
            if name.endswith(s):
                name, changed = name[: -len(s)], True
    return name


def _origin_of(index: GraphIndex, k: int, origin: GraphIndex, names: list[str],
               weight_readers: dict[str, int]) -> tuple[int | None, str | None]:
    """The float graph's node that node `k` stands for, and how it was found."""
    n = index.nodes[k]
    if n.name in origin.by_name and origin.nodes[origin.by_name[n.name]].op_type == n.op_type:
        return origin.by_name[n.name], "float graph"
    for o in n.output:
        if o in origin.producer:
            return origin.producer[o], "float graph"
    prefix = next((m for m in names if n.name.startswith(m + "_")), None)
    if prefix is not None:
        return origin.by_name[prefix], "node name"
    for i in n.input:
        base = _strip_weight_name(i) if i in index.initializers else None
        if base and base != i and base in weight_readers:
            return weight_readers[base], "weight name"
    return None, None


def map_to_origin(index: GraphIndex, origin: GraphIndex) -> None:
    """Fill `index.origin_node`, and the scope of every node without metadata, from the float graph `origin`."""
    weight_readers = origin.weight_readers()
    names = sorted(origin.by_name, key=len, reverse=True)
    for k in range(len(index.nodes)):
        found, source = _origin_of(index, k, origin, names, weight_readers)
        index.origin_node[k] = found
        if index.scopes[k] is None and found is not None and origin.scopes[found] is not None:
            s = origin.scopes[found]
            index.scopes[k] = Scope(s.module, s.cls, source)


def infer_from_neighbours(index: GraphIndex) -> None:
    """Give every node still without a scope the common module of its mapped producers and consumers."""
    for _ in range(len(index.nodes)):
        changed = False
        for k, n in enumerate(index.nodes):
            if index.scopes[k] is not None:
                continue
            near = [index.producer[i] for i in n.input if i in index.producer]
            near += [c for o in n.output for c in index.consumers.get(o, [])]
            known = [index.scopes[j].module for j in near if index.scopes[j] is not None]
            if known:
                index.scopes[k] = Scope(_common_module(known), "", "neighbours")
                changed = True
        if not changed:
            break
    for k in range(len(index.nodes)):
        if index.scopes[k] is None:
            index.scopes[k] = Scope("", "", "none")


def metadata_notes(index: GraphIndex) -> list[str]:
    counts: dict[str, int] = defaultdict(int)
    for s in index.scopes:
        counts[s.source] += 1
    notes = []
    mapped = {k: v for k, v in counts.items() if k != "metadata"}
    if mapped:
        notes.append(f"{counts.get('metadata', 0)} of {len(index.nodes)} nodes carry the exporter's module metadata; "
                     + ", ".join(f"{v} mapped by {k}" for k, v in sorted(mapped.items())))
    return notes
