"""T5's relative positions: a learned bias per head on the attention scores, looked up by how far the key
is from the query (Raffel et al., 2020; Shaw et al., 2018).

The offset key - query is binned: offsets closer than a quarter of the buckets (half of them when
the attention is causal, where only offsets <= 0 occur) keep a bucket each, the rest share buckets
whose width grows logarithmically up to `relative_max_distance`, and everything further shares the
last one. A bidirectional attention (the encoder) gives keys after the query the upper half of the
buckets. Every layer of a stack adds the same (1, H, T, S) bias; there are no position embeddings.

The binning takes a float32 logarithm and truncates it, so two kernels whose `log` differs by an ulp
could disagree at a bucket's edge. The model therefore bins every offset it can meet once, when it is
built (a derived, unsaved table over -(max_len - 1) .. max_len - 1), and the exported graph only
gathers from that table:

    q_pos (T,), k_pos (S,) ─► k - q + max_len - 1 ─► Gather(buckets) ─► Gather(bias table) ─► (1, H, T, S)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from edgeformer.modeling.config import ModelConfig


def relative_buckets(offsets: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Integer key - query offsets -> their buckets in [0, num_buckets), as T5 bins them."""
    upper = torch.zeros_like(offsets)
    if bidirectional:  # keys after the query take the upper half
        num_buckets //= 2
        upper = (offsets > 0).long() * num_buckets
        distance = offsets.abs()
    else:  # causal: only keys at or before the query
        distance = (-offsets).clamp(min=0)
    exact = num_buckets // 2
    ratio = distance.clamp(min=exact).float() / exact  # >= 1: the log is taken where it is used only
    far = exact + (torch.log(ratio) / math.log(max_distance / exact) * (num_buckets - exact)).long()
    far = far.clamp(max=num_buckets - 1)
    return upper + torch.where(distance < exact, distance, far)


class RelativePositionBias(nn.Module):
    """One stack's bias table, (relative_buckets, n_heads), and the buckets of every offset within max_len."""

    def __init__(self, cfg: ModelConfig, bidirectional: bool):
        super().__init__()
        att = cfg.attention
        self.bias = nn.Embedding(att.relative_buckets, cfg.n_heads)
        self.max_len, self.bidirectional = cfg.max_len, bidirectional
        self.binning = (att.relative_buckets, att.relative_max_distance)
        self.register_buffer("buckets", self._table(), persistent=False)

    def _table(self) -> torch.Tensor:
        offsets = torch.arange(-(self.max_len - 1), self.max_len)  # (2 max_len - 1,)
        return relative_buckets(offsets, self.bidirectional, *self.binning)

    def derive_buffers(self) -> None:
        """The bucket table again, after the model was built on the meta device (modeling/build.py)."""
        self.buckets = self._table()

    def forward(self, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
        """(T,) query and (S,) key positions -> (1, H, T, S) bias."""
        offsets = key_positions[None, :] - query_positions[:, None] + (self.max_len - 1)  # (T, S) into the table
        return self.bias(self.buckets[offsets]).permute(2, 0, 1)[None]  # (1, H, T, S)


def biased_keep(keep: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A (B, 1, T, S) bool mask and a (1, H, T, S) bias -> the (B, H, T, S) float mask attention adds to its
    scores: the bias where a key is kept, the lowest float32 where it is not."""
    return torch.where(keep, bias, torch.finfo(torch.float32).min)
