"""PyTorch -> ONNX through the dynamo exporter: the mechanics every graph kind shares.

A graph is described by a `GraphExport` (export.specs builds one per graph of each bundle kind):
the wrapper module, its example inputs, and one axis table (`Axis` per name, `TensorSpec` per
input with its axes) from which come both the exporter's dynamic shapes and the names the graph's
axes get. `trace` runs the exporter; `save` applies edgeformer's passes and writes the file, with
the weights in a file beside it past protobuf's 2 GB.

At opset 23 each `F.scaled_dot_product_attention` becomes one standard-domain `Attention` node
(fused). At opset 18 the exporter writes MatMul/Softmax chains instead (unfused), for runtimes
that lack the `Attention` op (TensorRT before 10.x, onnxruntime before 1.22, older mobile builds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx_ir as ir
import torch
from onnx_ir.passes.common import RemoveUnusedNodesPass

from edgeformer.runtime.bundle import TensorSpec
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.graph_files import fresh_weights_file, keeps_weights_beside
from edgeformer.runtime.quiet import quiet

from .passes import attention_to_3d, attention_to_contrib, merge_sibling_matmuls, rotary_attention

ATTENTION_OPSETS = {"fused": 23, "unfused": 18, "packed": 23}  # packed: traced as fused, then a pass


class ExportError(EdgeformerError):
    pass


@dataclass(frozen=True)
class Axis:
    """A named axis: its limits (the manifest's `axes`) and what the exporter is told about it."""

    min: int = 1
    max: int | None = None
    dim: Any = None  # a torch.export.Dim; None: Dim.AUTO (the exporter works out how axes relate)

    def limits(self) -> dict[str, int]:
        return {"min": self.min, **({"max": self.max} if self.max is not None else {})}


@dataclass
class GraphExport:
    """One graph to export: module, example inputs (positional, a list for a group of tensors, or
    by keyword) and the axis table its inputs and outputs are named from."""

    file: str
    module: torch.nn.Module
    inputs: list[TensorSpec]  # in the order the graph takes them (args flattened, then kwargs)
    output_names: list[str]
    axes: dict[str, Axis]
    args: tuple = ()
    kwargs: dict[str, torch.Tensor] = field(default_factory=dict)
    output_axes: dict[str, tuple] | None = None  # name -> axis names (None: unnamed); None: keep the exporter's
    attention_count: int = 0  # the Attention (or Softmax) nodes the graph must hold

    def dims(self, spec: TensorSpec) -> dict[int, Any]:
        auto = torch.export.Dim.AUTO
        return {i: auto if self.axes[a].dim is None else self.axes[a].dim for i, a in enumerate(spec.shape) if isinstance(a, str)}

    def dynamic_shapes(self) -> tuple | dict:
        """The exporter's dynamic shapes, from the axis table: a tuple matching `args`, or a dict for `kwargs`."""
        specs = iter(self.inputs)
        if self.kwargs:
            by_name = {s.name: s for s in self.inputs}
            return {name: self.dims(by_name[name]) for name in self.kwargs}
        return tuple([self.dims(next(specs)) for _ in a] if isinstance(a, (list, tuple)) else self.dims(next(specs))
                     for a in self.args)

    def manifest_axes(self) -> dict[str, dict[str, int]]:
        """The table's axes that the inputs use, with their limits."""
        used = {a for s in self.inputs for a in s.shape if isinstance(a, str)}
        return {name: axis.limits() for name, axis in self.axes.items() if name in used}


def trace(graph: GraphExport, attention: str) -> ir.Model:
    """The dynamo exporter's graph, before edgeformer's passes, with the axis table's names."""
    try:
        with quiet(), torch.no_grad():  # the exporter narrates every step
            program = torch.onnx.export(
                graph.module, graph.args, kwargs=graph.kwargs or None, dynamo=True,
                opset_version=ATTENTION_OPSETS[attention], input_names=[s.name for s in graph.inputs],
                output_names=graph.output_names, dynamic_shapes=graph.dynamic_shapes(), optimize=True,
                verbose=False, report=False,
            )
    except EdgeformerError:
        raise
    except Exception as e:  # the exporter's failures come as many exception types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(f"torch.onnx.export failed: {first}") from e
    if graph.output_axes is not None:
        _name_axes(program.model, graph)
    return program.model


def _name_axes(model: ir.Model, graph: GraphExport) -> None:
    """Give the graph's inputs and outputs the table's axis names instead of s0, s1, ..."""
    axes = {s.name: tuple(a if isinstance(a, str) else None for a in s.shape) for s in graph.inputs}
    axes.update(graph.output_axes or {})
    for value in list(model.graph.inputs) + list(model.graph.outputs):
        names = axes.get(value.name)
        if names is None or value.shape is None:
            raise ExportError(f"the {graph.file} graph has an unexpected input or output {value.name!r}")
        value.shape = ir.Shape([ir.SymbolicDim(n) if n else d for n, d in zip(names, value.shape)])


def save(model: ir.Model, path: str | os.PathLike, attention: str) -> Path:
    """edgeformer's passes (products of one input merged; rotary attention and its cache as standard nodes;
    3-D fused attention; packed: onnxruntime's Attention; unused nodes removed), then the file."""
    merge_sibling_matmuls(model)
    if attention in ("fused", "packed"):
        rotary_attention(model)
        attention_to_3d(model)
    if attention == "packed":
        attention_to_contrib(model)
    RemoveUnusedNodesPass()(model)
    weights = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
    beside = fresh_weights_file(path)
    ir.save(model, str(path), external_data=beside.name if keeps_weights_beside(weights) else None)
    return Path(path)
