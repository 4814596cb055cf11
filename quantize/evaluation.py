"""One evaluation loop for every bundle kind: float32 and quantized outputs on the same batches, read by a metric.

    for batch in data:                        an evaluation set's batches (text, arrays, teacher-forced tokens)
        metric.add(batch, reference(batch),   the float32 outputs (the float32 bundle, or PyTorch for parity)
                          candidate(batch))   the quantized graph's outputs
    return metric.result()                    a Fidelity: the task metric, its drop, and output agreement

The evaluation sets (evaluate.py: text; media.py: images and audio; generation_eval.py: generation
bundles) give the batches and pick the metric; this module owns the loop, the Fidelity record and
the output agreement (cosine similarity and max abs error) that every metric reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol, TypeVar

import numpy as np

from edgeformer.runtime.postprocess import softmax

Outputs = Mapping[str, np.ndarray]
B = TypeVar("B")
B_contra = TypeVar("B_contra", contravariant=True)


@dataclass
class Fidelity:
    metric: str  # what float_metric and quant_metric measure
    float_metric: float
    quant_metric: float
    drop: float
    mean_cosine: float  # of pooled embeddings (encoders) or per-token logits (decoders)
    min_cosine: float
    max_abs: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Batch:
    """Model feeds, and what a metric reads beside the outputs."""

    feeds: dict[str, np.ndarray]
    targets: list[str] | None = None  # per row: the label name or reference text (images, audio)
    real: np.ndarray | None = None  # (rows, positions) bool: the positions that count (not padding)
    encoding: Any = None  # text: the tokenizer's batch (its ids and mask pool embeddings and score tokens)


class Metric(Protocol[B_contra]):
    def add(self, batch: B_contra, reference: Outputs, candidate: Outputs) -> None: ...

    def result(self) -> Any: ...


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of the vectors along the last axis, in float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30)


class OutputAgreement:
    """How close the candidate's output vectors stay to float32: every cosine, and the largest absolute error."""

    def __init__(self):
        self.cosines: list[np.ndarray] = []
        self.max_abs = 0.0

    def add(self, reference: np.ndarray, candidate: np.ndarray, vectors: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """`reference` and `candidate` (in the precision to compare in) give the max abs error; `vectors`
        (default: the same arrays) the cosines."""
        if reference.size:
            self.max_abs = max(self.max_abs, float(np.abs(reference - candidate).max()))
        self.cosines.append(np.atleast_1d(cosine(*(vectors or (reference, candidate)))))

    @property
    def mean(self) -> float:
        return float(np.concatenate(self.cosines).mean())

    @property
    def min(self) -> float:
        return float(np.concatenate(self.cosines).min())


def token_nll(logits: np.ndarray, targets: np.ndarray, real: np.ndarray) -> float:
    """Summed negative log-likelihood of `targets` (B, T) under `logits` (B, T, V), over the `real` positions."""
    logp = np.log(softmax(logits.astype(np.float64)) + 1e-30)
    picked = np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return -float(picked[real].sum())


def measure(batches: Iterable[B], reference: Callable[[B], Outputs], candidate: Callable[[B], Outputs],
            metric: Metric[B]) -> Any:
    """Run both sides on every batch and let `metric` compare them; returns the metric's result."""
    for batch in batches:
        metric.add(batch, reference(batch), candidate(batch))
    return metric.result()


class FeedsRunner:
    """A Batch -> outputs runner from a feeds -> outputs callable (a dict, or a list in `names` order)."""

    def __init__(self, run: Callable[[Mapping[str, np.ndarray]], Any], names: list[str] | None = None):
        self.run, self.names = run, names

    def __call__(self, batch: Batch) -> dict[str, np.ndarray]:
        out = self.run(batch.feeds)
        pairs = zip(self.names, out) if self.names is not None else out.items()
        return {k: np.asarray(v) for k, v in pairs}
