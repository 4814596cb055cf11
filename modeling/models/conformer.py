"""The Conformer (Gulati et al. 2020): a speech recogniser from raw 16 kHz audio to CTC logits.

    waveforms (B, N), lengths (B,)
      ─► LogMel (modeling/models/audio.py): (B, T, 80) log-mel features, in the graph
      ─► ConvSubsampling: two 3x3 convolutions of stride 2 (4x fewer frames) + Linear: (B, T/4, C)
      ─► ConformerBlock x L:  x + ½ FFN(x) ─► x + MHSA(x) ─► x + Conv(x) ─► x + ½ FFN(x) ─► LayerNorm
      ─► Linear to the CTC vocabulary (id 0 is the blank): logits (B, T/4, V), logit_lengths (B,)
          or, a keyword spotter (num_labels > 0): the mean of the valid frames ─► Linear: logits (B, labels)

Relative positions are rotary (RoPE, Su et al. 2021): queries and keys are rotated by their
position before F.scaled_dot_product_attention, so each layer still exports as one fused ONNX
`Attention` node with a boolean key-padding mask; the angle tables come from arange(T) at run
time, so no time axis is frozen and no (T, T) relative-shift (as_strided) is needed.

Streaming (cfg.speech.streaming): the depthwise convolution is causal (it reads its k - 1 past frames),
and `encode` takes a `context` of (chunk frames, left chunks): each frame attends to the frames of
its own chunk (the bounded look-ahead) and of at most `left chunks` chunks before it. Training draws
such contexts at random, half of the batches with the whole utterance, so one model transcribes
offline and chunk by chunk (modeling/models/conformer_stream.py: the step with its caches).

Padding: every valid output frame depends only on that row's valid input. The subsampling
convolutions are unpadded (output j reads inputs 2j..2j+2), the depthwise convolution reads
zeros where its row is padded (the frames are masked before it), attention masks padded keys,
and BatchNorm is a per-channel affine in eval mode. Lengths flow as tensors, never `.item()`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeformer.modeling.models.audio import LogMel
from edgeformer.modeling.config import ModelConfig
from edgeformer.modeling.models.rotary import apply_rotary


def subsampled_length(frames: torch.Tensor) -> torch.Tensor:
    """Frames after the two unpadded stride-2 convolutions of kernel 3, (B,) int64."""
    for _ in range(2):
        frames = (torch.div(frames - 3, 2, rounding_mode="floor") + 1).clamp(min=0)
    return frames


def rotary_tables(T: int, head_dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, head_dim) cos and sin of position x frequency, frequencies 10000^(-2i/d) repeated for both halves."""
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angle = torch.arange(T, device=device, dtype=torch.float32)[:, None] * inv[None, :]  # (T, hd/2)
    angle = torch.cat([angle, angle], dim=-1)  # (T, hd)
    return angle.cos(), angle.sin()


def chunk_mask(T: int, chunk: int, left_chunks: int | None, device=None) -> torch.Tensor:
    """(T, T) bool: query frame i may read key frame j when j's chunk is i's or one of the `left_chunks`
    before it (all before it when None): a look-ahead to the end of its chunk, a bounded past."""
    c = torch.arange(T, device=device) // chunk
    ok = c[None, :] <= c[:, None]
    return ok if left_chunks is None else ok & (c[None, :] >= c[:, None] - left_chunks)


def random_context(max_chunk: int = 16, max_left_chunks: int = 16) -> tuple[int, int | None] | None:
    """A training batch's context (Zhang et al. 2021's dynamic chunks): the whole utterance for half the
    batches, else a chunk of 1 to max_chunk frames and 1 to max_left_chunks chunks of the past, or all of it."""
    if torch.rand(()) < 0.5:
        return None
    chunk = int(torch.randint(1, max_chunk + 1, ()))
    return chunk, (None if torch.rand(()) < 0.5 else int(torch.randint(1, max_left_chunks + 1, ())))


class FeedForwardModule(nn.Module):
    """LayerNorm, Linear (x4 wide), Swish, dropout, Linear, dropout (added at half weight by the block)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.silu(self.fc1(self.norm(x))))))


class RotarySelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.norm(x)).split(C, dim=2)
        return self.attend(q, k, v, keep, (cos, sin), (cos, sin))

    def stream(self, x, keep, k_cache, v_cache, rotary_q, rotary_k):
        """One chunk (B, T, C) against the last L frames' unrotated keys and values (B, L, C) each; every
        key takes its place in the window (0..L+T-1), so only distances count. -> (out, keys, values)."""
        B, T, C = x.shape
        q, k, v = self.qkv(self.norm(x)).split(C, dim=2)
        k, v = torch.cat([k_cache, k], dim=1), torch.cat([v_cache, v], dim=1)  # (B, L + T, C)
        return self.attend(q, k, v, keep, rotary_q, rotary_k), k[:, T:], v[:, T:]

    def attend(self, q, k, v, keep, rotary_q, rotary_k) -> torch.Tensor:
        B, T, C = q.shape
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, k.shape[1], self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, H, S, hd)
        v = v.view(B, v.shape[1], self.n_heads, C // self.n_heads).transpose(1, 2)
        q, k = apply_rotary(q, rotary_q), apply_rotary(k, rotary_k)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p)  # (B, H, T, hd)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class ConvolutionModule(nn.Module):
    """LayerNorm, pointwise conv (x2) + GLU, depthwise conv over time, BatchNorm, Swish, pointwise conv, dropout.
    The depthwise convolution is centred, or causal in a streaming model (it reads `history` past frames)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        C, k = cfg.d_model, cfg.speech.conv_kernel
        self.history = k - 1 if cfg.speech.streaming else 0
        self.norm = nn.LayerNorm(C, eps=cfg.layer_norm_eps)
        self.pointwise1 = nn.Conv1d(C, 2 * C, 1)
        self.depthwise = nn.Conv1d(C, C, k, padding=0 if self.history else k // 2, groups=C)
        self.batch_norm = nn.BatchNorm1d(C)
        self.pointwise2 = nn.Conv1d(C, C, 1)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        y = self.gated(x, valid)
        return self.finish(F.pad(y, (self.history, 0)) if self.history else y)

    def stream(self, x: torch.Tensor, valid: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk (B, T, C) after the last `history` gated frames (B, C, history) -> (out, the new last frames)."""
        y = torch.cat([past, self.gated(x, valid)], dim=2)  # (B, C, history + T)
        return self.finish(y), y[:, :, y.shape[2] - self.history:]

    def gated(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pointwise1(self.norm(x).transpose(1, 2)), dim=1)  # (B, C, T)
        return y * valid[:, None, :]  # padded frames read as zeros, as past a sequence's end

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        y = F.silu(self.batch_norm(self.depthwise(y)))
        return self.dropout(self.pointwise2(y).transpose(1, 2))  # (B, T, C)


class ConformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ff1 = FeedForwardModule(cfg)
        self.attn = RotarySelfAttention(cfg)
        self.conv = ConvolutionModule(cfg)
        self.ff2 = FeedForwardModule(cfg)
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def forward(self, x, keep, valid, cos, sin) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, keep, cos, sin)
        x = x + self.conv(x, valid)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)

    def stream(self, x, keep, valid, rotary_q, rotary_k, k_cache, v_cache, conv_cache):
        """One chunk through the block with its caches -> (x, keys, values, convolution history)."""
        x = x + 0.5 * self.ff1(x)
        a, k_cache, v_cache = self.attn.stream(x, keep, k_cache, v_cache, rotary_q, rotary_k)
        x = x + a
        c, conv_cache = self.conv.stream(x, valid, conv_cache)
        x = x + c
        x = x + 0.5 * self.ff2(x)
        return self.norm(x), k_cache, v_cache, conv_cache


class ConvSubsampling(nn.Module):
    """(B, T, F) features -> (B, T', C): two 3x3 convolutions of stride 2 with ReLU, then a Linear over channels x bins."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        C = cfg.d_model
        self.conv = nn.Sequential(nn.Conv2d(1, C, 3, stride=2), nn.ReLU(), nn.Conv2d(C, C, 3, stride=2), nn.ReLU())
        bins = ((cfg.speech.n_mels - 3) // 2 + 1 - 3) // 2 + 1
        self.out = nn.Linear(C * bins, C)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.conv(features[:, None])  # (B, C, T', F')
        B, C, T, Fb = x.shape
        return self.dropout(self.out(x.permute(0, 2, 1, 3).reshape(B, T, C * Fb)))


class Conformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.features = LogMel(cfg.speech.n_mels)
        self.subsample = ConvSubsampling(cfg)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.n_layers))
        if cfg.num_labels:  # a keyword spotter: the valid frames' mean, then one label per clip
            self.classifier = nn.Linear(cfg.d_model, cfg.num_labels)
        else:
            self.ctc_head = nn.Linear(cfg.d_model, cfg.vocab_size)
        self.output_names = ["logits"] if cfg.num_labels else ["logits", "logit_lengths"]

    def derive_buffers(self) -> None:
        """The log-mel front end (no weights, only constants) again, after a build on the meta device (modeling/build.py)."""
        self.features = LogMel(self.cfg.speech.n_mels)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, features: torch.Tensor, frames: torch.Tensor,
               context: tuple[int, int | None] | None = None) -> dict[str, torch.Tensor]:
        """(B, T, n_mels) features and (B,) frame counts -> CTC logits (B, T', V) and their lengths (B,).
        `context` (a streaming model): (chunk frames, left chunks or None for all) bounds what each frame attends to."""
        x = self.subsample(features)  # (B, T', C)
        lengths = subsampled_length(frames)
        T = x.shape[1]
        idx = torch.arange(T, device=x.device)
        valid = (idx[None, :] < lengths[:, None]).to(x.dtype)  # (B, T')
        allowed = valid.bool()[:, None, None, :]  # (B, 1, 1, T')
        if context is not None:
            allowed = allowed & chunk_mask(T, *context, x.device)
        # (B, 1, T', T') as onnxruntime's Attention kernel needs; every frame keeps itself, so a padded row is never empty
        keep = (allowed | (idx[:, None] == idx[None, :])).expand(-1, 1, T, T)
        cos, sin = rotary_tables(T, self.cfg.d_model // self.cfg.n_heads, x.device)
        for block in self.blocks:
            x = block(x, keep, valid, cos, sin)
        if self.cfg.num_labels:
            pooled = (x * valid[:, :, None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)  # (B, C)
            return {"logits": self.classifier(pooled)}
        return {"logits": self.ctc_head(x), "logit_lengths": lengths}

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, N) float32 16 kHz waveforms (rows right-padded) and their lengths in samples (B,) int64."""
        return self.encode(*self.features(waveforms, lengths))
