"""Fidelity of a quantized graph against its float32 bundle, on real text, without PyTorch.

The task metric and its drop depend on what the model does:
- embedding encoders: mean cosine similarity of sentence embeddings to float32; drop = 1 - mean cosine;
- classifiers: accuracy on labelled texts (or agreement with float32 without labels); drop in points;
- causal language models: perplexity; drop = relative increase (0.02 = 2% higher perplexity).

`evaluate` runs any evaluation set (texts here, arrays in media.py) through the one loop of
evaluation.py: the set gives its batches and its metric.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from edgeformer.runtime.artifacts import read_text_file
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.model import Model
from edgeformer.runtime.sessions import create_session
from edgeformer.runtime.text import mean_pool
from edgeformer.tasks.text import python_paragraphs

from .evaluation import Batch, FeedsRunner, Fidelity, Metric, Outputs, OutputAgreement, measure, token_nll
from .recipes import RecipeOptions, apply_recipe

Runner = Callable[[Mapping[str, np.ndarray]], Sequence[np.ndarray]]

__all__ = ["EvalSet", "EvaluationData", "Fidelity", "default_eval_texts", "evaluate", "read_eval_file"]


class EvaluationData(Protocol):
    """What `evaluate` and the quantizer need of an evaluation set (EvalSet, media.ArrayEvalSet)."""

    @property
    def rows(self) -> int: ...

    def subset(self, rows: int) -> "EvaluationData": ...

    def batches(self, model: Model) -> list[Batch]: ...

    def metric(self, model: Model) -> Metric[Batch]: ...

    def runner(self, run: Callable, names: list[str] | None) -> Callable[[Batch], Outputs]: ...


@dataclass
class EvalSet:
    texts: list[str]
    labels: list[str] | None = None
    batch_size: int = 16

    @property
    def rows(self) -> int:
        return len(self.texts)

    def subset(self, rows: int) -> "EvalSet":
        return EvalSet(self.texts[:rows], self.labels[:rows] if self.labels else None, self.batch_size)

    def batches(self, model: Model) -> list[Batch]:
        """The texts through the bundle's tokenizer, padded per batch and cut at the model's maximum length."""
        names = [s.name for s in model.inputs]
        max_len = model.manifest.axes.get("seq", {}).get("max") or 512
        out = []
        for start in range(0, len(self.texts), self.batch_size):
            enc = model.tokenizer.encode_batch(self.texts[start : start + self.batch_size], max_len, truncation=True)
            feeds = enc.feeds(names, model.manifest.config.get("global_tokens"))
            out.append(Batch(feeds, real=enc.attention_mask.astype(bool), encoding=enc))
        return out

    def metric(self, model: Model) -> Metric[Batch]:
        task = model.manifest.model.task
        if task == "causal-lm":
            return Perplexity()
        if task == "classification":
            return Accuracy(model.manifest.model.labels or [], self.labels)
        return EmbeddingCosine()

    def runner(self, run: Callable, names: list[str] | None) -> FeedsRunner:
        return FeedsRunner(run, names)


def default_eval_texts(n: int = 128) -> EvalSet:
    """The first paragraph of each language-reference topic (calibration takes the second)."""
    return EvalSet(python_paragraphs(which=0)[:n])


def read_eval_file(path: str | Path, kind: str = "evaluation") -> EvalSet:
    """Texts, one per line, or JSON Lines with "text" (and optionally "label")."""
    path = Path(path)
    lines = [line for line in read_text_file(path, kind).splitlines() if line.strip()]
    if not lines:
        raise EdgeformerError(f"{path} is empty; expected {kind} texts")
    if path.suffix != ".jsonl":
        return EvalSet(lines)
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise EdgeformerError(f"{path}:{n} is not valid JSON ({e.msg})") from None
        except RecursionError:
            raise EdgeformerError(f"{path}:{n} is nested too deeply; expected an object with a \"text\" field") from None
    if not all(isinstance(r, dict) and "text" in r for r in rows):
        raise EdgeformerError(f"{path}: every line must be an object with a \"text\" field")
    labels = [str(r["label"]) for r in rows] if all("label" in r for r in rows) else None
    return EvalSet([str(r["text"]) for r in rows], labels)


def evaluate(reference: Model, candidate: Runner, data: EvaluationData,
             reference_run: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None) -> Fidelity:
    """Compare `candidate` (feeds -> outputs in manifest order) with the float32 bundle `reference` on `data`.

    `reference_run` replaces the bundle as the source of float32 outputs (PyTorch, for `edgeformer
    parity` on a quantized bundle); `reference` still gives the manifest and the tokenizer.
    """
    return measure(data.batches(reference), data.runner(reference_run or reference, None),
                   data.runner(candidate, [s.name for s in reference.outputs]), data.metric(reference))


def session_runner(path: Path) -> Callable:
    """feeds -> outputs of the graph file at `path`, through the one session factory."""
    session, _ = create_session(path)
    return lambda feeds: session.run(None, dict(feeds))


def quantize_and_measure(recipe: str, src: Path, dst: Path, opt: RecipeOptions, reference: Model,
                         data: EvaluationData) -> Fidelity:
    """Quantize the graph at `src` into `dst` with `recipe` and measure it against `reference` on `data`."""
    apply_recipe(recipe, src, dst, opt)
    return evaluate(reference, session_runner(dst), data)


class EmbeddingCosine:
    """Encoders: mean cosine similarity of mean-pooled sentence embeddings; drop = 1 - mean cosine."""

    def __init__(self):
        self.agreement = OutputAgreement()

    def add(self, batch: Batch, reference: Outputs, candidate: Outputs) -> None:
        h_f, h_q = reference["last_hidden_state"], candidate["last_hidden_state"].astype(np.float32)
        self.agreement.add(h_f[batch.real], h_q[batch.real],
                           (mean_pool(h_f, batch.encoding, True), mean_pool(h_q, batch.encoding, True)))

    def result(self) -> Fidelity:
        mean = self.agreement.mean
        return Fidelity("embedding cosine", 1.0, mean, 1.0 - mean, mean, self.agreement.min, self.agreement.max_abs)


class Accuracy(EmbeddingCosine):
    """Classifiers: accuracy on labelled texts, or agreement with float32 without labels; drop in points."""

    def __init__(self, label_names: list[str], labels: list[str] | None):
        super().__init__()
        self.label_names, self.labels = label_names, labels
        self.preds_f: list[int] = []
        self.preds_q: list[int] = []

    def add(self, batch: Batch, reference: Outputs, candidate: Outputs) -> None:
        super().add(batch, reference, candidate)
        self.preds_f += list(reference["logits"].argmax(-1))
        self.preds_q += list(candidate["logits"].argmax(-1))

    def result(self) -> Fidelity:
        a = self.agreement
        if self.labels is not None:
            truth = [self.label_names.index(lbl) if lbl in self.label_names else -1 for lbl in self.labels]
            acc_f = float(np.mean(np.asarray(self.preds_f) == truth))
            acc_q = float(np.mean(np.asarray(self.preds_q) == truth))
            return Fidelity("accuracy", acc_f, acc_q, acc_f - acc_q, a.mean, a.min, a.max_abs)
        agree = float(np.mean(np.asarray(self.preds_f) == np.asarray(self.preds_q)))
        return Fidelity("agreement with float32", 1.0, agree, 1.0 - agree, a.mean, a.min, a.max_abs)


class Perplexity:
    """Causal language models: perplexity of the texts; drop = relative increase."""

    def __init__(self):
        self.agreement = OutputAgreement()
        self.nll_f = self.nll_q = 0.0
        self.count = 0

    def add(self, batch: Batch, reference: Outputs, candidate: Outputs) -> None:
        f, q, real, ids = reference["logits"], candidate["logits"].astype(np.float32), batch.real, batch.encoding.input_ids
        self.agreement.add(f[real], q[real])
        self.nll_f += next_token_nll(f, ids, real)
        self.nll_q += next_token_nll(q, ids, real)
        self.count += int(real[:, 1:].sum())

    def result(self) -> Fidelity:
        if self.count == 0:
            raise EdgeformerError("the evaluation texts are too short to measure perplexity; expected texts of 2+ tokens")
        ppl_f, ppl_q = float(np.exp(self.nll_f / self.count)), float(np.exp(self.nll_q / self.count))
        a = self.agreement
        return Fidelity("perplexity", ppl_f, ppl_q, ppl_q / ppl_f - 1.0, a.mean, a.min, a.max_abs)


def next_token_nll(logits: np.ndarray, ids: np.ndarray, real: np.ndarray) -> float:
    """Summed negative log-likelihood of each real token given the ones before it."""
    return token_nll(logits[:, :-1], ids[:, 1:], real[:, 1:])
