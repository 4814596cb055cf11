"""The 2017 paper's encoder-decoder: an encoder stack, and a causal decoder stack with cross-attention.

Source and target share one token embedding (and the output projection, when tied), as in the
paper. T5 is the same model with RMSNorm, no biases, a gated or plain feed-forward and, instead of
sinusoidal positions, a bias on each stack's self-attention scores (positional=relative:
modeling/models/relative_position.py). The decoder starts from `pad_id` (T5's convention) and ends with the tokenizer's <eos>.
Attention goes through F.scaled_dot_product_attention, so every self- and cross-attention
becomes one ONNX `Attention` node on export. For generation the encoder runs once per input
(`encode`, then `cross_cache` projects its output to each layer's cross-attention keys/values),
and the decoder runs one token at a time with a self-attention cache (`decode`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeformer.modeling.config import ConfigError, ModelConfig
from edgeformer.modeling.models.norms import make_norm
from edgeformer.modeling.models.relative_position import RelativePositionBias, biased_keep
from edgeformer.modeling.models.transformer import (Block, Embeddings, LayerCache, SelfAttention, Transformer,
                                                    attention_keep_mask, build_feed_forward, cached_keep_mask)


class CrossAttention(nn.Module):
    """Queries from the decoder, keys and values from the encoder's output (the memory)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        inner = cfg.n_heads * cfg.head_dim
        self.q = nn.Linear(cfg.d_model, inner, bias=cfg.attention.qkv_bias)
        self.kv = nn.Linear(cfg.d_model, 2 * inner, bias=cfg.attention.qkv_bias)
        self.proj = nn.Linear(inner, cfg.d_model, bias=cfg.linear_bias)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def memory_kv(self, memory: torch.Tensor) -> LayerCache:
        """(B, S, C) encoder output -> keys and values (B, H, S, hd), computed once per input."""
        B, S, _ = memory.shape
        k, v = self.kv(memory).split(self.n_heads * self.head_dim, dim=2)
        k = k.view(B, S, self.n_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, S, self.n_heads, self.head_dim).transpose(1, 2)
        return LayerCache(k, v)

    def forward(self, x: torch.Tensor, memory: LayerCache, keep: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, memory.key, memory.value, attn_mask=keep, dropout_p=p)  # (B, H, T, hd)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, -1)))


class DecoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pre_norm = cfg.norm == "pre"
        self.ln1 = make_norm(cfg)
        self.attn = SelfAttention(cfg)
        self.ln2 = make_norm(cfg)
        self.cross = CrossAttention(cfg)
        self.ln3 = make_norm(cfg)
        self.ff = build_feed_forward(cfg)

    def forward(self, x, self_keep, memory: LayerCache, cross_keep, cache: LayerCache | None = None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.ln1(x), self_keep, cache)
            x = x + self.cross(self.ln2(x), memory, cross_keep)
            return x + self.ff(self.ln3(x))
        x = self.ln1(x + self.attn(x, self_keep, cache))
        x = self.ln2(x + self.cross(x, memory, cross_keep))
        return self.ln3(x + self.ff(x))


class Seq2SeqTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.arch != "seq2seq" or cfg.vision or cfg.type_vocab_size:
            raise ConfigError("Seq2SeqTransformer builds arch='seq2seq' text models")
        self.cfg = cfg
        self.embed = Embeddings(cfg)
        self.encoder = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.decoder = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.n_layers))
        pre = cfg.norm == "pre"
        self.enc_norm = make_norm(cfg) if pre else nn.Identity()
        self.dec_norm = make_norm(cfg) if pre else nn.Identity()
        relative = cfg.positional == "relative"  # T5: a bias on the scores, one table per stack
        self.enc_bias = RelativePositionBias(cfg, bidirectional=True) if relative else None
        self.dec_bias = RelativePositionBias(cfg, bidirectional=False) if relative else None
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(Transformer._init_weights)
        if cfg.positional == "sinusoidal":
            nn.init.normal_(self.embed.tok.weight, mean=0.0, std=cfg.d_model**-0.5)  # see Transformer
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.tok.weight

    output_names = ["logits"]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S) source ids -> (B, S, C) memory."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        keep = attention_keep_mask(attention_mask, causal=False)  # (B, 1, S, S)
        if self.enc_bias is not None:
            pos = torch.arange(input_ids.shape[1], device=input_ids.device)
            keep = biased_keep(keep, self.enc_bias(pos, pos))  # (B, H, S, S) float
        x = self.embed(input_ids)
        for block in self.encoder:
            x = block(x, keep)
        return self.enc_norm(x)

    def cross_cache(self, memory: torch.Tensor) -> list[LayerCache]:
        """Each decoder layer's cross-attention keys/values of `memory`, (B, H, S, hd) each."""
        return [block.cross.memory_kv(memory) for block in self.decoder]

    def decode(self, decoder_input_ids: torch.Tensor, memory: list[LayerCache], encoder_attention_mask: torch.Tensor,
               cache: list[LayerCache] | None = None) -> torch.Tensor:
        """(B, T) target ids after `cache`'s P tokens -> (B, T, V) logits; the cache gains this step's keys/values."""
        B, T = decoder_input_ids.shape
        P = cache[0].key.shape[2] if cache is not None else 0
        S = encoder_attention_mask.shape[1]
        positions = torch.arange(T, device=decoder_input_ids.device)[None, :].expand(B, T) + P  # (B, T)
        x = self.embed(decoder_input_ids, None, positions)  # (B, T, C)
        self_keep = cached_keep_mask(torch.ones(B, P + T, dtype=torch.long, device=x.device), T)  # (B, 1, T, P + T)
        if self.dec_bias is not None:
            keys = torch.arange(P + T, device=x.device)
            self_keep = biased_keep(self_keep, self.dec_bias(keys[P:], keys))  # (B, H, T, P + T) float
        cross_keep = encoder_attention_mask.bool()[:, None, None, :].expand(B, 1, T, S)  # expanded: see attention_keep_mask
        for i, block in enumerate(self.decoder):
            x = block(x, self_keep, memory[i], cross_keep, cache[i] if cache is not None else None)
        return self.lm_head(self.dec_norm(x))  # (B, T, V)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Teacher forcing: the whole target prefix at once -> {"logits": (B, T, V)}."""
        for name, ids in (("source", input_ids), ("target", decoder_input_ids)):
            if ids.shape[1] > self.cfg.max_len:
                raise ConfigError(f"{name} of {ids.shape[1]} tokens; this model accepts at most {self.cfg.max_len}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        memory = self.cross_cache(self.encode(input_ids, attention_mask))
        return {"logits": self.decode(decoder_input_ids, memory, attention_mask)}

    def empty_cache(self, batch: int) -> list[LayerCache]:
        cfg = self.cfg
        shape = (batch, cfg.n_heads, 0, cfg.head_dim)
        w = self.lm_head.weight
        return [LayerCache(w.new_zeros(shape), w.new_zeros(shape)) for _ in range(cfg.n_layers)]

    @torch.no_grad()
    def greedy(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, eos_id: int | None):
        """Greedy decoding with the cache -> (B, N) generated ids (after an eos, rows hold pad_id)."""
        B = input_ids.shape[0]
        memory = self.cross_cache(self.encode(input_ids, attention_mask))
        cache = self.empty_cache(B)
        ids = torch.full((B, 1), self.cfg.pad_id, dtype=torch.long, device=input_ids.device)
        done = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
        out = []
        for _ in range(max_new_tokens):
            nxt = self.decode(ids, memory, attention_mask, cache)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.cfg.pad_id), nxt)
            out.append(nxt)
            if eos_id is not None:
                done |= nxt == eos_id
            if done.all():
                break
            ids = nxt[:, None]
        return torch.stack(out, dim=1)

