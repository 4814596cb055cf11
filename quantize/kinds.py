"""Every bundle kind's quantization, in one table keyed by the runtime's kind names (runtime/kinds.py).

    kind            pipeline                                   measured on (built in when the user gives none)
    seq2seq         generation (teacher-forced, exact match)   the reverse task's pairs (builtin.generation_sets)
    cached-decoder  generation (teacher-forced perplexity)     the built-in English text
    streaming-      single graph, each utterance streamed      the task's utterances (builtin.array_sets)
      speech
    audio-          single graph, arrays (accuracy)            spoken-commands clips (builtin.array_sets)
      classifier
    speech          single graph, arrays                       audio-digits utterances (builtin.array_sets)
    image           single graph, arrays                       the digits task's images
    lsh, plain      single graph, text                         the user's texts, else the built-in English text

`generation` bundles go to quantize/generation.py (several graphs, a cache, no smoothing); the
others to quantize/bundle.py's single-graph pipeline, on text or on arrays (`ArrayEvalSet`). A new
bundle kind is one entry here (its runtime kind first).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgeformer.runtime.bundle import Bundle, Manifest, open_bundle
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.kinds import LayerTable

from .builtin import array_sets, generation_bundle_sets, text_sets
from .evaluate import EvaluationData
from .generation_eval import GenerationData

Sets = Callable[[Bundle, "str | os.PathLike | None", "str | os.PathLike | None"], tuple]


@dataclass(frozen=True)
class QuantizeKind:
    name: str  # a runtime kind
    generation: bool  # quantize/generation.py's pipeline; else the single-graph one
    sets: Sets  # (bundle, --eval-data, --calib-data) -> (evaluation set, calibration), None: the quantizer's default


KINDS = LayerTable([
    QuantizeKind("seq2seq", True, generation_bundle_sets),
    QuantizeKind("cached-decoder", True, generation_bundle_sets),
    QuantizeKind("streaming-speech", False, array_sets),
    QuantizeKind("audio-classifier", False, array_sets),
    QuantizeKind("speech", False, array_sets),
    QuantizeKind("image", False, array_sets),
    QuantizeKind("lsh", False, text_sets),
    QuantizeKind("plain", False, text_sets),
], "a quantization", "quantizes")


register = KINDS.register
quantize_kind = KINDS.of  # the quantization of the manifest's bundle kind


def readable_manifest(path: str | os.PathLike) -> Manifest | None:
    """The bundle's manifest unverified, or None where it cannot be read (quantize_bundle then says why, in one line)."""
    try:
        return open_bundle(path, verify=False).manifest
    except EdgeformerError:
        return None


def is_generation(path: str | os.PathLike) -> bool:
    """Whether the bundle at `path` is quantized by the generation pipeline (False where it cannot be read)."""
    manifest = readable_manifest(path)
    return manifest is not None and quantize_kind(manifest).generation


def evaluation_sets(path: str | os.PathLike, eval_data: str | os.PathLike | None = None,
                    calib_data: str | os.PathLike | None = None
                    ) -> tuple[EvaluationData | GenerationData | None, str | os.PathLike | GenerationData | None]:
    """What `edgeformer quantize` and `edgeformer parity` measure the bundle at `path` on, and calibrate it on.

    Returns (evaluation set, calibration): None for the quantizer's own default; the calibration is a
    file path for single-graph bundles (quantize_bundle reads it) and GenerationData for generation bundles.
    """
    manifest = readable_manifest(path)
    if manifest is not None and quantize_kind(manifest).generation:  # the sets need no hashing of the graphs
        return quantize_kind(manifest).sets(Bundle(Path(path), manifest), eval_data, calib_data)
    bundle = open_bundle(path)  # the manifest says which task (or why it cannot be read); quantize_bundle opens sessions
    return quantize_kind(bundle.manifest).sets(bundle, eval_data, calib_data)
