"""`edgeformer quantize --compare --plot`: the accuracy-versus-latency picture of the recipes (quantize/compare.py)."""

from __future__ import annotations

import os
from pathlib import Path

from edgeformer.runtime.artifacts import check_picture_path, save_figure

from .compare import compare_recipes
from .result import QuantizeResult

__all__ = ["check_plot_path", "compare_recipes", "plot_tradeoff"]


def check_plot_path(path: str | os.PathLike) -> Path:
    """Refuse a picture that cannot be drawn before any quantization runs."""
    return check_picture_path(path)


def plot_tradeoff(results: list[QuantizeResult], path: str | os.PathLike, title: str = "") -> Path:
    """Task-metric drop against the speed-up over float32, one point per recipe, written atomically.

    float32 is the dotted cross of 1.0x and no drop (a line each, not a marker another recipe can
    cover); a marker's area is the recipe's file size (the legend shows the scale); a recipe whose
    timing did not settle (quantize/compare.py) is drawn hollow. Names stay inside the axes and
    apart from each other.
    """
    path = check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    area = lambda ratio: 20 + 400 * ratio  # noqa: E731 - marker area for a size ratio
    fig, ax = plt.subplots(figsize=(7.2, 4.8), dpi=120)
    ax.axvline(1.0, color="black", ls=":", lw=1)
    ax.axhline(0.0, color="black", ls=":", lw=1)
    ax.annotate("float32 (1.00x, no drop)", (1.0, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3),
                textcoords="offset points", va="top", fontsize=8)
    points, labels, areas = [], [], []
    for k, r in enumerate(results):
        speedup = r.float_ms / r.quant_ms if r.quant_ms else float("nan")
        reliable = getattr(r, "reliable", True)
        color = f"C{k}"
        ax.scatter([speedup], [r.fidelity.drop], s=area(r.size_ratio), zorder=3, alpha=0.85,
                   facecolors=color if reliable else "none", edgecolors=color, linewidths=1.5)
        points.append((speedup, r.fidelity.drop))
        areas.append(area(r.size_ratio))
        labels.append(f"{r.recipe}, {r.size_ratio:.0%} size" + ("" if reliable else ", timing unreliable"))
    xs = [1.0] + [x for x, _ in points if x == x]
    ys = [0.0] + [y for _, y in points]
    pad_x, pad_y = (max(xs) - min(xs)) * 0.15 or 0.1, (max(ys) - min(ys)) * 0.15 or 1e-3
    ax.set_xlim(min(xs) - pad_x, max(xs) + pad_x)
    ax.set_ylim(min(ys) - pad_y, max(ys) + 2 * pad_y)
    for size in (0.25, 0.5, 1.0):
        ax.scatter([], [], s=area(size), color="grey", alpha=0.5, label=f"{size:.0%} of float32")
    metric = results[0].fidelity.metric if results else "task metric"
    ax.set_xlabel("speed-up over float32 (batch 1, one timing session)")
    ax.set_ylabel(f"drop in {metric} (lower is better)")
    ax.set_title(title or "quantization: accuracy against latency")
    ax.grid(True, alpha=0.3)
    ax.legend(title="marker area: file size", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              title_fontsize=8, labelspacing=1.6, borderpad=1.0, frameon=False)
    fig.tight_layout()
    place_labels(fig, ax, points, labels, areas)
    return save_figure(fig, path)


def place_labels(fig, ax, points: list[tuple[float, float]], labels: list[str], areas: list[float]) -> None:
    """Each point's name beside its marker (`areas` in points squared): on the side with room inside the
    axes, moved up or down a line at a time until it covers no other name and no marker."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    pixels = fig.dpi / 72
    radii = [area ** 0.5 / 2 * pixels for area in areas]
    centres = [ax.transData.transform(p) for p in points]
    taken = [(px - r, py - r, px + r, py + r) for (px, py), r in zip(centres, radii)]  # markers, then names
    for (x, y), (px, py), r, label in zip(points, centres, radii, labels):
        text = ax.annotate(label, (x, y), xytext=(0, 0), textcoords="offset points", fontsize=8, va="center")
        extent = text.get_window_extent(renderer)
        w, h = extent.width, extent.height + 2
        gap = r + 4
        right = px + gap + w <= box.x1
        text.set_horizontalalignment("left" if right else "right")
        x0 = px + gap if right else px - gap - w
        for dy in (0, h, -h, 2 * h, -2 * h, 3 * h, -3 * h):
            rect = (x0, py + dy - h / 2, x0 + w, py + dy + h / 2)
            if not any(rect[0] < t[2] and t[0] < rect[2] and rect[1] < t[3] and t[1] < rect[3] for t in taken):
                break
        text.xyann = ((gap if right else -gap) / pixels, dy / pixels)
        taken.append(rect)
