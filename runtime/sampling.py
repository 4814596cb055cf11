"""Choosing the next token from logits: repetition penalty, temperature, top-k, top-p. numpy only.

The arithmetic is written so that another runtime (edgeformer.js, an app on a phone) that follows
these steps gets the same tokens for the same seed. Per step, for each row of (B, V) logits:

1. The float32 logits become float64 (exactly). Repetition penalty p != 1: for each distinct id the
   row has seen (the prompt too for a cached decoder; generated tokens only for seq2seq), the value v
   becomes v / p when v > 0, else v * p.
2. Greedy (temperature 0): the token is the first index of the row's largest value. Nothing is drawn.
3. Otherwise every value is divided by the temperature, then
   - top-k (0 < k < V): t = the k-th largest value (counting equal values); values < t become -inf,
     so ties with the k-th are kept;
   - top-p (< 1): order the indices by value, largest first, ties in index order (a stable sort of
     -value); softmax the values in that order (step 4); for each position in that order,
     before = (inclusive running sum of those probabilities, added left to right) - (its own
     probability); a token whose `before` >= top_p becomes -inf. The first token always stays.
4. softmax: m = the largest value; e_i = exp(v_i - m) (exp(-inf) = 0); s = e_0 + e_1 + ... added left
   to right in index order; p_i = e_i / s.
5. One uniform draw u in [0, 1) per row, rows in order, on every sampled step, finished rows
   included (so a row's draws never depend on when the others stop). c_i = p_0 + ... + p_i added left
   to right, then every c_i is divided by the last one, c_{V-1}; the token is the number of i with
   c_i <= u.

The draws come from SplitMix64 (Steele, Lea and Flood, 2014), a 64-bit state that every language
can compute with integers: state = seed; next(): state += 0x9E3779B97F4A7C15;
z = state; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
return z ^ (z >> 31), every operation mod 2**64; u = (next() >> 11) * 2**-53. With seed 0 the
first outputs are 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F.

Only exp may differ between platforms, by an ulp (1e-16 relative): a token changes only when a
draw lands that close to the edge of a token's interval.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass

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
        order = np.argsort(-logits, axis=-1, kind="stable")  # (B, V), most likely first, ties in index order
        sorted_logits = np.take_along_axis(logits, order, axis=-1)
        probs = softmax(sorted_logits)
        before = np.cumsum(probs, axis=-1) - probs  # probability of the tokens ahead of each one
        drop_sorted = before >= top_p
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        logits[drop] = -np.inf
    return logits


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; the sum is added left to right (np.cumsum), not pairwise as
    np.sum adds, so a port that adds in a plain loop gets the same bits."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / np.cumsum(e, axis=-1)[..., -1:]


MASK64 = (1 << 64) - 1


class SplitMix64:
    """The portable random generator of seeded sampling (see the module docstring)."""

    def __init__(self, seed: int | None = None):
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        self.state = int(seed) & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def random(self, n: int) -> np.ndarray:
        """n uniform draws in [0, 1): the top 53 bits of each output, times 2**-53."""
        return np.array([(self.next() >> 11) * 2.0**-53 for _ in range(n)], dtype=np.float64)


def choose(logits: np.ndarray, sampling: Sampling, seen: list[np.ndarray], rng: SplitMix64) -> np.ndarray:
    """(B, V) float logits -> (B,) int64 next tokens."""
    logits = penalize_repeats(logits.astype(np.float64), seen, sampling.repetition_penalty)
    if sampling.greedy:
        return logits.argmax(axis=-1).astype(np.int64)
    probs = softmax(filter_logits(logits / sampling.temperature, sampling.top_k, sampling.top_p))
    u = rng.random(len(probs))[:, None]  # one draw per row, so rows do not depend on each other's sizes
    cdf = np.cumsum(probs, axis=-1)
    cdf /= cdf[:, -1:]  # exactly 1 at the end, so a draw never falls past the last possible token
    return (cdf <= u).sum(axis=-1).astype(np.int64)


def stable_choice(logits: np.ndarray, sampling: Sampling, u: float, eps: float) -> bool:
    """Whether `choose` picks the same token from this row of (V,) float64 logits (penalty applied)
    however every logit moves by up to `eps`, given the draw `u`: another runtime's logits differ
    from these by rounding, and a near tie (or a draw near the edge of a token's interval) could go
    the other way there. Conservative: a stable choice is certain, an unstable one only possible."""
    if sampling.greedy:
        top = np.sort(logits)[-2:]
        return len(top) < 2 or top[1] - top[0] > 2 * eps
    d = eps / sampling.temperature  # the bound in temperature-scaled logits
    z = logits / sampling.temperature
    kept = np.isfinite(filter_logits(z[None], sampling.top_k, sampling.top_p)[0])
    # Tokens whose place in the kept set could change: near the top-k cut (within 2d of a token on its
    # other side) or near the top-p cut (`before` within 3d of top_p: scaled logits moving by d move each
    # probability by a factor within e^(+-2d), and sums of them by less than 3d).
    unsure = np.zeros_like(kept)
    if (~kept).any():
        unsure |= kept & (z - z[~kept].max() <= 2 * d)
        unsure |= ~kept & (z[kept].min() - z <= 2 * d)
    if sampling.top_p < 1.0:
        z_k = filter_logits(z[None], sampling.top_k, 1.0)[0]
        order = np.argsort(-z_k, kind="stable")
        p = softmax(z_k[order])
        before = np.cumsum(p) - p
        unsure[order[np.isfinite(z_k[order]) & (np.abs(before - sampling.top_p) <= 3 * d)]] = True
    probs = softmax(np.where(kept, z, -np.inf))
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]
    k = int((cdf <= u).sum())
    if unsure[k]:
        return False
    # Each unsure token joining or leaving moves the chosen token's interval ends by at most its own
    # probability (what it has or would have among the kept ones).
    e = np.exp(z - z[kept].max())
    shift = float((e[unsure] / e[kept].sum()).sum()) + 3 * d
    low = cdf[k - 1] if k > 0 else 0.0
    return u - low > shift and cdf[k] - u > shift
