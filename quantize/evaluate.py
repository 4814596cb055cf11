"""Fidelity of a quantized graph against its float32 bundle, on real text, without PyTorch.

The task metric and its drop depend on what the model does:
- embedding encoders: mean cosine similarity of sentence embeddings to float32; drop = 1 - mean cosine;
- classifiers: accuracy on labelled texts (or agreement with float32 without labels); drop in points;
- causal language models: perplexity; drop = relative increase (0.02 = 2% higher perplexity).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from edgeformer.runtime.artifacts import read_text_file
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.model import Model
from edgeformer.runtime.postprocess import softmax
from edgeformer.runtime.text import mean_pool

Runner = Callable[[Mapping[str, np.ndarray]], Sequence[np.ndarray]]


@dataclass
class EvalSet:
    texts: list[str]
    labels: list[str] | None = None


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


def python_paragraphs(which: int = 0) -> list[str]:
    """English paragraphs from Python's language reference (pydoc_data.topics), which ships with Python.

    One per topic: the `which`-th paragraph of 40 to 600 characters that is not a code example.
    """
    from pydoc_data.topics import topics

    texts = []
    for key in sorted(topics):
        paras = [" ".join(p.split()) for p in topics[key].split("\n\n")]
        paras = [p for p in paras if 40 <= len(p) <= 600 and not p.startswith((">>>", "..."))]
        if len(paras) > which:
            texts.append(paras[which])
    return texts


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


def evaluate(reference: Model, candidate: Runner, data: EvalSet, batch_size: int = 16,
             reference_run: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None) -> Fidelity:
    """Compare `candidate` (feeds -> outputs in manifest order) with the float32 bundle `reference`.

    `reference_run` replaces the bundle as the source of float32 outputs (PyTorch, for `edgeformer
    parity` on a quantized bundle); `reference` still gives the manifest and the tokenizer.
    """
    if getattr(data, "batches", None) is not None:  # images and audio: task metrics on arrays (quantize/media.py)
        from .media import evaluate_arrays

        return evaluate_arrays(reference, candidate, data, reference_run)
    reference_run = reference_run or reference
    task = reference.manifest.model.task
    names = [s.name for s in reference.inputs]
    outputs = [s.name for s in reference.outputs]
    max_len = reference.manifest.axes.get("seq", {}).get("max") or 512
    tok = reference.tokenizer
    cos, max_abs = [], 0.0
    preds_f, preds_q, nll_f, nll_q, count = [], [], 0.0, 0.0, 0
    for start in range(0, len(data.texts), batch_size):
        batch = tok.encode_batch(data.texts[start : start + batch_size], max_len, truncation=True)
        feeds = batch.feeds(names, reference.manifest.config.get("global_tokens"))
        ref = {k: np.asarray(v) for k, v in reference_run(feeds).items()}
        got = dict(zip(outputs, candidate(feeds)))
        real = batch.attention_mask.astype(bool)
        if task == "causal-lm":
            f, q = ref["logits"], got["logits"].astype(np.float32)
            max_abs = max(max_abs, float(np.abs(f - q)[real].max()))
            cos += list(_cosine(f[real], q[real]))
            nll_f += _next_token_nll(f, batch.input_ids, real)
            nll_q += _next_token_nll(q, batch.input_ids, real)
            count += int(real[:, 1:].sum())
            continue
        h_f, h_q = ref["last_hidden_state"], got["last_hidden_state"].astype(np.float32)
        max_abs = max(max_abs, float(np.abs(h_f - h_q)[real].max()))
        cos += list(_cosine(mean_pool(h_f, batch, True), mean_pool(h_q, batch, True)))
        if task == "classification":
            preds_f += list(ref["logits"].argmax(-1))
            preds_q += list(np.asarray(got["logits"]).argmax(-1))
    cos_arr = np.asarray(cos)
    if task == "causal-lm":
        if count == 0:
            raise EdgeformerError("the evaluation texts are too short to measure perplexity; expected texts of 2+ tokens")
        ppl_f, ppl_q = float(np.exp(nll_f / count)), float(np.exp(nll_q / count))
        return Fidelity("perplexity", ppl_f, ppl_q, ppl_q / ppl_f - 1.0, float(cos_arr.mean()), float(cos_arr.min()), max_abs)
    if task == "classification":
        label_names = reference.manifest.model.labels or []
        if data.labels is not None:
            truth = [label_names.index(lbl) if lbl in label_names else -1 for lbl in data.labels]
            acc_f = float(np.mean(np.asarray(preds_f) == truth))
            acc_q = float(np.mean(np.asarray(preds_q) == truth))
            return Fidelity("accuracy", acc_f, acc_q, acc_f - acc_q, float(cos_arr.mean()), float(cos_arr.min()), max_abs)
        agree = float(np.mean(np.asarray(preds_f) == np.asarray(preds_q)))
        return Fidelity("agreement with float32", 1.0, agree, 1.0 - agree, float(cos_arr.mean()), float(cos_arr.min()), max_abs)
    mean = float(cos_arr.mean())
    return Fidelity("embedding cosine", 1.0, mean, 1.0 - mean, mean, float(cos_arr.min()), max_abs)


def _next_token_nll(logits: np.ndarray, ids: np.ndarray, real: np.ndarray) -> float:
    """Summed negative log-likelihood of each real token given the ones before it."""
    logp = np.log(softmax(logits[:, :-1].astype(np.float64)) + 1e-30)
    picked = np.take_along_axis(logp, ids[:, 1:, None], axis=-1)[..., 0]
    return -float(picked[real[:, 1:]].sum())


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30)
