"""`edgeformer debug QUANTIZED_BUNDLE --reference FLOAT_BUNDLE`: the node where quantization loses the most.

Both graphs run once per batch of real text (the calibration paragraphs by default) with every
tensor they share exposed (edgeformer.debug.compare_graphs); the quantizer keeps the names of
the float tensors it recomputes, so a quantized MatMul's output is compared with the float MatMul's.
Every quantized node has some error, so the budget is relative: a node is reported when its output's
relative error is over `rel` (default 0.1, SQNR 20 dB) and over `jump` (default 4x) its inputs'.
No torch here: the quantize layer calls this when a recipe misses its budget.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgeformer import runtime
from edgeformer.debug import (FLOAT32_ATOL, QUANT_JUMP, QUANT_REL, Budget, DebugError, DebugReport, compare_graphs,
                              load_graph)
from edgeformer.runtime.bundle import open_bundle
from edgeformer.runtime.inputs import manifest_inputs

from .calibration import default_calibration_texts, text_batches

DEBUG_TEXTS = 16  # real paragraphs are enough to place an error; more only costs time


def debug_feeds(reference: runtime.Model, texts: Sequence[str] | None = None) -> list[dict[str, np.ndarray]]:
    """Batches of real text through the float bundle's tokenizer; random token ids for a bundle without one."""
    if reference.bundle.tokenizer_path is not None:
        return text_batches(reference, list(texts) if texts else default_calibration_texts()[:DEBUG_TEXTS])
    if texts:
        raise DebugError("the float32 bundle has no tokenizer.json; it cannot read text")
    seq = min(32, reference.manifest.axes.get("seq", {}).get("max", 32))
    return [manifest_inputs(reference.manifest, 2, seq, seed=s) for s in range(2)]


def _graph_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return open_bundle(path).model_path if path.is_dir() else path


def debug_quantized(
    bundle: str | os.PathLike,
    float_bundle: str | os.PathLike,
    texts: Sequence[str] | None = None,
    rel: float = QUANT_REL,
    jump: float = QUANT_JUMP,
    atol: float | None = None,
    feeds: Sequence[Mapping[str, np.ndarray]] | None = None,
) -> DebugReport:
    """Compare `bundle` (a bundle directory or a bare .onnx, usually quantized) with the float32 bundle it came from.

    A quantized candidate gets the relative budget (`rel`, `jump`); a float32 one (two float graphs)
    the max abs error `atol` (default: the reference's parity tolerance).
    """
    reference = runtime.load(float_bundle)
    if reference.manifest.quantization:
        raise DebugError(f"{float_bundle} is quantized; the reference must be the float32 bundle")
    quantized = True
    if Path(bundle).is_dir():
        manifest = open_bundle(bundle).manifest
        if manifest.config != reference.manifest.config:
            raise DebugError(f"{bundle} and {float_bundle} hold different model configs")
        quantized = bool(manifest.quantization)
    if quantized:
        budget = Budget("relative", rel=rel, jump=jump)
    else:
        budget = Budget("atol", atol if atol is not None else (reference.manifest.parity_atol or FLOAT32_ATOL))
    feeds_list = list(feeds) if feeds is not None else debug_feeds(reference, texts)
    return compare_graphs(load_graph(_graph_path(bundle)), load_graph(reference.bundle.model_path), feeds_list, budget)


def explain_budget_failure(quantized_graph: str | os.PathLike, float_bundle: str | os.PathLike,
                           feeds: Sequence[Mapping[str, np.ndarray]] | None = None) -> list[str]:
    """The lines to print when a recipe misses its accuracy budget: the node that adds the most error.

    `quantized_graph` may be the bare model.onnx still in the quantizer's temporary folder. Never raises.
    """
    try:
        report = debug_quantized(quantized_graph, float_bundle, feeds=feeds)
        return [report.line()]
    except Exception as e:  # a diagnosis must not hide the gate's own failure
        return [f"debug: could not locate the loss: {(str(e).strip().splitlines() or [type(e).__name__])[0]}"]


__all__ = ["DEBUG_TEXTS", "debug_feeds", "debug_quantized", "explain_budget_failure"]
