"""Fidelity of a quantized generation bundle, measured on what its users see.

- Teacher forcing on held-out text: the quantized graph reads the same tokens as float32 and
  predicts each next one. `next_token_agreement` is the share of positions where both pick the
  same token; perplexity is that of the text under each, and its relative increase is the default
  budget metric (0.02 = 2% higher perplexity).
- Greedy generation from prompts: `greedy_agreement` is the share of N greedy tokens that match
  float32 before the first divergence, averaged over the prompts (1.0: every prompt identical).
- seq2seq: exact match of greedy outputs against the targets of the task (the built-in reverse
  task, or `--eval-data` JSON Lines with "text" and "target").

A cached decoder is teacher-forced through its own graph with an empty past (one prefill step,
every position's logits: `logits_to_keep` 0 where the graph takes it); a seq2seq bundle through its
encoder, then its decoder reading start token + target.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeformer.runtime.bundle import SEQ2SEQ
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.generate import empty_cache
from edgeformer.runtime.inputs import next_positions, right_pad
from edgeformer.runtime.model import Model

from .evaluate import default_eval_texts
from .evaluation import Outputs, OutputAgreement, measure, token_nll
from .recipes import QuantizeError

PERPLEXITY, EXACT_MATCH = "perplexity", "exact match"
BUDGET_METRICS = {"perplexity": PERPLEXITY, "exact-match": EXACT_MATCH}  # --budget-metric -> Fidelity.metric
PROMPTS, PROMPT_TOKENS, GREEDY_TOKENS = 16, 8, 32


@dataclass
class GenerationData:
    """Held-out text (cached decoders) or (source, target) pairs (seq2seq), and the greedy prompts' size."""

    texts: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    prompts: int = PROMPTS
    prompt_tokens: int = PROMPT_TOKENS
    greedy_tokens: int = GREEDY_TOKENS

    @property
    def rows(self) -> int:
        return len(self.texts or self.pairs)

    def subset(self, n: int) -> "GenerationData":
        return GenerationData(self.texts[:n], self.pairs[:n], min(self.prompts, n), self.prompt_tokens, self.greedy_tokens)


def read_generation_data(path: str | Path, kind: str = "evaluation") -> GenerationData:
    """Texts one per line, or JSON Lines with "text" (and "target" for seq2seq pairs)."""
    path = Path(path)
    if not path.is_file():
        raise EdgeformerError(f"{kind} file {path} does not exist")
    if path.suffix not in (".txt", ".jsonl", ""):
        raise QuantizeError(f"{path}: a generation bundle's {kind} data is text (.txt, one per line) or JSON Lines "
                            "(.jsonl with \"text\", and \"target\" for seq2seq)")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise EdgeformerError(f"{path} is empty; expected {kind} texts")
    if path.suffix != ".jsonl":
        return GenerationData(texts=lines)
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise EdgeformerError(f"{path}:{n} is not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or "text" not in row:
            raise EdgeformerError(f"{path}:{n}: every line must be an object with a \"text\" field")
        rows.append(row)
    if all("target" in r for r in rows):
        return GenerationData(pairs=[(str(r["text"]), str(r["target"])) for r in rows])
    return GenerationData(texts=[str(r["text"]) for r in rows])


@dataclass
class GenerationFidelity:
    metric: str  # the budget metric: "perplexity" (drop: relative increase) or "exact match" (drop: points lost)
    float_metric: float
    quant_metric: float
    drop: float
    next_token_agreement: float  # teacher forcing
    float_perplexity: float
    quant_perplexity: float
    perplexity_increase: float  # relative
    greedy_agreement: float | None = None  # tokens matched before the first divergence / tokens asked
    greedy_identical: float | None = None  # share of prompts whose greedy tokens all match
    float_exact_match: float | None = None  # seq2seq
    quant_exact_match: float | None = None
    mean_cosine: float = 0.0  # of the per-position logits
    min_cosine: float = 0.0
    max_abs: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class TeacherForced:
    """One batch: the graph's feeds, and which logits predict which token."""

    decoder: dict[str, np.ndarray]  # feeds of model.onnx, cache inputs excluded
    source: dict[str, np.ndarray] | None  # seq2seq: feeds of encoder.onnx
    targets: np.ndarray  # (B, T) the token each position's logits should predict
    real: np.ndarray  # (B, T) bool: positions that count


Logits = Callable[[TeacherForced], np.ndarray]  # a batch -> (B, T, V) float32 logits


def check_data(model: Model, data: GenerationData) -> None:
    if model.manifest.kind == SEQ2SEQ and not data.pairs:
        raise QuantizeError("a seq2seq bundle is measured on (source, target) pairs; give --eval-data as JSON Lines "
                              "with \"text\" and \"target\"")
    if model.manifest.kind != SEQ2SEQ and not data.texts:
        raise QuantizeError("the evaluation set is empty; expected at least one text")


def default_generation_data(model: Model) -> GenerationData:
    if model.manifest.kind == SEQ2SEQ:
        raise QuantizeError("a seq2seq bundle has no built-in evaluation pairs here; give (source, target) pairs "
                              "(the CLI uses the reverse task's held-out pairs)")
    return GenerationData(texts=default_eval_texts().texts)


def teacher_forced_batches(model: Model, data: GenerationData, batch_size: int = 16) -> list[TeacherForced]:
    tok, cache = model.tokenizer, model.manifest.cache
    limit = int(cache.max_len)
    batches = []
    if model.manifest.kind != SEQ2SEQ:
        for start in range(0, len(data.texts), batch_size):
            b = tok.encode_batch(data.texts[start:start + batch_size], limit, truncation=True)
            ids, mask = b.input_ids, b.attention_mask.astype(np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": next_positions(mask, ids.shape[1])}
            targets = np.concatenate([ids[:, 1:], ids[:, -1:]], axis=1)
            real = np.concatenate([mask[:, 1:].astype(bool), np.zeros((len(ids), 1), bool)], axis=1)
            batches.append(TeacherForced(feeds, None, targets, real))
        return batches
    eos = tok.eos_id if tok.eos_id is not None else cache.eos_id
    for start in range(0, len(data.pairs), batch_size):
        rows = data.pairs[start:start + batch_size]
        src_ids, src_mask = right_pad([tok.encode(s)[:limit] or [cache.pad_id] for s, _ in rows], cache.pad_id)
        targets = [(tok.encode(t) + ([eos] if eos is not None else []))[:limit] for _, t in rows]
        tgt, real = right_pad(targets, cache.pad_id)
        dec_in = np.concatenate([np.full((len(rows), 1), int(cache.start_id)), tgt[:, :-1]], axis=1)
        batches.append(TeacherForced({"input_ids": dec_in, "encoder_attention_mask": src_mask},
                                     {"input_ids": src_ids, "attention_mask": src_mask}, tgt, real.astype(bool)))
    return batches


def every_position(cache) -> dict[str, np.ndarray]:
    """The feed that asks a cached graph for every position's logits: `logits_to_keep` 0 (format 3 on)."""
    return {} if cache.logits_to_keep is None else {cache.logits_to_keep: np.array([0], dtype=np.int64)}


def bundle_logits(model: Model) -> Logits:
    """Teacher-forced logits of a generation bundle's graphs, the cache starting empty."""
    cache = model.manifest.cache

    def run(batch: TeacherForced) -> np.ndarray:
        B = len(batch.targets)
        feeds = {**batch.decoder, **every_position(cache)}
        feeds.update(zip(cache.past, empty_cache(cache, B, io_binding=False)))
        if batch.source is not None:
            feeds.update(zip(cache.cross, model.graph("encoder").session.run(cache.cross, batch.source)))
        return np.asarray(model.session.run(["logits"], feeds)[0], np.float32)
    return run


class TeacherForcedMetric:
    """Next-token agreement and perplexity of teacher-forced logits; the budget metric is the perplexity increase."""

    def __init__(self):
        self.agreement = OutputAgreement()
        self.agree = self.count = 0
        self.nll_f = self.nll_q = 0.0

    def add(self, batch: TeacherForced, reference: Outputs, candidate: Outputs) -> None:
        f, q, real = reference["logits"], candidate["logits"], batch.real
        self.agree += int((f.argmax(-1) == q.argmax(-1))[real].sum())
        self.count += int(real.sum())
        self.nll_f += token_nll(f, batch.targets, real)
        self.nll_q += token_nll(q, batch.targets, real)
        self.agreement.add(f[real].astype(np.float64), q[real].astype(np.float64))

    def result(self) -> GenerationFidelity:
        if self.count == 0:
            raise EdgeformerError("the evaluation texts are too short to measure perplexity; expected texts of 2+ tokens")
        ppl_f, ppl_q = float(np.exp(self.nll_f / self.count)), float(np.exp(self.nll_q / self.count))
        a = self.agreement
        return GenerationFidelity(PERPLEXITY, ppl_f, ppl_q, ppl_q / ppl_f - 1.0, self.agree / self.count, ppl_f, ppl_q,
                                  ppl_q / ppl_f - 1.0, mean_cosine=a.mean, min_cosine=a.min, max_abs=a.max_abs)


def greedy_tokens(model: Model, prompts: list, n: int) -> list[list[int]]:
    """Greedy new tokens per prompt (stopping early at end-of-text), one prompt at a time."""
    return [model.generate([p], max_new_tokens=n, on_overflow="truncate").token_ids[0] for p in prompts]


def matched_before_divergence(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def greedy_prompts(model: Model, data: GenerationData) -> list:
    if model.manifest.kind == SEQ2SEQ:
        return [s for s, _ in data.pairs[:data.prompts]]
    tok = model.tokenizer
    return [ids[:data.prompt_tokens] for ids in (tok.encode(t) for t in data.texts[:data.prompts]) if ids]


def exact_match(model: Model, pairs: list[tuple[str, str]], n: int) -> float:
    out = model.generate([s for s, _ in pairs], max_new_tokens=n, on_overflow="truncate")
    return float(np.mean([text.strip() == target.strip() for text, (_, target) in zip(out.texts, pairs)]))


def evaluate_generation(reference: Model, candidate: Model, data: GenerationData, metric: str = PERPLEXITY,
                        greedy: bool = True, reference_logits: Logits | None = None,
                        reference_exact_match: float | None = None) -> GenerationFidelity:
    """Compare `candidate` (a quantized generation bundle) with `reference` (its float32 bundle).

    `reference_logits` replaces the float32 bundle's teacher-forced logits (PyTorch, for `edgeformer
    parity`); `greedy` also measures greedy agreement and, for seq2seq, exact match (generation).
    """
    check_data(reference, data)
    ref_run, cand_run = reference_logits or bundle_logits(reference), bundle_logits(candidate)
    fid = measure(teacher_forced_batches(reference, data), lambda b: {"logits": ref_run(b)},
                  lambda b: {"logits": cand_run(b)}, TeacherForcedMetric())
    seq2seq = reference.manifest.kind == SEQ2SEQ
    if greedy or metric == EXACT_MATCH:
        prompts = greedy_prompts(reference, data)
        if prompts and reference_logits is None:
            want = data.greedy_tokens
            ref_tokens, cand_tokens = greedy_tokens(reference, prompts, want), greedy_tokens(candidate, prompts, want)
            matched = [matched_before_divergence(a, b) / len(a) if a else float(a == b) for a, b in zip(ref_tokens, cand_tokens)]
            fid.greedy_agreement = float(np.mean(matched))
            fid.greedy_identical = float(np.mean([a == b for a, b in zip(ref_tokens, cand_tokens)]))
        if seq2seq:
            n = int(reference.manifest.cache.max_len)
            fid.float_exact_match = reference_exact_match if reference_exact_match is not None else \
                exact_match(reference, data.pairs, n)
            fid.quant_exact_match = exact_match(candidate, data.pairs, n)
    if metric == EXACT_MATCH:
        if not seq2seq:
            raise QuantizeError("exact match is a seq2seq task metric; a cached decoder's budget is on perplexity")
        fid.metric, fid.float_metric, fid.quant_metric = EXACT_MATCH, fid.float_exact_match, fid.quant_exact_match
        fid.drop = fid.float_exact_match - fid.quant_exact_match
    return fid
