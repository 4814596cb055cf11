"""The transformer: embeddings, blocks of self-attention and feed-forward, and the task heads.

One module serves encoders (bidirectional, classification or embedding) and decoders (causal LM);
`ModelConfig` says which. Attention goes through F.scaled_dot_product_attention so that the
exporter turns each layer into one ONNX `Attention` node.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeformer.modeling.config import ConfigError, ModelConfig
from edgeformer.modeling.models.attention import HeadsAttention, global_keep
from edgeformer.modeling.models.feed_forward import ACTIVATIONS, GatedFeedForward
from edgeformer.modeling.models.norms import make_norm
from edgeformer.modeling.models.rotary import rotary_for


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)); (max_len, d).

    Computed in float64 and rounded once: in float32 a few-ulp difference in the frequencies (which
    vectorized `pow` kernel ran) moves the angle of position 127 by 1e-4, so two processes building
    the same model could disagree with each other and with an exported graph by more than the parity gate.
    """
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    div = torch.pow(10000.0, torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos / div)
    pe[:, 1::2] = torch.cos(pos / div)
    return pe.float()


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


def cached_keep_mask(attention_mask: torch.Tensor, T: int) -> torch.Tensor:
    """(B, S) 0/1 mask over past + current keys -> (B, 1, T, S) bool for the last T of them as queries.

    Causality is aligned to the END of the key sequence: query i sits at key position S - T + i and
    may see keys up to it. As in `attention_keep_mask`, every query keeps its own key, so a padded
    query row is never empty (an all-masked row gives NaN).
    """
    B, S = attention_mask.shape
    q_pos = torch.arange(T, device=attention_mask.device)[:, None] + (S - T)  # (T, 1)
    k_pos = torch.arange(S, device=attention_mask.device)[None, :]  # (1, S)
    keep = attention_mask.bool()[:, None, None, :] & (k_pos <= q_pos)  # (B, 1, T, S)
    return keep | (k_pos == q_pos)


def last_positions(x: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
    """(B, T, C) -> (B, min(k, T), C), the last k positions; k = 0 keeps all (transformers' `logits_to_keep`).

    `logits_to_keep` may be a one-element int64 tensor (a graph input): the export then holds one Slice
    whose start is -k, so a long prompt's lm_head runs on the rows the caller reads, not on all T."""
    if not isinstance(logits_to_keep, torch.Tensor) and logits_to_keep == 0:
        return x  # no Slice in a graph traced without the input
    k = logits_to_keep.item() if isinstance(logits_to_keep, torch.Tensor) else int(logits_to_keep)
    if torch.compiler.is_compiling():
        torch._check(k >= 0)
    elif k < 0:
        raise ConfigError(f"logits_to_keep={k}; expected 0 (every position) or a count of last positions")
    return x[:, -k:]


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, S) 0/1 mask -> (B, S) position ids counting real tokens only, so left padding shifts nothing."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


@dataclass
class LayerCache:
    """One layer's keys and values so far, (B, H, P, hd) each; attention appends to them in place."""

    key: torch.Tensor
    value: torch.Tensor


class SelfAttention(HeadsAttention):
    def forward(self, x: torch.Tensor, keep: torch.Tensor | None, cache: LayerCache | None = None, rope=None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = (t.transpose(1, 2) for t in self.heads(x, rope))  # q (B, H, T, hd), k, v (B, Hkv, T, hd)
        if cache is not None:  # stored at the key/value head count, before the groups are repeated
            k = cache.key = torch.cat([cache.key, k], dim=2)  # (B, Hkv, P + T, hd)
            v = cache.value = torch.cat([cache.value, v], dim=2)
        # grouped-query: each key/value head serves n_heads / kv_heads query heads; exported as one standard
        # `Attention` node whose keys and values have kv_heads heads (onnxruntime's CPU kernel takes that)
        gqa = self.kv_heads != self.n_heads
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self.p(), enable_gqa=gqa)  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, -1)
        return self.resid_dropout(self.proj(y))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.linear_bias)
        self.act = ACTIVATIONS[cfg.activation]()
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.linear_bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(x))))


def build_feed_forward(cfg: ModelConfig) -> nn.Module:
    return GatedFeedForward(cfg) if cfg.feed_forward == "gated" else FeedForward(cfg)


def build_attention(cfg: ModelConfig) -> nn.Module:
    """The self-attention of cfg.attention.kind; every kind takes (x, keep, cache, rope).

    keep is the (B, 1, T, S) mask for full attention and for a cache; the (B, T) key mask otherwise
    (the long-input kinds build only the blocks of mask they need)."""
    if cfg.attention.kind == "full":
        return SelfAttention(cfg)
    from edgeformer.modeling.models.attention import LinformerAttention, LocalAttention, LongformerAttention
    from edgeformer.modeling.models.lsh import LSHAttention

    kinds = {"local": LocalAttention, "longformer": LongformerAttention, "linformer": LinformerAttention, "lsh": LSHAttention}
    return kinds[cfg.attention.kind](cfg)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pre_norm = cfg.norm == "pre"
        self.ln1 = make_norm(cfg)
        self.attn = build_attention(cfg)
        self.ln2 = make_norm(cfg)
        self.ff = build_feed_forward(cfg)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None, cache: LayerCache | None = None, rope=None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.ln1(x), keep, cache, rope)
            return x + self.ff(self.ln2(x))
        x = self.ln1(x + self.attn(x, keep, cache, rope))
        return self.ln2(x + self.ff(x))


class Embeddings(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.positional == "learned":
            self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
            self.scale = 1.0
        elif cfg.positional in ("rotary", "relative"):  # positions act in attention instead (rotation, T5's bias)
            self.pos, self.table, self.scale = None, None, 1.0
        else:
            # Derived from the config, so not saved in checkpoints.
            self.register_buffer("table", sinusoidal_table(cfg.max_len, cfg.d_model), persistent=False)
            self.pos = None
            self.table_size = (cfg.max_len, cfg.d_model)
            self.scale = math.sqrt(cfg.d_model)  # the 2017 paper scales token embeddings by sqrt(d)
        self.segment = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.embedding_norm else nn.Identity()
        self.dropout = nn.Dropout(cfg.dropout)

    def derive_buffers(self) -> None:
        """The sinusoidal table again, after the model was built on the meta device (modeling/build.py)."""
        if self.pos is None and self.table is not None:  # sinusoidal positions
            self.table = sinusoidal_table(*self.table_size)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        T = input_ids.shape[1]
        x = self.tok(input_ids) * self.scale  # (B, T, C)
        table = self.pos.weight if self.pos is not None else self.table
        if table is not None:
            x = x + (table[:T] if position_ids is None else F.embedding(position_ids, table))  # (T, C) or (B, T, C)
        if self.segment is not None:
            x = x + self.segment(token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids))
        return self.dropout(self.norm(x))


class PatchEmbeddings(nn.Module):
    """ViT: non-overlapping patches, linearly projected, after a learned class token, plus positions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        vision = cfg.vision
        self.patch = nn.Conv2d(vision.num_channels, cfg.d_model, kernel_size=vision.patch_size, stride=vision.patch_size)
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
        self.embed = PatchEmbeddings(cfg) if cfg.vision else Embeddings(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.rotary = rotary_for(cfg) if cfg.positional == "rotary" else None
        self.ln_f = make_norm(cfg) if cfg.norm == "pre" else nn.Identity()
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

    @contextlib.contextmanager
    def capture(self, attention_scores: bool = False) -> Iterator[dict[str, list[torch.Tensor]]]:
        """Record internals of every forward call made inside the `with` block (distillation).

        Yields a dict filled during forward: "hidden_states", the embedding output then each
        block's output, (B, T, C) each; with `attention_scores`, "attention_scores", each block's
        (B, H, T, T) scores before softmax. Hooks exist only inside the block, so export and
        ordinary calls run the plain forward.
        """
        seen: dict[str, list[torch.Tensor]] = {"hidden_states": [], "attention_scores": []}

        def after_embed(module, args, output):
            seen["hidden_states"].append(output)

        def after_block(block, args, output):
            if attention_scores:
                x, rope = args[0], args[3] if len(args) > 3 else None  # block(x, keep, cache, rope)
                seen["attention_scores"].append(block.attn.scores(block.ln1(x) if block.pre_norm else x, rope))
            seen["hidden_states"].append(output)

        handles = [self.embed.register_forward_hook(after_embed)]
        handles += [b.register_forward_hook(after_block) for b in self.blocks]
        try:
            yield seen
        finally:
            for h in handles:
                h.remove()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: list[LayerCache] | None = None,
        global_attention_mask: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
    ) -> dict[str, torch.Tensor]:
        """`position_ids` (B, T) place tokens explicitly (left-padded prompts). With `cache` (a
        decoder generating), attention_mask covers past + current tokens and each layer's cache
        gains this step's keys and values; `logits_to_keep` k > 0 returns the logits of the last k
        positions only (B, k, V), 0 all of them. `global_attention_mask` (B, T) marks a Longformer's
        global tokens, at most global_tokens per row (default: the first global_tokens positions)."""
        if global_attention_mask is not None and self.cfg.attention.kind != "longformer":
            raise ConfigError(f"global_attention_mask is for attention_kind=longformer; this model's attention is "
                              f"{self.cfg.attention.kind}")
        if cache is not None:
            return self._forward_cached(input_ids, attention_mask, position_ids, cache, logits_to_keep)
        if self.cfg.vision:
            x, keep = self.embed(pixel_values), None  # (B, N + 1, C); every patch sees every patch
            attention_mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        else:
            T = input_ids.shape[1]
            if T > self.cfg.max_len:
                raise ConfigError(f"sequence of {T} tokens; this model accepts at most {self.cfg.max_len}")
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            if self.cfg.attention.kind == "full":
                keep = attention_keep_mask(attention_mask, self.cfg.causal)  # (B, 1, T, T)
            elif self.cfg.attention.kind == "longformer":
                keep = global_keep(attention_mask, self.checked_globals(global_attention_mask, attention_mask),
                                   self.cfg.attention.global_tokens)
            else:  # the long-input kinds build only the parts of the mask they attend over
                keep = attention_mask.bool()  # (B, T)
            x = self.embed(input_ids, token_type_ids, position_ids)  # (B, T, C)
        x = self.run_blocks(x, keep, None, self.rope(x.shape[1], position_ids))
        x = self.ln_f(x)
        if self.cfg.arch == "decoder":
            return {"logits": self.lm_head(last_positions(x, logits_to_keep))}  # (B, T or k, V)
        out = {"last_hidden_state": x}
        if self.cfg.num_labels:
            pooled = self.pooler(self.pool(x, attention_mask))  # (B, C)
            out["logits"] = self.classifier(self.head_dropout(pooled))  # (B, L)
        return out

    def _forward_cached(self, input_ids, attention_mask, position_ids, cache: list[LayerCache],
                        logits_to_keep: int | torch.Tensor = 0) -> dict[str, torch.Tensor]:
        if self.cfg.arch != "decoder":
            raise ConfigError(f"a key/value cache is for decoders; this model is an {self.cfg.arch}")
        B, T = input_ids.shape
        S = cache[0].key.shape[2] + T
        if not torch.compiler.is_compiling() and S > self.cfg.max_len:
            raise ConfigError(f"{S} tokens with the cache; this model accepts at most {self.cfg.max_len}")
        if attention_mask is None:
            attention_mask = torch.ones(B, S, dtype=torch.long, device=input_ids.device)
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask)[:, -T:]
        if self.cfg.attention.kind == "local":  # blocks of new tokens over their window (modeling/models/attention.py)
            keep = attention_mask.bool()  # (B, S)
        else:
            keep = cached_keep_mask(attention_mask, T)  # (B, 1, T, S)
        x = self.embed(input_ids, None, position_ids)  # (B, T, C)
        x = self.run_blocks(x, keep, cache, self.rope(T, position_ids))
        x = last_positions(x, logits_to_keep)  # (B, k, C): before the head, whose (., V) product dominates a long prompt
        return {"logits": self.lm_head(self.ln_f(x))}  # (B, k, V)

    def checked_globals(self, global_attention_mask: torch.Tensor | None, attention_mask: torch.Tensor) -> torch.Tensor | None:
        """The mask as given, once no row marks more real tokens global than the model has room for."""
        if global_attention_mask is not None and not torch.compiler.is_compiling():
            counts = ((global_attention_mask != 0) & (attention_mask != 0)).sum(dim=1)
            if bool((counts > self.cfg.attention.global_tokens).any()):
                row = int(torch.argmax((counts > self.cfg.attention.global_tokens).int()))
                raise ConfigError(f"global_attention_mask marks {int(counts[row])} tokens in row {row}; this model "
                                  f"attends globally to at most {self.cfg.attention.global_tokens} (global_tokens)")
        return global_attention_mask

    def rope(self, T: int, position_ids: torch.Tensor | None):
        """The rotary angles of this input's positions; None unless positional is rotary."""
        return self.rotary(T, position_ids) if self.rotary is not None else None

    def run_blocks(self, x: torch.Tensor, keep, cache: list[LayerCache] | None, rope) -> torch.Tensor:
        if self.cfg.reversible:
            from edgeformer.modeling.models.reversible import reversible_forward

            return reversible_forward(self.blocks, x, keep, cache, rope)
        for i, block in enumerate(self.blocks):
            x = block(x, keep, cache[i] if cache is not None else None, rope)
        return x

    def empty_cache(self, batch: int) -> list[LayerCache]:
        """A cache holding nothing yet: (batch, Hkv, 0, hd) keys and values for every layer."""
        cfg = self.cfg
        shape = (batch, cfg.kv_heads, 0, cfg.head_dim)
        w = self.lm_head.weight
        return [LayerCache(w.new_zeros(shape), w.new_zeros(shape)) for _ in range(cfg.n_layers)]

    def pool(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, C): the mean over real tokens, or the first token."""
        if self.cfg.pooling == "cls":
            return x[:, 0]
        m = attention_mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
        return (x * m).sum(1) / m.sum(1).clamp(min=1.0)
