"""The quantized bundle's manifest records, built in one place for every bundle kind."""

from __future__ import annotations

from typing import Any

from edgeformer.runtime.bundle import Manifest, QuantizationRecord
from edgeformer.runtime.records import BLOCK_RECIPES

from .recipes import RecipeOptions

INT8 = ("int8-dynamic", "int8-static")  # recipes with int8 weights: their weight settings are recorded


def quantization_record(recipe: str, opt: RecipeOptions, kept_float: list[str], source_bundle: str,
                        smooth_alpha: float | None = None, calibration: dict[str, Any] | None = None,
                        coverage: dict[str, Any] | None = None) -> QuantizationRecord:
    """The recipe and each setting that applies to it; what was kept in float and what it calibrated on."""
    blocks, int8 = recipe in BLOCK_RECIPES, recipe in INT8
    return QuantizationRecord(
        recipe=recipe, block_size=opt.block_size if blocks else None, symmetric=opt.symmetric if blocks else None,
        kept_float=kept_float, smooth_alpha=smooth_alpha, source_bundle=source_bundle,
        accuracy_level=opt.accuracy_level if blocks else None,
        # int8 weight settings: reduce_range (7-bit weights) keeps AVX2-without-VNNI CPUs' 16-bit sums from saturating.
        reduce_range=opt.reduce_range if int8 else None, weight_type=opt.weight_type if int8 else None,
        per_channel=opt.per_channel if int8 else None, calibration=calibration, coverage=coverage)


def quantized_manifest(float_manifest: Manifest, record: QuantizationRecord) -> Manifest:
    """The float32 bundle's interface, kind and provenance with `record`; parity is the caller's to add."""
    m = float_manifest
    manifest = Manifest(inputs=m.inputs, outputs=m.outputs, axes=m.axes, opset=m.opset, model=m.model,
                        attention=m.attention, tools=m.tools, kind=m.kind)
    manifest.quantization = record
    return manifest
