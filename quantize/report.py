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
    """Task-metric drop against the speed-up over float32, one point per recipe, written atomically."""
    path = check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ax.scatter([1.0], [0.0], color="black", zorder=3)
    ax.annotate("float32", (1.0, 0.0), textcoords="offset points", xytext=(-8, -14), ha="right")
    for r in results:
        speedup = r.float_ms / r.quant_ms if r.quant_ms else float("nan")
        ax.scatter([speedup], [r.fidelity.drop], s=30 + 300 * r.size_ratio, alpha=0.8, zorder=3)
        ax.annotate(f"{r.recipe} ({r.size_ratio:.0%} size)", (speedup, r.fidelity.drop), textcoords="offset points",
                    xytext=(6, 6))
    metric = results[0].fidelity.metric if results else "task metric"
    ax.set_xlabel("speed-up over float32 (batch 1, same run)")
    ax.set_ylabel(f"drop in {metric} (lower is better)")
    ax.set_title(title or "quantization: accuracy against latency")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
