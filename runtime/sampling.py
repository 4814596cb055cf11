"""Choosing the next token from logits: repetition penalty, temperature, top-k, top-p. numpy only."""

from __future__ import annotations

from dataclasses import dataclass

import numbers

import numpy as np

from .errors import InputError


# Below this, logits / temperature overflow float64 for ordinary logits (1e-310 gave inf, then NaN
# probabilities and only pad tokens); temperature 0 is the limit it approaches: greedy.
MIN_TEMPERATURE = 1e-6


@dataclass(frozen=True)
class Sampling:
    """temperature 0 picks the most likely token (greedy; top_k/top_p then change nothing).

    top_k 0 and top_p 1.0 keep every token; repetition_penalty 1.0 leaves logits alone, above 1
    makes tokens already in the row (prompt or generated) less likely, as in the CTRL paper.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    def __post_init__(self):
        for name in ("temperature", "top_p", "repetition_penalty"):
            value = getattr(self, name)  # numpy scalars (np.float32(0.7)) are numbers too
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not np.isfinite(value):
                raise InputError(f"{name}={value!r}; expected a finite number")
            object.__setattr__(self, name, float(value))
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)):
            raise InputError(f"top_k={self.top_k!r}; expected an integer (0 keeps every token)")
        if self.temperature < 0:
            raise InputError(f"temperature={self.temperature}; expected 0 (greedy) or a positive number")
        if 0 < self.temperature < MIN_TEMPERATURE:
            raise InputError(f"temperature={self.temperature:g}; expected 0 (greedy) or at least {MIN_TEMPERATURE:g}: "
                             "smaller ones overflow the scaled logits")
        if self.top_k < 0:
            raise InputError(f"top_k={self.top_k}; expected 0 (off) or a positive number of tokens")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p={self.top_p}; expected a value in (0, 1]")
        if self.repetition_penalty <= 0:
            raise InputError(f"repetition_penalty={self.repetition_penalty}; expected a positive number (1.0 is off)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def penalize_repeats(logits: np.ndarray, seen: list[np.ndarray], penalty: float) -> np.ndarray:
    """(B, V) logits with each row's already-seen tokens pushed down: divided by `penalty` when
    positive, multiplied when negative (so a penalty above 1 always lowers them)."""
    if penalty == 1.0:
        return logits
    out = logits.copy()
    for row, ids in enumerate(seen):
        ids = np.unique(ids)
        vals = out[row, ids]
        out[row, ids] = np.where(vals > 0, vals / penalty, vals * penalty)
    return out


def filter_logits(logits: np.ndarray, top_k: int, top_p: float) -> np.ndarray:
    """(B, V) logits with tokens outside the top k, and outside the smallest set whose probability
    reaches top_p, set to -inf. The most likely token always stays."""
    logits = logits.copy()
    V = logits.shape[-1]
    if 0 < top_k < V:
        kth = np.partition(logits, V - top_k, axis=-1)[:, V - top_k][:, None]  # (B, 1)
        logits[logits < kth] = -np.inf
    if top_p < 1.0:
        order = np.argsort(-logits, axis=-1)  # (B, V), most likely first
        sorted_logits = np.take_along_axis(logits, order, axis=-1)
        probs = softmax(sorted_logits)
        before = np.cumsum(probs, axis=-1) - probs  # probability of the tokens ahead of each one
        drop_sorted = before >= top_p
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        logits[drop] = -np.inf
    return logits


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def choose(logits: np.ndarray, sampling: Sampling, seen: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """(B, V) float logits -> (B,) int64 next tokens."""
    logits = penalize_repeats(logits.astype(np.float64), seen, sampling.repetition_penalty)
    if sampling.greedy:
        return logits.argmax(axis=-1).astype(np.int64)
    probs = softmax(filter_logits(logits / sampling.temperature, sampling.top_k, sampling.top_p))
    u = rng.random(len(probs))[:, None]  # one draw per row, so rows do not depend on each other's sizes
    cdf = np.cumsum(probs, axis=-1)
    cdf /= cdf[:, -1:]  # exactly 1 at the end, so a draw never falls past the last possible token
    return (cdf <= u).sum(axis=-1).astype(np.int64)
