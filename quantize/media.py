"""Fidelity of quantized image and speech bundles: task metrics on model inputs given as arrays, without PyTorch.

An `ArrayEvalSet` holds batches of model feeds and what each row should give:
- image classifiers and keyword spotters: the label name of each image or clip; metric accuracy, drop in
  accuracy (0.01 = 1 point);
- speech recognisers: the reference text of each recording; metric CER (character error rate by
  greedy CTC, runtime/speech.py), drop = quantized CER - float32 CER (0.01 = 1 CER point).
Its `calibration` batches (other inputs than the evaluated ones, all of one shape) are what
smoothing and int8-static observe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from edgeformer.runtime.bench import time_block
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.model import Model
from edgeformer.runtime.speech import character_error_rate, ctc_greedy, ids_to_text
from edgeformer.runtime.speech_stream import stream_logits

from .evaluation import Batch, FeedsRunner, Fidelity, Metric, Outputs, OutputAgreement

MEDIA_TASKS = ("classification", "audio-classification", "speech-recognition")


@dataclass
class ArrayEvalSet:
    feeds: list[dict[str, np.ndarray]]  # model inputs, batch by batch
    targets: list[list[str]]  # per batch, per row: the label name or reference text
    calibration: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(t) for t in self.targets)

    def subset(self, rows: int) -> "ArrayEvalSet":
        """The first batches, about `rows` rows (at least one batch)."""
        k = max(1, rows // max(1, len(self.targets[0])))
        return dataclasses.replace(self, feeds=self.feeds[:k], targets=self.targets[:k])

    def batches(self, model: Model) -> list[Batch]:
        return [Batch(dict(feeds), targets=list(t)) for feeds, t in zip(self.feeds, self.targets)]

    def runner(self, run: Callable, names: list[str] | None) -> Callable[[Batch], dict[str, np.ndarray]]:
        """A batch -> named outputs runner over `run` (a graph: feeds -> outputs, a list in `names` order)."""
        return FeedsRunner(run, names)

    def latency_feeds(self) -> dict[str, np.ndarray]:
        """What one timed call is fed: the first evaluation input, batch 1."""
        return first_row(self.feeds[0])

    def metric(self, model: Model) -> Metric[Batch]:
        task = model.manifest.model.task
        if task == "speech-recognition":
            return CharacterErrorRate(model.manifest.config.get("alphabet") or "")
        if task in ("classification", "audio-classification"):
            return ImageAccuracy(model.manifest.model.labels or [])
        raise EdgeformerError(f"array evaluation covers {', '.join(MEDIA_TASKS)}; this bundle's task is {task}")


class ImageAccuracy:
    """Image classifiers: accuracy against the label names; drop in points."""

    def __init__(self, label_names: list[str]):
        self.label_names = label_names
        self.agreement = OutputAgreement()
        self.pred_f: list[str] = []
        self.pred_q: list[str] = []
        self.truth: list[str] = []

    def add(self, batch: Batch, reference: Outputs, candidate: Outputs) -> None:
        f, q = reference["logits"].astype(np.float32), np.asarray(candidate["logits"], np.float32)
        self.truth += batch.targets
        self.agreement.add(*self.score(f, q, reference, candidate))

    def score(self, f: np.ndarray, q: np.ndarray, reference: Outputs, candidate: Outputs) -> tuple[np.ndarray, np.ndarray]:
        """Record each row's prediction; returns the logits that count."""
        self.pred_f += [self.label_names[k] for k in f.argmax(-1)]
        self.pred_q += [self.label_names[k] for k in q.argmax(-1)]
        return f, q

    def result(self) -> Fidelity:
        a = self.agreement
        acc_f = float(np.mean([p == t for p, t in zip(self.pred_f, self.truth)]))
        acc_q = float(np.mean([p == t for p, t in zip(self.pred_q, self.truth)]))
        return Fidelity("accuracy", acc_f, acc_q, acc_f - acc_q, a.mean, a.min, a.max_abs)


class CharacterErrorRate(ImageAccuracy):
    """Speech recognisers: CER of greedy CTC transcripts; drop = quantized CER - float32 CER."""

    def __init__(self, alphabet: str):
        super().__init__([])
        self.alphabet = alphabet

    def score(self, f: np.ndarray, q: np.ndarray, reference: Outputs, candidate: Outputs) -> tuple[np.ndarray, np.ndarray]:
        n = reference["logit_lengths"]
        valid = np.arange(f.shape[1])[None, :] < n[:, None]
        self.pred_f += [ids_to_text(i, self.alphabet) for i in ctc_greedy(f, n)]
        self.pred_q += [ids_to_text(i, self.alphabet) for i in ctc_greedy(q, np.asarray(candidate["logit_lengths"]))]
        return f[valid], q[valid]

    def result(self) -> Fidelity:
        a = self.agreement
        cer_f, cer_q = character_error_rate(self.pred_f, self.truth), character_error_rate(self.pred_q, self.truth)
        return Fidelity("CER", cer_f, cer_q, cer_q - cer_f, a.mean, a.min, a.max_abs)


@dataclass
class StreamEvalSet(ArrayEvalSet):
    """A streaming speech bundle's evaluation: each batch is one recording ({"audio": (N,)}) streamed
    through the graph a step at a time (runtime/speech_stream.py), so a quantized graph's error builds up
    in its caches as it would on a device; `calibration` holds step feeds (caches included) of float32
    streams, what smoothing and int8-static observe and what one timed call is fed."""

    model: Model | None = None  # the float32 bundle: its stream record and state inputs

    def runner(self, run: Callable, names: list[str] | None) -> Callable[[Batch], dict[str, np.ndarray]]:
        step = FeedsRunner(run, names)

        def stream(batch: Batch) -> dict[str, np.ndarray]:
            logits = stream_logits(self.model, batch.feeds["audio"], len(batch.feeds["audio"]),
                                   lambda feeds: step(Batch(dict(feeds))))
            return {"logits": logits[None], "logit_lengths": np.array([len(logits)])}
        return stream

    def latency_feeds(self) -> dict[str, np.ndarray]:
        return dict(self.calibration[0])


def step_feeds(model: Model, waves: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Every step's feeds (the window and the caches as they stand) of float32 streams of `waves`."""
    feeds: list[dict[str, np.ndarray]] = []

    def record(step: dict) -> Mapping[str, np.ndarray]:
        feeds.append({k: np.copy(v) for k, v in step.items()})
        return model(step)
    for w in waves:
        stream_logits(model, w, len(w), record)
    return feeds


def media_latency_ms(model: Model, feeds: Mapping[str, np.ndarray], seconds: float) -> float:
    """Median milliseconds of one call on `feeds` (batch 1 of the evaluation data)."""
    run, feeds = model.run, dict(feeds)
    return float(np.median(time_block(lambda: run(None, feeds), 2, 5, 2000, seconds)))


def first_row(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Batch 1: the first row of `feeds`, cut to its own length when the inputs carry lengths (audio)."""
    row = {k: np.ascontiguousarray(v[:1]) for k, v in feeds.items()}
    if "lengths" in row and "waveforms" in row:
        row["waveforms"] = np.ascontiguousarray(row["waveforms"][:, : int(row["lengths"][0])])
    return row
