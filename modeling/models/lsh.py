"""Reformer's locality-sensitive hashing attention, and what it attends within.

Queries and keys are shared (keys are the unit-normalised queries), so a query and the keys near
it land in the same bucket. Per hash round r, with random rotations R_r (hd, buckets/2) drawn at
initialisation and saved with the weights (export and runtime are then deterministic):

    bucket = argmax([x R_r, -x R_r])                       (B, H, T)
    sort tokens by (bucket, position)                      one permutation per head
    cut into chunks of `window`; each chunk attends to itself and the chunk before
    Attention over (B, H * chunks) rows of window x 2*window   (fused, no T x T scores)
    undo the sort

A token may attend to itself only when nothing else is there (its score is lowered by 1e5), as in
the paper, since q.normalise(q) dominates otherwise. Rounds are combined by their softmax
normalisers: out = sum_r exp(lse_r - logsumexp_r lse_r) * out_r; the normalisers are computed
from the same chunk scores outside the fused node.
"""

from __future__ import annotations

import math
from contextvars import ContextVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeformer.modeling.models.attention import HeadsAttention, pad_seq
from edgeformer.modeling.config import ConfigError, ModelConfig

# Per layer, bucket ids to use instead of the layer's own, and a tally of where its own differ
# (export.lsh_parity). A context variable, so a model shared with other threads hashes as usual there.
FORCED_BUCKETS: ContextVar[dict | None] = ContextVar("forced_buckets", default=None)
SELF_PENALTY = 1e5  # the paper's: a token attends to itself only when it sees nothing else
MASKED = 1e9  # padded keys and (causal) later keys; finite, so a row never turns NaN


def chunk_with_previous(x: torch.Tensor, m, c: int) -> torch.Tensor:
    """(B, H, m*c, ...) -> (B, H, m, 2c, ...): each chunk after the chunk before it (the first after the last)."""
    B, H = x.shape[:2]
    xc = x.reshape(B, H, m, c, *x.shape[3:])
    prev = torch.cat([xc[:, :, -1:], xc[:, :, :-1]], dim=2)
    return torch.cat([prev, xc], dim=3)


class LSHAttention(HeadsAttention):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.chunk, self.causal, self.n_buckets = cfg.attention.window, cfg.causal, cfg.attention.lsh_buckets
        rotations = torch.randn(cfg.attention.lsh_rounds, cfg.head_dim, cfg.attention.lsh_buckets // 2)
        self.register_buffer("rotations", rotations)  # part of the weights: the hash is fixed once trained

    def buckets(self, keys: torch.Tensor, valid: torch.Tensor, r: int) -> torch.Tensor:
        """(B, H, Tp, hd) keys -> (B, H, Tp) bucket ids; padding goes to an extra last bucket."""
        rotated = keys @ self.rotations[r]  # (B, H, Tp, buckets/2)
        ids = torch.cat([rotated, -rotated], dim=-1).argmax(-1)
        forced = FORCED_BUCKETS.get()
        if forced is not None and self in forced:  # the parity gate: another runtime's decisions, and how many differ
            given, counts = forced[self]
            real = valid[:, None, :].expand_as(ids)
            counts["disagree"] += int((ids != given[r])[real].sum())
            counts["decided"] += int(real.sum())
            ids = given[r]
        return torch.where(valid[:, None, :], ids, torch.full_like(ids, self.n_buckets))

    def round(self, q, k, v, valid, pos, r: int):
        """One hash round over padded (B, H, Tp, hd) tensors: (out (B, H, Tp, hd), lse (B, H, Tp))."""
        B, H, Tp, hd = q.shape
        c = self.chunk
        m = Tp // c
        order = (self.buckets(k, valid, r) * Tp + pos).argsort(dim=-1)  # (B, H, Tp)
        undo = order.argsort(dim=-1)
        take = order[..., None].expand(B, H, Tp, hd)
        qs, ks, vs = q.gather(2, take), k.gather(2, take), v.gather(2, take)
        qpos = pos.expand(B, H, Tp).gather(2, order)  # (B, H, Tp)
        kvalid = valid[:, None, :].expand(B, H, Tp).gather(2, order)
        qc = qs.reshape(B, H * m, c, hd)
        kc = chunk_with_previous(ks, m, c).reshape(B, H * m, 2 * c, hd)
        vc = chunk_with_previous(vs, m, c).reshape(B, H * m, 2 * c, hd)
        kp = chunk_with_previous(qpos, m, c).reshape(B, H * m, 1, 2 * c)
        kv = chunk_with_previous(kvalid, m, c).reshape(B, H * m, 1, 2 * c)
        qp = qpos.reshape(B, H * m, c, 1)
        bias = torch.where(kv, 0.0, -MASKED) - SELF_PENALTY * (kp == qp).to(q.dtype)  # (B, H*m, c, 2c)
        if self.causal:
            bias = bias - MASKED * (kp > qp).to(q.dtype)
        y = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=bias, dropout_p=self.p())  # (B, H*m, c, hd)
        out = y.reshape(B, H, Tp, hd).gather(2, undo[..., None].expand(B, H, Tp, hd))
        if self.rotations.shape[0] == 1:
            return out, None
        lse = torch.logsumexp(qc @ kc.transpose(-2, -1) / math.sqrt(hd) + bias, dim=-1)  # (B, H*m, c)
        return out, lse.reshape(B, H, Tp).gather(2, undo)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, cache=None, rope=None) -> torch.Tensor:
        if cache is not None:
            raise ConfigError("attention_kind=lsh has no key/value cache; expected a decoder exported without --kv-cache")
        q, _, v = self.heads(x, rope)  # (B, T, H, hd); the keys are the queries (shared QK)
        B, T, H, hd = q.shape
        pad = (T + self.chunk - 1) // self.chunk * self.chunk - T
        q = pad_seq(q, 0, pad).transpose(1, 2)  # (B, H, Tp, hd)
        v = pad_seq(v, 0, pad).transpose(1, 2)
        k = F.normalize(q, dim=-1)
        valid = pad_seq(keep.to(q.dtype), 0, pad) > 0  # (B, Tp)
        pos = torch.arange(q.shape[2], device=x.device)[None, None, :]  # (1, 1, Tp)
        rounds = [self.round(q, k, v, valid, pos, r) for r in range(self.rotations.shape[0])]
        if len(rounds) == 1:
            y = rounds[0][0]
        else:
            lse = torch.stack([lse for _, lse in rounds])  # (R, B, H, Tp)
            w = torch.exp(lse - torch.logsumexp(lse, dim=0))[..., None]  # not Softmax: that op counts attentions
            y = sum(w[i] * out for i, (out, _) in enumerate(rounds))
        return self.out(y.transpose(1, 2)[:, :T])  # (B, T, C)
