"""Fidelity of quantized image and speech bundles: task metrics on model inputs given as arrays, without PyTorch.

An `ArrayEvalSet` holds batches of model feeds and what each row should give:
- image classifiers: the label name of each image; metric accuracy, drop in accuracy (0.01 = 1 point);
- speech recognisers: the reference text of each recording; metric CER (character error rate by
  greedy CTC, runtime/speech.py), drop = quantized CER - float32 CER (0.01 = 1 CER point).
Its `calibration` batches (other inputs than the evaluated ones, all of one shape) are what
smoothing and int8-static observe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from edgeformer.runtime.bench import time_block
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.bundle import Bundle
from edgeformer.runtime.model import Model
from edgeformer.runtime.speech import character_error_rate, ctc_greedy, ids_to_text

from .evaluate import Fidelity, _cosine

MEDIA_TASKS = ("classification", "speech-recognition")


@dataclass
class ArrayEvalSet:
    batches: list[dict[str, np.ndarray]]  # model feeds
    targets: list[list[str]]  # per batch, per row: the label name or reference text
    calibration: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(t) for t in self.targets)

    texts = property(lambda self: [t for batch in self.targets for t in batch])  # the quantizer's emptiness check
    labels = None


def is_media_bundle(model: Model | Bundle) -> bool:
    """Image classifiers and speech recognisers: bundles evaluated on arrays, not text."""
    cfg = model.manifest.config
    return bool(cfg.get("image_size")) or model.manifest.model.task == "speech-recognition"


def evaluate_arrays(reference: Model, candidate: Callable[[Mapping[str, np.ndarray]], list[np.ndarray]],
                    data: ArrayEvalSet,
                    reference_run: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None) -> Fidelity:
    """The quantized `candidate` (feeds -> outputs in manifest order) against float32 on `data`'s task metric."""
    task = reference.manifest.model.task
    if task not in MEDIA_TASKS:
        raise EdgeformerError(f"array evaluation covers {', '.join(MEDIA_TASKS)}; this bundle's task is {task}")
    reference_run = reference_run or reference
    outputs = [s.name for s in reference.outputs]
    alphabet = reference.manifest.config.get("alphabet") or ""
    names = reference.manifest.model.labels or []
    pred_f, pred_q, truth, cos, max_abs = [], [], [], [], 0.0
    for feeds, targets in zip(data.batches, data.targets):
        ref = {k: np.asarray(v) for k, v in reference_run(feeds).items()}
        got = dict(zip(outputs, candidate(feeds)))
        f, q = ref["logits"].astype(np.float32), np.asarray(got["logits"], np.float32)
        truth += list(targets)
        if task == "speech-recognition":
            n = ref["logit_lengths"]
            valid = np.arange(f.shape[1])[None, :] < n[:, None]
            f_valid, q_valid = f[valid], q[valid]
            pred_f += [ids_to_text(i, alphabet) for i in ctc_greedy(f, n)]
            pred_q += [ids_to_text(i, alphabet) for i in ctc_greedy(q, np.asarray(got["logit_lengths"]))]
        else:
            f_valid, q_valid = f, q
            pred_f += [names[k] for k in f.argmax(-1)]
            pred_q += [names[k] for k in q.argmax(-1)]
        max_abs = max(max_abs, float(np.abs(f_valid - q_valid).max()))
        cos += list(_cosine(f_valid, q_valid))
    c = np.asarray(cos)
    if task == "speech-recognition":
        cer_f, cer_q = character_error_rate(pred_f, truth), character_error_rate(pred_q, truth)
        return Fidelity("CER", cer_f, cer_q, cer_q - cer_f, float(c.mean()), float(c.min()), max_abs)
    acc_f = float(np.mean([p == t for p, t in zip(pred_f, truth)]))
    acc_q = float(np.mean([p == t for p, t in zip(pred_q, truth)]))
    return Fidelity("accuracy", acc_f, acc_q, acc_f - acc_q, float(c.mean()), float(c.min()), max_abs)


def media_latency_ms(model: Model, feeds: Mapping[str, np.ndarray], seconds: float) -> float:
    """Median milliseconds of one call on `feeds` (batch 1 of the evaluation data)."""
    session = model.session
    return float(np.median(time_block(lambda: session.run(None, dict(feeds)), 2, 5, 2000, seconds)))


def first_row(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Batch 1: the first row of `feeds`, cut to its own length when the inputs carry lengths (audio)."""
    row = {k: np.ascontiguousarray(v[:1]) for k, v in feeds.items()}
    if "lengths" in row and "waveforms" in row:
        row["waveforms"] = np.ascontiguousarray(row["waveforms"][:, : int(row["lengths"][0])])
    return row
