"""`edgeformer quantize` as one call: the bundle's evaluation and calibration sets, then the quantizer; no PyTorch."""

from __future__ import annotations

import os
from typing import Callable

from edgeformer.quantize import QuantizeResult, RecipeOptions, compare_recipes, quantize_bundle
from edgeformer.quantize.compare import ComparedRecipe
from edgeformer.quantize.kinds import evaluation_sets, is_generation
from edgeformer.runtime.errors import EdgeformerError


def quantize(bundle: str | os.PathLike, out: str | os.PathLike, recipe: str, max_drop: float | None = None,
             eval_data: str | os.PathLike | None = None, calib_data: str | os.PathLike | None = None,
             options: RecipeOptions | None = None, smooth_alpha: float | str | None = "auto", metric: str | None = None,
             overwrite: bool = False, progress: Callable[[str], None] = lambda msg: None) -> QuantizeResult:
    """Quantize `bundle` into `out`, measured on `eval_data` or the built-in set that fits its kind (quantize/kinds.py)."""
    data, calib = evaluation_sets(bundle, eval_data, calib_data)
    return quantize_bundle(bundle, out, recipe, max_drop, data, options, overwrite=overwrite, progress=progress,
                           calib_data=calib, smooth_alpha=smooth_alpha, metric=metric)


def compare(bundle: str | os.PathLike, eval_data: str | os.PathLike | None = None,
            calib_data: str | os.PathLike | None = None, options: RecipeOptions | None = None,
            smooth_alpha: float | str | None = "auto", progress: Callable[[str], None] = lambda msg: None
            ) -> list[ComparedRecipe]:
    """Every recipe on a single-graph `bundle`, measured as `quantize` measures it, all timed in one session of
    alternating blocks (quantize/compare.py); writes no bundle."""
    if is_generation(bundle):
        raise EdgeformerError("--compare covers single-graph bundles; quantize a generation bundle one recipe at a time")
    data, calib = evaluation_sets(bundle, eval_data, calib_data)
    return compare_recipes(bundle, data, options, calib, smooth_alpha, progress=progress)
