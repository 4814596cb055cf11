"""Training an encoder-decoder: teacher-forced batches, token loss, and exact-match evaluation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from edgeformer.runtime.tokenizer import TextTokenizer

from edgeformer.modeling.config import ConfigError, ModelConfig
from edgeformer.modeling.training.data import PairData

IGNORE = -100  # target positions that are padding


class Seq2SeqTask:
    """The task for arch='seq2seq' (the interface of the tasks in tasks.py).

    Batches are (source ids, source mask, target ids + <eos>); the decoder reads the target shifted
    right after the start token (pad_id). Evaluation: held-out token loss, and the share of held-out
    sources whose greedy output is exactly the target (a wrong model scores near 0).
    """

    def __init__(self, data: PairData, tok: TextTokenizer, cfg: ModelConfig, tc):
        if tok.eos_id is None:
            raise ConfigError("a seq2seq model needs a tokenizer with an end-of-text token")
        self.cfg, self.tc, self.eos = cfg, tc, tok.eos_id
        limit = min(tc.seq_len, cfg.max_len)
        encode = lambda rows: [(tok.encode(s)[:limit], tok.encode(t)[: limit - 1] + [self.eos]) for s, t in rows]  # noqa: E731
        self.train_pairs, self.eval_pairs = encode(data.train), encode(data.eval)
        self.steps = math.ceil(len(self.train_pairs) / tc.batch_size)

    def _collate(self, pairs):
        pad = self.cfg.pad_id
        S, T = max(len(s) for s, _ in pairs), max(len(t) for _, t in pairs)
        x = torch.full((len(pairs), S), pad, dtype=torch.long)
        m = torch.zeros((len(pairs), S), dtype=torch.long)
        y = torch.full((len(pairs), T), IGNORE, dtype=torch.long)
        for i, (s, t) in enumerate(pairs):
            x[i, : len(s)], m[i, : len(s)], y[i, : len(t)] = torch.tensor(s), 1, torch.tensor(t)
        return x, m, y

    def batches(self, g: torch.Generator):
        order = torch.randperm(len(self.train_pairs), generator=g).tolist()
        for i in range(0, len(order), self.tc.batch_size):
            yield self._collate([self.train_pairs[j] for j in order[i : i + self.tc.batch_size]])

    def decoder_inputs(self, y: torch.Tensor) -> torch.Tensor:
        """Targets shifted right after the start token (pad_id); padding positions read pad_id."""
        start = torch.full_like(y[:, :1], self.cfg.pad_id)
        return torch.cat([start, y[:, :-1].clamp(min=0).masked_fill(y[:, :-1] == IGNORE, self.cfg.pad_id)], dim=1)

    def loss(self, model, x, m, y) -> torch.Tensor:
        logits = model(x, m, self.decoder_inputs(y))["logits"]  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        model.eval()
        dev = next(model.parameters()).device
        loss, tokens, exact = 0.0, 0, 0
        for i in range(0, len(self.eval_pairs), 64):
            x, m, y = (t.to(dev) for t in self._collate(self.eval_pairs[i : i + 64]))
            logits = model(x, m, self.decoder_inputs(y))["logits"]
            loss += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE,
                                    reduction="sum").item()
            tokens += int((y != IGNORE).sum())
            out = model.greedy(x, m, y.shape[1], self.eos)  # (B, N)
            for row, target in enumerate(y.tolist()):
                target = [t for t in target if t != IGNORE]
                exact += out[row, : len(target)].tolist() == target
        return {"eval_loss": loss / tokens, "eval_exact_match": exact / len(self.eval_pairs)}
