"""What `edgeformer quantize` and `edgeformer parity` measure a generation bundle on, by bundle kind.

A cached decoder: --eval-data texts (default: the quantizer's built-in English text). A seq2seq
bundle: --eval-data JSON Lines with "text" and "target", or by default the held-out pairs of the
built-in reverse task (what `edgeformer train --arch seq2seq` trains on), calibrating int8-static
on pairs from its training split.
"""

from __future__ import annotations

from edgeformer.runtime.bundle import PLAIN, SEQ2SEQ, open_bundle
from edgeformer.runtime.errors import EdgeformerError

BUILTIN_EVAL_PAIRS, BUILTIN_CALIB_PAIRS = 100, 64


def bundle_kind(bundle: str) -> str | None:
    """The bundle's kind, or None where it cannot be read (the verb then says why, in one line)."""
    try:
        return open_bundle(bundle, verify=False).manifest.kind
    except EdgeformerError:
        return None


def generation_sets(kind: str, eval_data: str | None, calib_data: str | None):
    """(evaluation set, calibration set) for a generation bundle of `kind`, as quantize.GenerationData."""
    from edgeformer.quantize.generation_eval import GenerationData, read_generation_data

    data = read_generation_data(eval_data) if eval_data else None
    calib = read_generation_data(calib_data, "calibration") if calib_data else None
    if kind == SEQ2SEQ and (data is None or calib is None):
        from edgeformer.modeling.data import reverse_words

        task = reverse_words()
        data = data or GenerationData(pairs=task.eval[:BUILTIN_EVAL_PAIRS])
        calib = calib or GenerationData(pairs=task.train[:BUILTIN_CALIB_PAIRS])
    return data, calib


def is_generation(kind: str | None) -> bool:
    return kind is not None and kind != PLAIN


def generation_summary(r) -> str:
    """The figures users of a quantized generation bundle see, in one line."""
    f = r.fidelity
    line = (f"  teacher-forced next-token agreement {f.next_token_agreement:.3f}, perplexity {f.quant_perplexity:.4g} "
            f"(float32 {f.float_perplexity:.4g}, {f.perplexity_increase:+.2%})")
    if f.greedy_agreement is not None:
        line += f", greedy agreement {f.greedy_agreement:.3f} ({f.greedy_identical:.0%} of prompts identical)"
    if f.quant_exact_match is not None:
        line += f", exact match {f.quant_exact_match:.3f} (float32 {f.float_exact_match:.3f})"
    return line
