"""The error curve of a debug report as a picture: every compared tensor in graph order, stages marked."""

from __future__ import annotations

import math
import os
from pathlib import Path

from edgeformer.runtime.artifacts import check_picture_path, save_figure

from .report import DebugReport

def check_plot_path(path: str | os.PathLike) -> Path:
    """Refuse a picture that cannot be drawn before anything runs."""
    return check_picture_path(path)


def plot_error_curve(report: DebugReport, path: str | os.PathLike, title: str = "") -> Path:
    """Error of every compared tensor against its position in the graph (log scale), the budget as a line,
    each stage's output (embeddings, blocks, outputs) labelled, and the first divergence in red. Written atomically."""
    path = check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    absolute = report.budget.kind == "atol"
    value = (lambda r: r.max_abs) if absolute else (lambda r: r.rel)
    floor = 1e-12
    xs = list(range(len(report.rows)))
    ys = [max(value(r), floor) if math.isfinite(value(r)) else 1e6 for r in report.rows]
    fig, ax = plt.subplots(figsize=(9, 4.6), dpi=120)
    ax.plot(xs, ys, marker=".", lw=1, color="tab:blue", label="node output")
    ax.set_yscale("log")
    limit = report.budget.atol if absolute else report.budget.rel
    ax.axhline(limit, color="tab:orange", ls="--", lw=1, label=f"budget: {'max abs' if absolute else 'relative error'} {limit:g}")
    position = {r.tensor: i for i, r in enumerate(report.rows)}
    for layer in report.layers:
        i = position.get(layer.tensor)
        if i is None:
            continue
        ax.axvline(i, color="grey", lw=0.6, alpha=0.5)
        ax.annotate(layer.label, (i, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                    fontsize=7, color="grey")
    if report.finding is not None:
        i = position[report.finding.row.tensor]
        ax.scatter([i], [ys[i]], color="red", zorder=3, s=40,
                   label=f"first divergence: {report.finding.op_type} {report.finding.node} ({report.finding.module_label()})")
    ax.set_xlabel("compared tensors in graph order")
    ax.set_ylabel("max abs error" if absolute else "relative error ||q - f|| / ||f||")
    ax.set_title(title or f"error against the {report.reference}, node by node")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
