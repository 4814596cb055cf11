"""Node-by-node comparison of a graph against a reference: the torch-free core of `edgeformer debug`.

One run per input batch of one ONNX Runtime session: every tensor that has a reference value is
made a graph output (ONNX Runtime accepts outputs without declared types), the nodes are walked in
topological order, and each compared tensor's error is set beside the error that reached its node
from upstream (the worst error of the nearest compared tensors it depends on). Error only grows
downstream of a fault, so the first node in topological order that is over the budget is the
earliest place the numbers leave the reference.

Two budgets:
- "atol" (a float32 bundle against PyTorch or against another float32 graph): a node is over when
  its output's max abs error exceeds the bundle's parity tolerance (1e-4 by default).
- "relative" (a quantized graph against its float32 graph): every quantized node has some error,
  so a node is over only when it *adds* error: its output's relative error ||q - f|| / ||f|| is
  above `rel` (default 0.1, an SQNR under 20 dB) AND at least `jump` times (default 4x, 12 dB)
  the relative error of its inputs. A loss that builds up layer by layer (jump near 1x) is not a
  single node's fault and is shown in the layer curve instead.

Where a node comes from: the dynamo exporter writes each node's PyTorch module path into its
`metadata_props` ("pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy"). Nodes that a
later pass or onnxruntime.quantization created carry none; they are mapped, in this order, through
the float32 graph (a node producing a tensor of the same name, a float node whose name prefixes
theirs, a float node reading the weight they read under a suffixed name: `val_107_quantized`,
`val_107_scale`, `val_107_smoothed`), and last through their neighbours' modules.
"""

from __future__ import annotations

import ast
import math
import os
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from edgeformer.runtime.errors import EdgeformerError

SCOPES_KEY = "pkg.torch.onnx.name_scopes"
CLASSES_KEY = "pkg.torch.onnx.class_hierarchy"
FLOAT32_ATOL = 1e-4  # the parity gate's tolerance (export/parity.py)
QUANT_REL = 0.1  # relative error above which a quantized node may be reported (SQNR 20 dB)
QUANT_JUMP = 4.0  # ... when it is also this many times its inputs' relative error (12 dB)
WEIGHT_SUFFIXES = ("_quantized", "_scale", "_zero_point", "_smoothed", "_Transposed", "_fp16", "_DequantizeLinear")
_NO_MODULE = "_empty_nn_module_stack"
_SHAPE_DTYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.BOOL}
_FLOAT_DTYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}


class DebugError(EdgeformerError):
    pass


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


def _numel(t: onnx.TensorProto) -> int:
    return int(np.prod(t.dims)) if len(t.dims) else 1


def _strip_weight_name(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for s in WEIGHT_SUFFIXES:
            if name.endswith(s):
                name, changed = name[: -len(s)], True
    return name


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
            self._map_to_origin(origin)
        self._infer_from_neighbours()

    # -- where nodes come from -------------------------------------------------------------------
    def _map_to_origin(self, origin: "GraphIndex") -> None:
        weight_readers: dict[str, int] = {}
        for k, n in enumerate(origin.nodes):
            for i in n.input:
                if i in origin.initializers and _numel(origin.initializers[i]) > 1:
                    weight_readers.setdefault(i, k)
        names = sorted(origin.by_name, key=len, reverse=True)
        for k, n in enumerate(self.nodes):
            found, source = None, None
            if n.name in origin.by_name and origin.nodes[origin.by_name[n.name]].op_type == n.op_type:
                found, source = origin.by_name[n.name], "float graph"
            if found is None:
                for o in n.output:
                    if o in origin.producer:
                        found, source = origin.producer[o], "float graph"
                        break
            if found is None:
                prefix = next((m for m in names if n.name.startswith(m + "_")), None)
                if prefix is not None:
                    found, source = origin.by_name[prefix], "node name"
            if found is None:
                for i in n.input:
                    base = _strip_weight_name(i) if i in self.initializers else None
                    if base and base != i and base in weight_readers:
                        found, source = weight_readers[base], "weight name"
                        break
            self.origin_node[k] = found
            if self.scopes[k] is None and found is not None and origin.scopes[found] is not None:
                s = origin.scopes[found]
                self.scopes[k] = Scope(s.module, s.cls, source)

    def _infer_from_neighbours(self) -> None:
        for _ in range(len(self.nodes)):
            changed = False
            for k, n in enumerate(self.nodes):
                if self.scopes[k] is not None:
                    continue
                near = [self.producer[i] for i in n.input if i in self.producer]
                near += [c for o in n.output for c in self.consumers.get(o, [])]
                known = [self.scopes[j].module for j in near if self.scopes[j] is not None]
                if known:
                    self.scopes[k] = Scope(_common_module(known), "", "neighbours")
                    changed = True
            if not changed:
                break
        for k in range(len(self.nodes)):
            if self.scopes[k] is None:
                self.scopes[k] = Scope("", "", "none")

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

    def weight_size(self, k: int) -> int:
        """The element count of the largest weight the node reads (float or integer weights, not shapes)."""
        sizes = [_numel(self.initializers[i]) for i in self.nodes[k].input
                 if i in self.initializers and self.initializers[i].data_type not in _SHAPE_DTYPES]
        return max((s for s in sizes if s > 1), default=0)

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


# -- running ---------------------------------------------------------------------------------------
def run_exposed(model: onnx.ModelProto, tensors: Sequence[str], feeds_list: Sequence[Mapping[str, np.ndarray]],
                base_dir: str | os.PathLike | None = None) -> list[dict[str, np.ndarray]]:
    """Run `model` once per feed dict with `tensors` added as graph outputs; float outputs only.

    ONNX Runtime's graph optimizations are off, so every tensor is the one the graph writes.
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for t in tensors:
        if t not in known:
            probe.graph.output.add().name = t  # no type: onnxruntime takes the producer's
            known.add(t)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    inputs = {i.name for i in probe.graph.input}
    with tempfile.TemporaryDirectory() as tmp:
        if probe.ByteSize() > 1_800_000_000:  # past protobuf's 2 GB: weights beside the graph
            path = Path(tmp) / "probe.onnx"
            onnx.save(probe, str(path), save_as_external_data=True, location="probe.onnx.data")
            source = str(path)
        else:
            source = probe.SerializeToString()
        try:
            session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise DebugError(f"onnxruntime cannot run the graph with its intermediate tensors exposed: {first}") from None
        names = [o.name for o in session.get_outputs()]
        results = []
        for feeds in feeds_list:
            values = session.run(names, {k: v for k, v in feeds.items() if k in inputs})
            results.append({n: v for n, v in zip(names, values)
                            if isinstance(v, np.ndarray) and v.dtype.kind == "f"})
    return results


# -- comparing -------------------------------------------------------------------------------------
@dataclass
class TensorError:
    max_abs: float = 0.0
    mean_abs: float = 0.0
    rel: float = 0.0  # ||got - ref|| / ||ref|| over every compared element of every batch
    cosine: float = 1.0
    elements: int = 0
    _err2: float = 0.0
    _ref2: float = 0.0
    _abs_sum: float = 0.0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
        if r.size == 0:
            return
        d = g - r
        finite = np.isfinite(d).all()
        self.max_abs = max(self.max_abs, float(np.abs(d).max()) if finite else math.inf)
        self._abs_sum += float(np.abs(d).sum()) if finite else math.inf
        self._err2 += float(d @ d) if finite else math.inf
        self._ref2 += float(r @ r)
        self.elements += r.size
        denom = float(np.linalg.norm(r) * np.linalg.norm(g))
        cos = float(r @ g / denom) if denom > 0 and finite else (1.0 if np.array_equal(r, g) else 0.0)
        self.cosine = min(self.cosine, cos)
        self.mean_abs = self._abs_sum / self.elements
        self.rel = math.sqrt(self._err2 / self._ref2) if self._ref2 > 0 else (0.0 if self._err2 == 0 else math.inf)


def sqnr_db(rel: float) -> float:
    """Signal to quantization-noise ratio: 20 log10(||ref|| / ||got - ref||)."""
    return math.inf if rel == 0 else -20 * math.log10(rel) if math.isfinite(rel) else -math.inf


def valid_positions(feeds: Mapping[str, np.ndarray]) -> np.ndarray | None:
    mask = feeds.get("attention_mask")
    return None if mask is None else np.asarray(mask).astype(bool)


def accumulate(errors: dict[str, TensorError], refs: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray],
               valid: np.ndarray | None) -> None:
    """Add one batch: per-token tensors (batch, seq, ...) are compared at real tokens only."""
    for name, ref in refs.items():
        g = got.get(name)
        if g is None or np.shape(g) != np.shape(ref):
            continue
        ref, g = np.asarray(ref), np.asarray(g)
        if valid is not None and ref.ndim >= 2 and ref.shape[:2] == valid.shape:
            ref, g = ref[valid], g[valid]
        errors.setdefault(name, TensorError()).add(ref, g)


@dataclass
class Budget:
    kind: str = "atol"  # "atol" (float32) or "relative" (quantized)
    atol: float = FLOAT32_ATOL
    rel: float = QUANT_REL
    jump: float = QUANT_JUMP

    def over(self, e: TensorError, upstream: TensorError) -> bool:
        if self.kind == "atol":
            return e.max_abs > self.atol
        return e.rel > self.rel and e.rel > self.jump * max(upstream.rel, 1e-12)

    def describe(self) -> str:
        if self.kind == "atol":
            return f"max abs error > {self.atol:g}"
        return f"relative error > {self.rel:g} (SQNR < {sqnr_db(self.rel):.0f} dB) and > {self.jump:g}x its inputs'"

    def to_json(self) -> dict:
        return {"kind": self.kind, "atol": self.atol} if self.kind == "atol" else \
            {"kind": self.kind, "rel": self.rel, "jump": self.jump}


@dataclass
class NodeRow:
    """One compared tensor and the node that wrote it."""

    index: int  # position in topological order
    node: str
    op_type: str
    tensor: str
    module: str
    module_class: str
    module_source: str
    max_abs: float
    mean_abs: float
    rel: float
    cosine: float
    input_max_abs: float  # the worst error of the nearest compared tensors this node depends on
    input_rel: float
    over: bool
    float_node: str | None = None  # graph against graph: the reference graph's node for this tensor

    @property
    def sqnr_db(self) -> float:
        return sqnr_db(self.rel)

    @property
    def jump(self) -> float:
        """How many times the error of its inputs this node's output carries (relative errors)."""
        return self.rel / self.input_rel if self.input_rel > 0 else (math.inf if self.rel > 0 else 1.0)

    def module_label(self) -> str:
        return Scope(self.module, self.module_class).label()

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(sqnr_db=_finite(self.sqnr_db), jump=_finite(self.jump))
        return {k: _finite(v) if isinstance(v, float) else v for k, v in d.items()}


@dataclass
class LayerRow:
    label: str  # "embed", "blocks.3", "output logits"
    tensor: str
    max_abs: float
    rel: float
    cosine: float

    @property
    def sqnr_db(self) -> float:
        return sqnr_db(self.rel)

    def to_json(self) -> dict:
        return {"label": self.label, "tensor": self.tensor, "max_abs": _finite(self.max_abs), "rel": _finite(self.rel),
                "cosine": _finite(self.cosine), "sqnr_db": _finite(self.sqnr_db)}


@dataclass
class Finding:
    """The first node over the budget, and which node in its region to blame."""

    row: NodeRow  # the first compared tensor over the budget
    node: str  # the node reported: the weight-bearing node of the region, or the tensor's producer
    op_type: str
    module: str
    module_class: str
    module_source: str
    region: list[str] = field(default_factory=list)  # "op name" of every node since the last good tensors
    float_node: str | None = None
    float_op_type: str | None = None
    cause: str | None = None  # e.g. a weight that differs from the checkpoint's

    def module_label(self) -> str:
        return Scope(self.module, self.module_class).label()

    def to_json(self) -> dict:
        d = asdict(self)
        d["row"] = self.row.to_json()
        return d


@dataclass
class DebugReport:
    reference: str  # "checkpoint" or "float graph"
    budget: Budget
    rows: list[NodeRow]
    layers: list[LayerRow]
    finding: Finding | None
    worst: NodeRow | None  # the largest jump in relative error (where most error is added)
    nodes: int = 0
    batches: list[list[int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.finding is None

    def line(self) -> str:
        return first_divergence_line(self)

    def around(self, before: int = 3, after: int = 2) -> list[NodeRow]:
        """The compared nodes just before and after the first divergence (or the worst jump)."""
        target = self.finding.row if self.finding else self.worst
        if target is None:
            return []
        i = next(j for j, r in enumerate(self.rows) if r is target)
        return self.rows[max(0, i - before): i + after + 1]

    def to_json(self) -> dict:
        return {"passed": self.passed, "reference": self.reference, "budget": self.budget.to_json(),
                "summary": self.line(), "finding": self.finding.to_json() if self.finding else None,
                "worst_jump": self.worst.to_json() if self.worst else None,
                "layers": [r.to_json() for r in self.layers], "nodes": self.nodes, "compared": len(self.rows),
                "batches": self.batches, "notes": self.notes, "rows": [r.to_json() for r in self.rows]}


def _finite(x: float) -> float | None | str:
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else "-inf" if x < 0 else "nan"
    return x


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def first_divergence_line(report: DebugReport) -> str:
    """One line for a terminal or a log: where the graph first leaves the reference, or that it does not."""
    f = report.finding
    if f is None:
        tail = ""
        if report.worst is not None and report.budget.kind == "relative":
            w = report.worst
            tail = (f"; most error added by {w.op_type} {w.node} ({w.module_label()}): relative error "
                    f"{_fmt(w.rel)}, {jump_text(w)}")
        return f"no node over the budget ({report.budget.describe()}) in {len(report.rows)} compared tensors{tail}"
    r = f.row
    where = f"{f.op_type} {f.node}"
    if f.float_node and f.float_node != f.node:
        where += f" (float node {f.float_op_type} {f.float_node})"
    if report.budget.kind == "atol":
        err = f"max abs error {_fmt(r.max_abs)} > {report.budget.atol:g} (inputs {_fmt(r.input_max_abs)})"
    else:
        err = f"relative error {_fmt(r.rel)} (SQNR {r.sqnr_db:.1f} dB), {jump_text(r)}"
    line = f"first divergence: {where} in module {f.module_label()}, output {r.tensor}: {err}"
    if f.cause:
        line += f"; {f.cause}"
    return line


def walk(index: GraphIndex, errors: Mapping[str, TensorError], budget: Budget) -> list[NodeRow]:
    """Every compared tensor in topological order, with the error that reached its node from upstream."""
    upstream: dict[str, TensorError] = {}
    zero = TensorError()
    rows = []
    for k, n in enumerate(index.nodes):
        inputs = [upstream.get(i, zero) for i in n.input if i and i not in index.constants]
        worst_in = TensorError(max_abs=max((e.max_abs for e in inputs), default=0.0),
                               rel=max((e.rel for e in inputs), default=0.0))
        for o in n.output:
            e = errors.get(o)
            if e is None or e.elements == 0:
                upstream[o] = worst_in
                continue
            upstream[o] = e
            s = index.scopes[k]
            origin = index.origin_node[k] if index.origin is not None else None
            float_node = None
            if index.origin is not None and o in index.origin.producer:
                float_node = index.origin.nodes[index.origin.producer[o]].name
            elif origin is not None:
                float_node = index.origin.nodes[origin].name
            rows.append(NodeRow(k, n.name, n.op_type, o, s.module, s.cls, s.source, e.max_abs, e.mean_abs, e.rel,
                                e.cosine, worst_in.max_abs, worst_in.rel, budget.over(e, worst_in), float_node))
    return rows


def locate(index: GraphIndex, rows: list[NodeRow], compared: Iterable[str]) -> Finding | None:
    """The first row over the budget, and the node of its region to name: the one that reads the largest weight
    (a MatMul rather than the bias Add after it), else the tensor's producer."""
    first = next((r for r in rows if r.over), None)
    if first is None:
        return None
    region = index.region(first.tensor, compared)
    main = max(region, key=lambda k: (index.weight_size(k), k)) if region else index.producer[first.tensor]
    if index.weight_size(main) == 0:
        main = index.producer[first.tensor]
    return finding_for(index, first, region, main)


def finding_for(index: GraphIndex, row: NodeRow, region: list[int], main: int, cause: str | None = None) -> Finding:
    n, s = index.nodes[main], index.scopes[main]
    float_node = float_op = None
    if index.origin is not None and index.origin_node[main] is not None:
        fn = index.origin.nodes[index.origin_node[main]]
        float_node, float_op = fn.name, fn.op_type
    return Finding(row, n.name, n.op_type, s.module, s.cls, s.source,
                   [f"{index.nodes[k].op_type} {index.nodes[k].name}" for k in region], float_node, float_op, cause)


def layer_curve(index: GraphIndex, errors: Mapping[str, TensorError], reference_index: GraphIndex | None = None
                ) -> list[LayerRow]:
    """The error at the end of each top-level stage: embeddings, every block, the final norm, each graph output."""
    bounds = (reference_index or index).module_boundaries()
    rows: list[LayerRow] = []
    seen: set[str] = set()

    containers = {m.rsplit(".", 1)[0] for m in bounds if "." in m and m.rsplit(".", 1)[1].isdigit()}

    def is_stage(m: str) -> bool:  # a top-level module, or one entry of a top-level list (blocks.3)
        parts = m.split(".")
        return (len(parts) == 1 and m not in containers) or (len(parts) == 2 and parts[1].isdigit())

    stages = [(m, outs) for m, (_, outs) in bounds.items() if m and is_stage(m) and outs]
    producer = (reference_index or index).producer
    stages.sort(key=lambda s: max(producer.get(t, -1) for t in s[1]))
    outputs = set(index.graph_outputs)
    for m, outs in stages:
        t = next((t for t in outs if t in errors and errors[t].elements), None)
        if t is None or t in seen:
            continue
        seen.add(t)
        e = errors[t]
        rows.append(LayerRow(f"{m} (output {t})" if t in outputs else m, t, e.max_abs, e.rel, e.cosine))
    for t in index.graph_outputs:
        e = errors.get(t)
        if t not in seen and e is not None and e.elements:
            rows.append(LayerRow(f"output {t}", t, e.max_abs, e.rel, e.cosine))
    return rows


def worst_jump(rows: list[NodeRow]) -> NodeRow | None:
    """The node that adds the most relative error to what reaches it (rel - input rel), if any node adds some."""
    best = max(rows, key=lambda r: r.rel - r.input_rel, default=None)
    return best if best is not None and best.rel - best.input_rel > 1e-6 else None


def jump_text(row: NodeRow) -> str:
    return f"{_fmt(row.jump)}x its inputs' {_fmt(row.input_rel)}" if row.input_rel > 0 else "its inputs exact"


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


def compare_graphs(candidate: onnx.ModelProto, reference: onnx.ModelProto,
                   feeds_list: Sequence[Mapping[str, np.ndarray]], budget: Budget) -> DebugReport:
    """`candidate` (a quantized, or otherwise rewritten, graph) against its float32 `reference`, tensor by tensor.

    Tensors are matched by name (the quantizer keeps the names of the float tensors it recomputes). A tensor
    whose producer has the same operator in both graphs but reads float weights the reference does not have
    was rewritten on purpose (smoothing folds 1/s into a LayerNorm's scale) and is not compared; its
    consumers are.
    """
    ref_index = GraphIndex(reference)
    index = GraphIndex(candidate, origin=ref_index)
    common = []
    for t, k in index.producer.items():
        j = ref_index.producer.get(t)
        if j is None or t in index.constants or t in ref_index.constants:
            continue
        n, m = index.nodes[k], ref_index.nodes[j]
        if n.op_type == m.op_type and any(
                i in index.initializers and i not in ref_index.initializers
                and index.initializers[i].data_type in _FLOAT_DTYPES for i in n.input):
            continue  # the same operator with new float weights: rewritten on purpose (a smoothed LayerNorm)
        common.append(t)
    ref_values = run_exposed(reference, common, feeds_list)
    got_values = run_exposed(candidate, common, feeds_list)
    errors: dict[str, TensorError] = {}
    for feeds, r, g in zip(feeds_list, ref_values, got_values):
        accumulate(errors, r, g, valid_positions(feeds))
    rows = walk(index, errors, budget)
    finding = locate(index, rows, errors)
    report = DebugReport("float graph", budget, rows, layer_curve(index, errors, ref_index), finding, worst_jump(rows),
                         nodes=len(index.nodes), batches=[list(_batch_shape(f)) for f in feeds_list],
                         notes=metadata_notes(index))
    return report


def _batch_shape(feeds: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    first = next(iter(feeds.values()))
    return tuple(int(d) for d in np.shape(first)[:2])


def load_graph(path: str | os.PathLike) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as e:
        raise DebugError(f"cannot read the ONNX graph {path}: {(str(e).strip().splitlines() or [type(e).__name__])[0]}") from None
