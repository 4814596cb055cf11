"""int8-dynamic's default float budget: the FFN output projections that cost the most stay float.

int8 weights are 7-bit so that every CPU computes the same (recipes.py); what then costs the most
is the one int8 scale per call for each FFN output projection's input, which follows GELU and holds
rare values tens of times larger than the rest. On all-MiniLM-L6-v2 (AMD EPYC, 2026-12-07) every
other MatMul kept in float alone buys back at most 0.0005 of mean embedding cosine; the first
layer's FFN output projection alone buys back 0.0016 (0.9945 -> 0.9961 on 133 held-out paragraphs),
for 2% of the size and about a tenth of the int8 speed-up.

    quantize every MatMul ──► drop on the calibration texts <= sensitive_drop? ──► done
                                  │ no
    rank the FFN output projections by the drop with each alone in float (a subset of those texts)
    keep the most helpful, up to sensitive_float of them, until the drop holds

Every choice is measured on the calibration texts, never on the evaluation set, which so stays held out.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable

import onnx

from edgeformer.runtime.model import Model

from .budget import keep_within_budget
from .evaluate import EvalSet, Fidelity, quantize_and_measure
from .recipes import QuantizeError, RecipeOptions, activation_fed_matmuls

RANKING_TEXTS = 32  # calibration texts each candidate is ranked on; the kept set is measured on all of them
RECIPE = "int8-dynamic"  # int8-static keeps every FFN output projection float already


def check_sensitive_options(opt: RecipeOptions) -> None:
    if isinstance(opt.sensitive_float, bool) or not isinstance(opt.sensitive_float, int) or opt.sensitive_float < 0:
        raise QuantizeError(f"sensitive_float {opt.sensitive_float!r}: expected a count of MatMuls, 0 or more")
    if not isinstance(opt.sensitive_drop, (int, float)) or not math.isfinite(opt.sensitive_drop) or opt.sensitive_drop < 0:
        raise QuantizeError(f"sensitive_drop {opt.sensitive_drop!r}: expected a finite drop, 0 or more")


def keep_sensitive_in_float(recipe: str, src: Path, work: Path, opt: RecipeOptions, ref: Model,
                            calibration: list[str] | None, progress: Callable[[str], None],
                            like: EvalSet | None = None) -> list[str]:
    """The FFN output MatMuls of the graph at `src` to keep in float (none when the calibration texts'
    drop is within `opt.sensitive_drop`, the recipe is not int8-dynamic, or there are no texts).

    The texts are measured with the metric of `like`, the evaluation set (a bundle kind may bring its own)."""
    check_sensitive_options(opt)
    if recipe != RECIPE or opt.sensitive_float == 0:
        return []
    if not calibration:
        progress("no calibration texts: every FFN output projection int8 (the default float budget is measured on texts)")
        return []
    # Found in the float32 graph: in `src` smoothing may have put a Mul between the activation and the MatMul.
    candidates = [n for n in activation_fed_matmuls(onnx.load(str(ref.bundle.model_path))) if n not in opt.exclude]
    if not candidates:
        return []
    trial = work / "sensitive.onnx"
    texts = dataclasses.replace(like, texts=list(calibration), labels=None) if isinstance(like, EvalSet) else EvalSet(calibration)

    def measure(kept: list[str], data: EvalSet) -> Fidelity:
        return quantize_and_measure(recipe, src, trial, dataclasses.replace(opt, exclude=opt.exclude + kept), ref, data)

    fid = measure([], texts)
    progress(f"calibration texts: {fid.metric} drop {fid.drop:.4g} with every MatMul int8 "
             f"(default float budget {opt.sensitive_drop:g}, at most {opt.sensitive_float} FFN output MatMuls)")
    fid, kept = keep_within_budget(fid, opt.sensitive_drop, lambda: candidates,
                                   lambda node: measure([node], texts.subset(RANKING_TEXTS)).drop,
                                   lambda nodes: measure(list(nodes), texts), progress, max_kept=opt.sensitive_float)
    trial.unlink(missing_ok=True)
    return kept
