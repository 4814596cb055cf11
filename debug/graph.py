"""A graph indexed for the divergence search: nodes in topological order, who writes and reads each tensor,
each node's module (edgeformer.debug.scopes), what crosses each module's boundary, and the region of nodes
between a tensor and the compared tensors upstream of it."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Iterable

import numpy as np
import onnx

from edgeformer.runtime.errors import EdgeformerError

from .scopes import Scope, infer_from_neighbours, map_to_origin, metadata_scope, module_chain

_SHAPE_DTYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.BOOL}


class DebugError(EdgeformerError):
    pass


def _numel(t: onnx.TensorProto) -> int:
    return int(np.prod(t.dims)) if len(t.dims) else 1


class GraphIndex:
    """A graph's nodes in topological order, who produces and reads each tensor, and each node's module."""

    def __init__(self, model: onnx.ModelProto, origin: "GraphIndex | None" = None):
        self.model = model
        g = model.graph
        self.initializers = {i.name: i for i in g.initializer}
        self.graph_inputs = [i.name for i in g.input if i.name not in self.initializers]
        self.graph_outputs = [o.name for o in g.output]
        self.nodes = _toposort(list(g.node), set(self.initializers) | set(self.graph_inputs))
        self.producer = {o: k for k, n in enumerate(self.nodes) for o in n.output if o}
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for k, n in enumerate(self.nodes):
            for i in n.input:
                if i:
                    self.consumers[i].append(k)
        self.constants = set(self.initializers)
        for n in self.nodes:
            if n.op_type == "Constant":
                self.constants.update(n.output)
        self.by_name = {n.name: k for k, n in enumerate(self.nodes) if n.name}
        self.origin = origin
        self.origin_node: list[int | None] = [None] * len(self.nodes)  # the float graph's node this one stands for
        self.scopes: list[Scope | None] = [metadata_scope(n) for n in self.nodes]
        if origin is not None:
            map_to_origin(self, origin)
        infer_from_neighbours(self)

    def scope_of_tensor(self, tensor: str) -> Scope:
        k = self.producer.get(tensor)
        return self.scopes[k] if k is not None else Scope("", "", "none")

    # -- module boundaries -----------------------------------------------------------------------
    def module_boundaries(self) -> dict[str, tuple[list[str], list[str]]]:
        """module -> (input tensors, output tensors): what crosses into and out of its nodes.

        A module's output is a tensor produced inside it (or inside a submodule) and read outside
        it or returned by the graph: for a Linear, its Add; for a block, the residual Add that
        ends it. Constants and weights are not inputs.
        """
        ins: dict[str, list[str]] = defaultdict(list)
        outs: dict[str, list[str]] = defaultdict(list)
        graph_outputs = set(self.graph_outputs)
        for k, n in enumerate(self.nodes):
            chain_p = module_chain(self.scopes[k].module)
            for t in n.output:
                if not t:
                    continue
                readers = [set(module_chain(self.scopes[c].module)) for c in self.consumers.get(t, [])]
                for m in chain_p[1:]:
                    if (t in graph_outputs or any(m not in r for r in readers)) and t not in outs[m]:
                        outs[m].append(t)
            for t in n.input:
                if not t or t in self.constants:
                    continue
                p = self.producer.get(t)
                chain_src = set(module_chain(self.scopes[p].module)) if p is not None else {""}
                for m in module_chain(self.scopes[k].module)[1:]:
                    if m not in chain_src and t not in ins[m]:
                        ins[m].append(t)
        return {m: (ins.get(m, []), outs.get(m, [])) for m in set(ins) | set(outs)}

    # -- weights and regions ---------------------------------------------------------------------
    def weight_size(self, k: int) -> int:
        """The element count of the largest weight the node reads (float or integer weights, not shapes)."""
        sizes = [_numel(self.initializers[i]) for i in self.nodes[k].input
                 if i in self.initializers and self.initializers[i].data_type not in _SHAPE_DTYPES]
        return max((s for s in sizes if s > 1), default=0)

    def weight_readers(self) -> dict[str, int]:
        """weight -> the first node (in graph order) that reads it; weights of more than one element."""
        readers: dict[str, int] = {}
        for k, n in enumerate(self.nodes):
            for i in n.input:
                if i in self.initializers and _numel(self.initializers[i]) > 1:
                    readers.setdefault(i, k)
        return readers

    def region(self, tensor: str, compared: Iterable[str]) -> list[int]:
        """The nodes between `tensor` and the nearest compared tensors upstream, in graph order."""
        compared = set(compared)
        seen: set[int] = set()
        stack = [tensor]
        while stack:
            t = stack.pop()
            k = self.producer.get(t)
            if k is None or k in seen:
                continue
            seen.add(k)
            for i in self.nodes[k].input:
                if i and i not in compared and i not in self.constants:
                    stack.append(i)
        return sorted(seen)


def _toposort(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Kahn's algorithm, stable: the file's order wherever it is already topological."""
    produced = {o for n in nodes for o in n.output if o}
    ready = set(available) | {""}
    out: list[onnx.NodeProto] = []
    pending = list(nodes)
    while pending:
        rest = []
        for n in pending:
            if all(i in ready or i not in produced for i in n.input):
                out.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle or a subgraph reference: keep the file's order
            return out + rest
        pending = rest
    return out


def load_graph(path: str | os.PathLike) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as e:
        raise DebugError(f"cannot read the ONNX graph {path}: {(str(e).strip().splitlines() or [type(e).__name__])[0]}") from None
