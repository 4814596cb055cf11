"""Tasks: prepared data turned into batches, a loss and an evaluation for one kind of model.

A task has `steps` (batches in one pass), `batches(generator)` (one epoch's global batches of
(ids, mask, targets)), and for training `loss(model, x, m, y)` and `evaluate(model)`. `task_for`
picks the task for the data: classification (encoder), language modelling (decoder), sequence to
sequence (seq2seq_task.py), unlabelled sentences (embedding distillation: batches only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from edgeformer.modeling.config import ConfigError, ModelConfig
from edgeformer.modeling.training.data import ClassificationData, CorpusData, PairData, TextData, padded_batches, similar_length_chunks
from edgeformer.modeling.training.loop import TrainConfig
from edgeformer.modeling.training.seq2seq_task import Seq2SeqTask


class ClassificationTask:
    """Labelled texts in shuffled batches; cross-entropy; held-out loss and accuracy."""

    def __init__(self, data: ClassificationData, tok, cfg: ModelConfig, tc: TrainConfig):
        self.tc, self.cfg = tc, cfg
        seq = min(tc.seq_len, cfg.max_len)
        enc = lambda rows: [tok.encode(t)[:seq] or [tok.pad_id] for t, _ in rows]  # noqa: E731
        self.train_ids, self.train_y = enc(data.train), [y for _, y in data.train]
        self.eval_ids, self.eval_y = enc(data.eval), [y for _, y in data.eval]
        self.steps = math.ceil(len(self.train_ids) / tc.batch_size)

    def batches(self, g: torch.Generator):
        yield from padded_batches(self.train_ids, self.train_y, self.tc.batch_size, self.cfg.pad_id, g)

    def loss(self, model, x, m, y) -> torch.Tensor:
        return F.cross_entropy(model(x, m)["logits"], y)

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        model.eval()
        dev = next(model.parameters()).device
        correct, total, loss = 0, 0, 0.0
        for x, m, y in padded_batches(self.eval_ids, self.eval_y, 64, self.cfg.pad_id, None):
            x, m, y = x.to(dev), m.to(dev), y.to(dev)
            logits = model(x, m)["logits"]
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            total += len(y)
        return {"eval_loss": loss / total, "eval_accuracy": correct / total}


class LanguageModelTask:
    """Running text: random windows, next-token loss; held-out token loss and perplexity."""

    def __init__(self, data: CorpusData, tok, cfg: ModelConfig, tc: TrainConfig):
        self.tc, self.cfg = tc, cfg
        self.seq = min(tc.seq_len, cfg.max_len)
        self.train_stream = torch.tensor(tok.encode(data.train), dtype=torch.long)
        self.eval_stream = torch.tensor(tok.encode(data.eval), dtype=torch.long)
        if len(self.train_stream) <= self.seq + 1 or len(self.eval_stream) <= self.seq + 1:
            raise ConfigError(f"the corpus is shorter than one training window of {self.seq + 1} tokens")
        self.steps = tc.steps_per_epoch or max(1, len(self.train_stream) // (tc.batch_size * self.seq))

    def batches(self, g: torch.Generator):
        for _ in range(self.steps):
            starts = torch.randint(0, len(self.train_stream) - self.seq - 1, (self.tc.batch_size,), generator=g)
            x = torch.stack([self.train_stream[s : s + self.seq + 1] for s in starts.tolist()])
            yield x[:, :-1], torch.ones_like(x[:, :-1]), x[:, 1:]

    def loss(self, model, x, m, y) -> torch.Tensor:
        logits = model(x, m)["logits"]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        """Non-overlapping windows over the held-out text: mean token loss and perplexity."""
        model.eval()
        dev = next(model.parameters()).device
        n = (len(self.eval_stream) - 1) // self.seq
        x = self.eval_stream[: n * self.seq].view(n, self.seq).to(dev)
        y = self.eval_stream[1 : n * self.seq + 1].view(n, self.seq).to(dev)
        total = 0.0
        for i in range(0, n, 16):
            logits = model(x[i : i + 16])["logits"]
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i : i + 16].reshape(-1), reduction="sum").item()
        loss = total / (n * self.seq)
        return {"eval_loss": loss, "eval_perplexity": math.exp(loss)}


class SentenceTask:
    """Unlabelled sentences in random batches of similar length (targets None); no loss of its own."""

    def __init__(self, data: TextData, tok, cfg: ModelConfig, tc: TrainConfig):
        self.tc, self.cfg = tc, cfg
        seq = min(tc.seq_len, cfg.max_len)
        enc = tok.tok.encode_batch
        self.train_ids = [e.ids[:seq] or [cfg.pad_id] for e in enc(data.train)]
        self.eval_ids = [e.ids[:seq] or [cfg.pad_id] for e in enc(data.eval)]
        self.steps = math.ceil(len(self.train_ids) / tc.batch_size)

    def batches(self, g: torch.Generator):
        for chunk in similar_length_chunks([len(ids) for ids in self.train_ids], self.tc.batch_size, g):
            rows = [self.train_ids[j] for j in chunk]
            yield from padded_batches(rows, None, len(rows), self.cfg.pad_id, None)


def task_for(data, tok, cfg: ModelConfig, tc: TrainConfig):
    """The task that reads `data` for a model of `cfg`."""
    if isinstance(data, PairData):
        return Seq2SeqTask(data, tok, cfg, tc)
    if isinstance(data, TextData):
        return SentenceTask(data, tok, cfg, tc)
    if isinstance(data, ClassificationData) and cfg.arch == "encoder":
        return ClassificationTask(data, tok, cfg, tc)
    if isinstance(data, CorpusData) and cfg.arch == "decoder":
        return LanguageModelTask(data, tok, cfg, tc)
    raise ConfigError(f"a{'n' if cfg.arch == 'encoder' else ''} {cfg.arch} model does not train on {type(data).__name__}")
