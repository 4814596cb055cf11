"""`edgeformer parity` of a quantized bundle: the accuracy budget against the PyTorch checkpoint it came from.

The checkpoint's eager model replaces the float32 bundle as the reference: teacher-forced logits
for a generation bundle, outputs on the evaluation set's feeds for the others. The evaluation set
is the one quantization used by default (quantize/builtin.py).
"""

from __future__ import annotations

import os

from edgeformer.modeling import load as load_checkpoint
from edgeformer.modeling.eager import eager_runner, teacher_forced_logits
from edgeformer.quantize import Fidelity, GenerationFidelity, budget_parity
from edgeformer.quantize.kinds import evaluation_sets, quantize_kind
from edgeformer.quantize.generation import generation_budget_parity
from edgeformer.runtime.bundle import open_bundle


def quantized_parity(bundle: str | os.PathLike, reference: str | os.PathLike
                     ) -> tuple[Fidelity | GenerationFidelity, float, bool]:
    """(fidelity, budget, passed) of the quantized `bundle` against the checkpoint `reference`."""
    manifest = open_bundle(bundle).manifest
    model = load_checkpoint(reference)
    data, _ = evaluation_sets(bundle)
    if quantize_kind(manifest).generation:
        return generation_budget_parity(bundle, model.cfg.to_dict(), teacher_forced_logits(model), data)
    return budget_parity(bundle, model.cfg.to_dict(), lambda feeds: eager_runner(model, feeds)(), data)
