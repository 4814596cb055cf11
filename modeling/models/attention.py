"""Attention for long inputs: local (sliding window), Longformer (local + global tokens) and Linformer.

Each computes only what it needs, in PyTorch and therefore in the exported graph; a banded mask on
full attention is the parity reference in the tests, never the model.

Local attention with window W: the sequence is padded to n blocks of W; each block's queries
attend to the keys of itself and its neighbours (causal: the block before), and one
scaled_dot_product_attention runs over (B * n) rows of W queries, so the scores take
B x H x n x W x 3W floats instead of B x H x T x T. Blocks are cut from the (B, T, C) rows, which
the export turns into one 3-D fused `Attention` node with no transposed copies:

    x (B, T, C) ─► q, k, v (B, T, C) ─► q: pad, Reshape ─────────────► (B*n, W, C)
                                        k, v: pad, Gather(block keys) ─► (B*n, 3W, C)
                   key mask (B, T) ─► same Gather & band |i - j| <= W ─► (B*n, 1, W, 3W)
                   Attention(q, k, v, mask; H heads) ─► (B*n, W, C) ─► (B, T, C)

Longformer adds up to G global tokens per row (the first G positions, or those an input
global_attention_mask marks): every block also attends to their keys, fetched by the same Gather,
and their own queries attend to every key (a second `Attention` node, G x T).

Linformer projects keys and values along the sequence with learned E, F (k, max_len): attention
is then T x k. A shorter input uses the first T columns of E and F, which is the same as padding
it with zero keys to the fixed length max_len the projections were trained for.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeformer.modeling.config import ModelConfig
from edgeformer.modeling.models.rotary import apply_rotary


class HeadsAttention(nn.Module):
    """The projections every attention kind shares, named as SelfAttention's (so weights carry over).

    One linear layer gives the queries of n_heads heads and the keys and values of kv_heads heads
    (fewer with grouped-query attention, each shared by n_heads / kv_heads query heads), each head
    head_dim wide: out (n_heads + 2 kv_heads) x head_dim rows."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.sizes = [cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim]
        self.qkv = nn.Linear(cfg.d_model, sum(self.sizes), bias=cfg.attention.qkv_bias)
        self.proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=cfg.linear_bias)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def heads(self, x: torch.Tensor, rope=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, C) -> q (B, T, H, hd), k and v (B, T, Hkv, hd), queries and keys rotated when positions are rotary."""
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(self.sizes, dim=2)
        q = q.view(B, T, self.n_heads, self.head_dim)
        k, v = (t.view(B, T, self.kv_heads, self.head_dim) for t in (k, v))
        if rope is not None:
            q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        return q, k, v

    def out(self, y: torch.Tensor) -> torch.Tensor:
        """(B, T, H, hd) -> (B, T, C) through the output projection."""
        B, T = y.shape[:2]
        return self.resid_dropout(self.proj(y.reshape(B, T, -1)))

    def p(self) -> float:
        return self.dropout if self.training else 0.0

    def scores(self, x: torch.Tensor, rope=None) -> torch.Tensor:
        """(B, T, C) -> (B, H, T, T) q.k / sqrt(hd) before masking and softmax, over the whole sequence and
        rotated as `forward` rotates them: distillation's attention loss (on request only; `forward`
        leaves the product inside scaled_dot_product_attention, one fused node on export)."""
        q, k, _ = self.heads(x, rope)
        k = repeat_kv(k.transpose(1, 2), self.n_heads // self.kv_heads)  # (B, H, T, hd)
        return q.transpose(1, 2) @ k.transpose(2, 3) / math.sqrt(q.shape[-1])


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, Hkv, S, hd) -> (B, Hkv * groups, S, hd): each key/value head once per query head of its group."""
    if groups == 1:
        return x
    B, Hkv, S, hd = x.shape
    return x[:, :, None].expand(B, Hkv, groups, S, hd).reshape(B, Hkv * groups, S, hd)


def attention_nodes_per_layer(cfg: ModelConfig) -> int:
    """The fused Attention (or unfused Softmax) nodes one block exports as: the export's node-count check."""
    return {"longformer": 2, "lsh": cfg.attention.lsh_rounds}.get(cfg.attention.kind, 1)


def pad_seq(x: torch.Tensor, before: int, after) -> torch.Tensor:
    """Zero-pad dimension 1 of (B, T, ...)."""
    return F.pad(x, [0, 0] * (x.dim() - 2) + [before, after])


def block_keys(n, W: int, causal: bool, device) -> torch.Tensor:
    """(n, kW) positions in the sequence padded by W in front: the keys of blocks j-1, j (and j+1
    unless causal) for each block j. One Gather of these builds every block's keys."""
    kw = (2 if causal else 3) * W
    return torch.arange(n, device=device)[:, None] * W + torch.arange(kw, device=device)[None, :]  # (n, kW)


class GlobalKeep(NamedTuple):
    """Longformer's mask: which keys are real, and which tokens of each row are global."""

    keys: torch.Tensor  # (B, T) bool: real tokens
    marked: torch.Tensor  # (B, T) bool: real tokens that are global
    positions: torch.Tensor  # (B, G) int64: each row's global tokens in order; T in an unused slot
    valid: torch.Tensor  # (B, G) bool: the slot holds a global token


def global_keep(attention_mask: torch.Tensor, global_mask: torch.Tensor | None, G: int) -> GlobalKeep:
    """The global tokens of each row: those `global_mask` (B, T) marks, or the first G positions.

    A row marks at most G (the model's global_tokens; the runtime refuses more). TopK over
    T - position picks the marked ones in order with a fixed k, so the export has no data-dependent
    shape; the scores are padded by G so k <= length holds for a row shorter than G.
    """
    B, T = attention_mask.shape
    keys = attention_mask.bool()
    pos = torch.arange(T, device=attention_mask.device)
    asked = keys & (global_mask.bool() if global_mask is not None else (pos < G)[None, :])
    score = F.pad(torch.where(asked, T - pos[None, :], torch.zeros_like(pos)[None, :]), [0, G])  # (B, T + G)
    top, idx = score.topk(G, dim=1)  # (B, G)
    valid = top > 0
    positions = torch.where(valid, idx, torch.full_like(idx, T))
    # the global tokens are the ones kept: a mark past the G-th (refused by the runtime, but a raw session
    # can send it) leaves its token an ordinary local one rather than a key nobody attends to
    marked = torch.zeros(B, T + 1, dtype=torch.long, device=keys.device).scatter(1, positions, valid.long())[:, :T] > 0
    return GlobalKeep(keys, marked, positions, valid)


def band_pattern(W: int, causal: bool, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, kW) bools: which neighbour-block keys are within the window of each query, and which is itself."""
    r = torch.arange(W, device=device)[:, None]
    s = torch.arange((2 if causal else 3) * W, device=device)[None, :]
    d = r + W - s  # query position - key position
    band = (d >= 0) & (d <= W) if causal else d.abs() <= W
    return band, d == 0


def window_keep(key_mask: torch.Tensor, keys: torch.Tensor, n, W: int, after, causal: bool) -> torch.Tensor:
    """(B, n, W, kW) bool: which of the keys each block gathered (`keys`, n*kW positions in the sequence
    padded by W in front and `after` behind) its queries may see: real keys within the window, and itself."""
    B = key_mask.shape[0]
    valid = pad_seq(key_mask.float(), W, after).index_select(1, keys).reshape(B, n, -1) > 0  # (B, n, kW)
    band, self_key = band_pattern(W, causal, key_mask.device)
    return (valid[:, :, None, :] & band) | self_key


def split_heads(x: torch.Tensor, H: int) -> torch.Tensor:
    """(N, L, C) -> (N, H, L, C/H): the layout change the export folds into a 3-D Attention node."""
    N, L, C = x.shape
    return x.view(N, L, H, C // H).transpose(1, 2)


def blocked_local_attention(q, k, v, key_mask, W: int, H: int, causal: bool, p: float = 0.0,
                            globals_: GlobalKeep | None = None) -> torch.Tensor:
    """Sliding-window attention of (B, T, C) q, k, v over H heads; key_mask (B, T) bool; -> (B, T, C).

    Blocks are cut from the (B, T, C) rows, so the exported `Attention` node takes them as 3-D
    inputs with no transposed copies, and each block's keys are one Gather (no slices or concats).
    With `globals_` (Longformer) every block of a row also attends to that row's global keys, which
    the same Gather fetches; `key_mask` then covers the local keys only.
    """
    B, T, C = q.shape
    n = (T + W - 1) // W
    pad = n * W - T
    after = pad + (0 if causal else W)
    local = block_keys(n, W, causal, q.device)  # (n, kW)
    kp, vp = pad_seq(k, W, after), pad_seq(v, W, after)  # (B, Lp, C), Lp = W + T + after
    if globals_ is None:
        kb, vb = (t.index_select(1, local.reshape(-1)).reshape(B * n, -1, C) for t in (kp, vp))  # (B*n, kW, C)
    else:  # per row: its G global keys (T, an unused slot, reads a padding row), then the block's
        G = globals_.positions.shape[1]
        idx = torch.cat([(W + globals_.positions)[:, None, :].expand(B, n, G), local[None].expand(B, n, -1)], dim=2)
        rows = (torch.arange(B, device=q.device)[:, None, None] * kp.shape[1] + idx).reshape(-1)  # into (B*Lp, C)
        kb, vb = (t.reshape(-1, C).index_select(0, rows).reshape(B * n, -1, C) for t in (kp, vp))  # (B*n, G + kW, C)
    kw = kb.shape[1]
    keep = window_keep(key_mask, local.reshape(-1), n, W, after, causal)  # (B, n, W, kW)
    if globals_ is not None:
        keep = torch.cat([globals_.valid[:, None, None, :].expand(B, n, W, -1), keep], dim=3)  # (B, n, W, G + kW)
    qb = pad_seq(q, 0, pad).reshape(B * n, W, C)
    y = F.scaled_dot_product_attention(split_heads(qb, H), split_heads(kb, H), split_heads(vb, H),
                                       attn_mask=keep.reshape(B * n, 1, W, kw), dropout_p=p)  # (B*n, H, W, hd)
    y = y.transpose(1, 2).reshape(B * n, W, C)
    return y.reshape(B, n * W, C)[:, :T]


def cached_local_attention(q, k, v, key_mask, past, W: int, p: float = 0.0) -> torch.Tensor:
    """Causal sliding-window attention of T new (B, T, H, hd) queries over the (B, H, S, hd) keys of a
    cache that held `past` tokens before them; key_mask (B, S) bool -> (B, T, H, hd).

    The new tokens are cut into n blocks of W; each block gathers from the cache only the keys of
    itself and the block before (positions past - W .. past + nW - 1), so a long prompt costs
    n x W x 2W scores, not T x S, and one generated token gathers 2W keys.
    """
    B, T, H, hd = q.shape
    n = (T + W - 1) // W
    pad = n * W - T
    idx = (past + block_keys(n, W, True, q.device)).reshape(-1)  # (n*2W) in the cache padded by W in front
    kb, vb = (F.pad(t, [0, 0, W, pad]).index_select(2, idx).reshape(B, H, n, 2 * W, hd).transpose(1, 2)
              .reshape(B * n, H, 2 * W, hd) for t in (k, v))  # (B*n, H, 2W, hd)
    keep = window_keep(key_mask, idx, n, W, pad, True).reshape(B * n, 1, W, 2 * W)
    qb = pad_seq(q, 0, pad).reshape(B, n, W, H, hd).permute(0, 1, 3, 2, 4).reshape(B * n, H, W, hd)
    y = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=keep, dropout_p=p)  # (B*n, H, W, hd)
    return y.reshape(B, n, H, W, hd).permute(0, 1, 3, 2, 4).reshape(B, n * W, H, hd)[:, :T]


class LocalAttention(HeadsAttention):
    """Each token attends to the tokens within `window` of it (causal: the `window` before it)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.window, self.causal = cfg.attention.window, cfg.causal

    def forward(self, x: torch.Tensor, keep: torch.Tensor, cache=None, rope=None) -> torch.Tensor:
        """keep: the (B, T) key mask; with `cache` (generation) the (B, P + T) mask of past and new keys."""
        q, k, v = self.heads(x, rope)
        if cache is not None:  # new tokens over the cache: each block of them gathers its window's keys
            past = cache.key.shape[2]
            k = cache.key = torch.cat([cache.key, k.transpose(1, 2)], dim=2)  # (B, H, P + T, hd)
            v = cache.value = torch.cat([cache.value, v.transpose(1, 2)], dim=2)
            return self.out(cached_local_attention(q, k, v, keep, past, self.window, self.p()))
        B, T, H, hd = q.shape
        y = blocked_local_attention(q.reshape(B, T, H * hd), k.reshape(B, T, H * hd), v.reshape(B, T, H * hd),
                                    keep, self.window, H, self.causal, self.p())
        return self.resid_dropout(self.proj(y))


class LongformerAttention(HeadsAttention):
    """Local windows, plus up to `global_tokens` tokens per row that attend to and are attended by all:
    those the input's global_attention_mask marks, or the first positions (e.g. [CLS])."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.window, self.n_global = cfg.attention.window, cfg.attention.global_tokens

    def forward(self, x: torch.Tensor, keep: GlobalKeep, cache=None, rope=None) -> torch.Tensor:
        q, k, v = self.heads(x, rope)  # (B, T, H, hd)
        B, T, H, hd = q.shape
        q, k, v = q.reshape(B, T, H * hd), k.reshape(B, T, H * hd), v.reshape(B, T, H * hd)  # (B, T, C)
        G, C = keep.positions.shape[1], H * hd
        local = blocked_local_attention(q, k, v, keep.keys & ~keep.marked, self.window, H, False, self.p(), keep)
        rows = keep.positions[:, :, None].expand(B, G, C)  # (B, G, C); T (unused slot) is a padding row
        own = keep.positions[:, :, None] == torch.arange(T, device=x.device)[None, None, :]  # (B, G, T)
        gkeep = (keep.keys[:, None, :] | own | ~keep.valid[:, :, None])[:, None]  # (B, 1, G, T); unused rows never empty
        glob = F.scaled_dot_product_attention(split_heads(pad_seq(q, 0, 1).gather(1, rows), H), split_heads(k, H),
                                              split_heads(v, H), attn_mask=gkeep, dropout_p=self.p())  # (B, H, G, hd)
        y = pad_seq(local, 0, 1).scatter(1, rows, glob.transpose(1, 2).reshape(B, G, C))[:, :T]  # global rows replaced
        return self.resid_dropout(self.proj(y))


class LinformerAttention(HeadsAttention):
    """Keys and values projected along the sequence to `linformer_k` rows by learned E and F."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        std = math.sqrt(2.0 / (cfg.attention.linformer_k + cfg.max_len))  # Xavier normal, as in the paper's code
        self.E = nn.Parameter(torch.randn(cfg.attention.linformer_k, cfg.max_len) * std)
        self.F = nn.Parameter(torch.randn(cfg.attention.linformer_k, cfg.max_len) * std)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, cache=None, rope=None) -> torch.Tensor:
        q, k, v = self.heads(x, rope)
        T = x.shape[1]
        m = keep.to(x.dtype)[:, :, None, None]  # padded keys project to nothing
        k = (k * m).transpose(1, 2)  # (B, H, T, hd)
        v = (v * m).transpose(1, 2)
        kp = self.E[:, :T] @ k  # (B, H, k, hd)
        vp = self.F[:, :T] @ v
        y = F.scaled_dot_product_attention(q.transpose(1, 2), kp, vp, dropout_p=self.p())  # (B, H, T, hd)
        return self.out(y.transpose(1, 2))
