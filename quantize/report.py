"""`edgeformer quantize --compare`: every recipe on one bundle, and the accuracy-versus-latency picture."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from edgeformer.runtime.artifacts import check_picture_path, save_figure

from .bundle import quantize_bundle
from .evaluate import EvaluationData
from .result import QuantizeResult
from .recipes import RECIPES, RecipeOptions


def compare_recipes(bundle: str | os.PathLike, data: EvaluationData | None = None, options: RecipeOptions | None = None,
                    calib_data: str | os.PathLike | None = None, smooth_alpha: float | str | None = "auto",
                    bench_seconds: float = 1.0, progress: Callable[[str], None] = lambda msg: None) -> list[QuantizeResult]:
    """Quantize `bundle` with every recipe (nothing is kept); each row's latencies come from one run."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in RECIPES:
            results.append(quantize_bundle(bundle, Path(tmp) / name, name, None, data, options, bench_seconds=bench_seconds,
                                           progress=progress, calib_data=calib_data, smooth_alpha=smooth_alpha))
    return results


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
