"""The records of a debug run (each compared tensor, the layer curve, the finding) and its one-line summary."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .compare import Budget, sqnr_db
from .scopes import Scope


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

    @property
    def exact(self) -> bool:
        """The output equals the reference bit for bit (a Cast, Slice or Reshape of exact inputs)."""
        return self.max_abs == 0.0

    def jump_cell(self) -> str:
        """The jump for a table: '3.2x', or 'inputs exact' where there is no input error to divide by."""
        return f"{self.jump:.3g}x" if self.input_rel > 0 else ("inputs exact" if self.rel > 0 else "-")

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
        """The compared nodes just before and after the first divergence (or the worst jump).

        Outputs that equal the reference exactly (Casts, Slices and shape arithmetic upstream of
        the error) say nothing about where it comes from and are left out; `exact_left_out` counts them.
        """
        target = self.finding.row if self.finding else self.worst
        if target is None:
            return []
        i = next(j for j, r in enumerate(self.rows) if r is target)
        earlier = [r for r in self.rows[:i] if not r.exact][-before:] if before else []
        later = [r for r in self.rows[i + 1:] if not r.exact][:after]
        return [*earlier, target, *later]

    def exact_left_out(self, before: int = 3, after: int = 2) -> int:
        """How many exact outputs lie between the first and last row of `around`, left out of it."""
        shown = self.around(before, after)
        if not shown:
            return 0
        first, last = (next(j for j, r in enumerate(self.rows) if r is row) for row in (shown[0], shown[-1]))
        return sum(r.exact for r in self.rows[first:last + 1])

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


AROUND_COLUMNS = ["#", "op", "node", "module", "output", "error", "inputs'", "jump", "verdict"]


def around_table(report: DebugReport) -> tuple[str, list[str], list[list]]:
    """The "around the node" table: (what it is around, columns, rows); exact outputs are left out and counted."""
    relative = report.budget.kind == "relative"
    which = "around the first divergence" if report.finding else "around the node that adds the most error"
    skipped = report.exact_left_out()
    if skipped:
        which += f"; {skipped} output{'s' if skipped > 1 else ''} equal to the reference left out"
    columns = [*AROUND_COLUMNS]
    columns[5] = "rel error" if relative else "max abs"
    rows = [[r.index, r.op_type, r.node, r.module_label(), r.tensor,
             _fmt(r.rel if relative else r.max_abs), _fmt(r.input_rel if relative else r.input_max_abs),
             r.jump_cell(), "OVER" if r.over else "ok"] for r in report.around()]
    return which, columns, rows


def jump_text(row: NodeRow) -> str:
    return f"{_fmt(row.jump)}x its inputs' {_fmt(row.input_rel)}" if row.input_rel > 0 else "its inputs exact"
