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


def curve_points(values: list[float]) -> tuple[list[float], list[int], list[int], float, float]:
    """What the log-scale curve draws: the positive errors (None elsewhere, so the line breaks there
    instead of diving), the positions of exact zeros and of non-finite errors, and the heights those
    are drawn at: half a decade under the decade of the smallest positive error (between two ticks,
    so it reads as no value of the scale), a decade over the largest."""
    finite = [v for v in values if math.isfinite(v) and v > 0]
    bottom = 10 ** (math.floor(math.log10(min(finite))) - 0.5) if finite else 1e-8
    top = max(finite) * 10 if finite else 1.0
    ys = [v if math.isfinite(v) and v > 0 else None for v in values]
    zeros = [i for i, v in enumerate(values) if v == 0]
    broken = [i for i, v in enumerate(values) if not math.isfinite(v)]
    return ys, zeros, broken, bottom, top


def label_lanes(starts: list[float], widths: list[float], gap: float = 4.0) -> list[int]:
    """The lane (0 = top) of each label so that no two in a lane overlap: labels start at `starts`
    (pixels, ascending) and are `widths` wide; a label takes the first lane where the last one has ended."""
    ends: list[float] = []
    lanes = []
    for x, w in zip(starts, widths):
        lane = next((k for k, end in enumerate(ends) if end + gap <= x), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = x + w
        lanes.append(lane)
    return lanes


def plot_error_curve(report: DebugReport, path: str | os.PathLike, title: str = "") -> Path:
    """Error of every compared tensor against its position in the graph (log scale), the budget as a line,
    each stage's output (embeddings, blocks, outputs) labelled, and the first divergence in red. Written atomically.

    Exact zeros have no place on a log scale: they are drawn as open markers at the bottom, and the
    line breaks there rather than diving to an invented floor; non-finite errors go at the top.
    """
    path = check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    absolute = report.budget.kind == "atol"
    value = (lambda r: r.max_abs) if absolute else (lambda r: r.rel)
    limit = report.budget.atol if absolute else report.budget.rel
    ys, zeros, broken, bottom, top = curve_points([value(r) for r in report.rows])
    bottom, top = min(bottom, 10 ** (math.floor(math.log10(limit)) - 1.5)), max(top, limit * 10)
    xs = list(range(len(report.rows)))
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=120)
    ax.plot(xs, [float("nan") if y is None else y for y in ys], marker=".", lw=1, color="tab:blue", label="node output")
    ax.set_yscale("log")
    if zeros:
        ax.scatter(zeros, [bottom] * len(zeros), marker="o", facecolors="none", edgecolors="tab:blue", s=18, zorder=3,
                   label=f"exactly equal to the reference ({len(zeros)}), drawn on the dotted line")
        ax.axhline(bottom, color="tab:blue", ls=":", lw=0.8, alpha=0.6)
        ax.annotate("0", (0, bottom), xycoords=("axes fraction", "data"), xytext=(-4, 0), textcoords="offset points",
                    ha="right", va="center", fontsize=9, color="tab:blue")
    if broken:
        ax.scatter(broken, [top] * len(broken), marker="^", color="tab:purple", s=24, zorder=3,
                   label=f"not finite ({len(broken)}), drawn at the top")
    ax.axhline(limit, color="tab:orange", ls="--", lw=1, label=f"budget: {'max abs' if absolute else 'relative error'} {limit:g}")
    position = {r.tensor: i for i, r in enumerate(report.rows)}
    stages = [(position[layer.tensor], layer.label) for layer in report.layers if layer.tensor in position]
    if report.finding is not None:
        i = position[report.finding.row.tensor]
        ax.scatter([i], [ys[i] if ys[i] is not None else bottom], color="red", zorder=4, s=40,
                   label=f"first divergence: {report.finding.op_type} {report.finding.node} ({report.finding.module_label()})")
    ax.set_xlim(-1, max(len(xs), 2))
    ax.set_xlabel("compared tensors in graph order")
    ax.set_ylabel("max abs error" if absolute else "relative error ||q - f|| / ||f||")
    ax.set_title(title or f"error against the {report.reference}, node by node")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    lanes = draw_stage_labels(fig, ax, stages)
    # Room above the data for the stage labels' lanes (each about a tenth of the height).
    decades = math.log10(top) - math.log10(bottom)
    ax.set_ylim(bottom / 3, top * 10 ** (decades * 0.12 * (lanes + 1)))
    ax.legend(loc="lower right", fontsize=7, framealpha=0.9)
    fig.tight_layout()
    return save_figure(fig, path)


def draw_stage_labels(fig, ax, stages: list[tuple[int, str]]) -> int:
    """A grey line at each stage's output and its name beside it, in as many lanes as keep names apart."""
    if not stages:
        return 0
    fig.canvas.draw()  # text widths need a renderer
    renderer = fig.canvas.get_renderer()
    texts = []
    for i, label in stages:
        ax.axvline(i, color="grey", lw=0.6, alpha=0.5)
        texts.append(ax.text(i, 0.98, f" {label}", transform=ax.get_xaxis_transform(), va="top", ha="left", fontsize=7,
                             color="dimgrey"))
    right = ax.get_window_extent(renderer).x1
    starts, widths = [], []
    for (i, _), t in zip(stages, texts):
        x, w = ax.transData.transform((i, 1))[0], t.get_window_extent(renderer).width
        if x + w > right:  # past the right edge: the name goes to the left of its line
            t.set_horizontalalignment("right")
            t.set_text(t.get_text().strip() + " ")
            x -= w
        starts.append(x)
        widths.append(w)
    order = sorted(range(len(stages)), key=lambda k: starts[k])
    lanes = [0] * len(stages)
    for k, lane in zip(order, label_lanes([starts[k] for k in order], [widths[k] for k in order])):
        lanes[k] = lane
    step = 0.055
    for t, lane in zip(texts, lanes):
        t.set_y(0.98 - step * lane)
    return max(lanes) + 1
