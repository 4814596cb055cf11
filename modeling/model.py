"""The transformer: embeddings, blocks of self-attention and feed-forward, and the task heads.

One module serves encoders (bidirectional, classification or embedding) and decoders (causal LM);
`ModelConfig` says which. Attention goes through F.scaled_dot_product_attention so that the
exporter turns each layer into one ONNX `Attention` node.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError, ModelConfig


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)); (max_len, d)."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    div = torch.pow(10000.0, torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos / div)
    pe[:, 1::2] = torch.cos(pos / div)
    return pe


def attention_keep_mask(attention_mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, T) 0/1 padding mask -> (B, 1, T, T) bool, True where a query may attend to a key.

    The mask is expanded over queries on purpose: onnxruntime's Attention kernel rejects a
    (B, 1, 1, T) key mask. Every position may attend to itself, so a padded query row is never
    empty (an all-masked row gives NaN); what padded rows compute is ignored downstream.
    """
    B, T = attention_mask.shape
    keep = attention_mask.bool()[:, None, None, :].expand(B, 1, T, T)
    idx = torch.arange(T, device=attention_mask.device)
    if causal:
        keep = keep & (idx[None, :] <= idx[:, None])
    return keep | (idx[:, None] == idx[None, :])


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p)  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.proj(y))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.act = {"gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh"), "relu": nn.ReLU()}[cfg.activation]
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pre_norm = cfg.norm == "pre"
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.ff = FeedForward(cfg)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.ln1(x), keep)
            return x + self.ff(self.ln2(x))
        x = self.ln1(x + self.attn(x, keep))
        return self.ln2(x + self.ff(x))


class Embeddings(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.positional == "learned":
            self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
            self.scale = 1.0
        else:
            # Derived from the config, so not saved in checkpoints.
            self.register_buffer("table", sinusoidal_table(cfg.max_len, cfg.d_model), persistent=False)
            self.pos = None
            self.scale = math.sqrt(cfg.d_model)  # the 2017 paper scales token embeddings by sqrt(d)
        self.segment = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.embedding_norm else nn.Identity()
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        T = input_ids.shape[1]
        positions = self.pos.weight[:T] if self.pos is not None else self.table[:T]  # (T, C)
        x = self.tok(input_ids) * self.scale + positions  # (B, T, C)
        if self.segment is not None:
            x = x + self.segment(token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids))
        return self.dropout(self.norm(x))


class PatchEmbeddings(nn.Module):
    """ViT: non-overlapping patches, linearly projected, after a learned class token, plus positions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.patch = nn.Conv2d(cfg.num_channels, cfg.d_model, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)  # (B, N, C)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)  # (B, N + 1, C)
        return self.dropout(x + self.pos.weight)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = PatchEmbeddings(cfg) if cfg.image_size else Embeddings(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else nn.Identity()
        if cfg.arch == "decoder":
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        elif cfg.num_labels:
            self.pooler = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.Tanh()) if cfg.pooler else nn.Identity()
            self.head_dropout = nn.Dropout(cfg.dropout)
            self.classifier = nn.Linear(cfg.d_model, cfg.num_labels)
        self.apply(self._init_weights)
        if cfg.positional == "sinusoidal":
            # Scaled by sqrt(d) in Embeddings, tokens then have unit variance like the +-1 positions
            # (the paper's convention); at std 0.02 the fixed positions would outweigh them 6 to 1.
            nn.init.normal_(self.embed.tok.weight, mean=0.0, std=cfg.d_model**-0.5)
        if cfg.arch == "decoder" and cfg.tie_embeddings:
            self.lm_head.weight = self.embed.tok.weight

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @property
    def output_names(self) -> list[str]:
        if self.cfg.arch == "decoder":
            return ["logits"]
        return ["logits", "last_hidden_state"] if self.cfg.num_labels else ["last_hidden_state"]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if self.cfg.image_size:
            x, keep = self.embed(pixel_values), None  # (B, N + 1, C); every patch sees every patch
            attention_mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        else:
            T = input_ids.shape[1]
            if T > self.cfg.max_len:
                raise ConfigError(f"sequence of {T} tokens; this model accepts at most {self.cfg.max_len}")
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            keep = attention_keep_mask(attention_mask, self.cfg.causal)  # (B, 1, T, T)
            x = self.embed(input_ids, token_type_ids)  # (B, T, C)
        for block in self.blocks:
            x = block(x, keep)
        x = self.ln_f(x)
        if self.cfg.arch == "decoder":
            return {"logits": self.lm_head(x)}  # (B, T, V)
        out = {"last_hidden_state": x}
        if self.cfg.num_labels:
            pooled = self.pooler(self.pool(x, attention_mask))  # (B, C)
            out["logits"] = self.classifier(self.head_dropout(pooled))  # (B, L)
        return out

    def pool(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, C): the mean over real tokens, or the first token."""
        if self.cfg.pooling == "cls":
            return x[:, 0]
        m = attention_mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
        return (x * m).sum(1) / m.sum(1).clamp(min=1.0)
