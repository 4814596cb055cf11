"""A streaming Conformer's step: one chunk of audio in, that chunk's CTC logits out, the past in caches.

    audio (B, W)  W = 640 C + 720 samples: the chunk's 640 C and the 720 after them ─┐
    valid_frames (B,)     frames of this chunk that are speech (C but in the last one)│
    keys, values (layers, B, L, d_model)   the last L frames' unrotated keys, values  ├─► logits (B, C, V)
    cached_frames (B,)    how many of those L are real (0 at the start of a stream)   │   and every cache, updated
    conv_history (layers, B, d_model, k - 1)  the causal convolution's past inputs  ─┘

C output frames (40 ms each) need feature frames 4c..4c+4C+2 (two stride-2 convolutions of kernel
3) and those need samples 640c..640c+640C+720, so consecutive windows overlap by 720 samples and
the front end computes the frames that straddle a chunk boundary exactly as offline: the caller
keeps the last 720 samples of a window for the next. Keys are cached before rotation and rotated
by their place in the window (0..L+C-1) at each step: rotary attention depends only on the distance
between two frames, and window positions never grow with the stream's length.

The step computes exactly what `Conformer.encode(..., context=(C, L // C))` computes for the same
frames offline (export/speech_stream.py gates it against that). A chunk with valid_frames < C ends
the stream: its padded frames enter the caches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from edgeformer.modeling.models.audio import HOP, WINDOW
from edgeformer.modeling.models.conformer import Conformer, rotary_tables

SUBSAMPLING = 4  # feature frames per output frame
OVERLAP_FRAMES = 3  # feature frames a chunk reads past its own 4 C: the subsampling convolutions' reach


@dataclass(frozen=True)
class StreamGeometry:
    """How a stream is cut: `chunk` output frames per step and `left_chunks` chunks of attention past."""

    chunk: int
    left_chunks: int

    @property
    def hop_samples(self) -> int:  # how far the window moves each step
        return SUBSAMPLING * HOP * self.chunk

    @property
    def window_samples(self) -> int:  # what one step reads
        return self.hop_samples + (OVERLAP_FRAMES - 1) * HOP + WINDOW

    @property
    def left_frames(self) -> int:  # L: the attention cache's length
        return self.chunk * self.left_chunks

    @property
    def chunk_ms(self) -> int:
        return self.hop_samples * 1000 // 16000


class ConformerStream(nn.Module):
    """The step above over a trained streaming Conformer's own modules (no weights of its own)."""

    input_names = ["audio", "valid_frames", "keys", "values", "cached_frames", "conv_history"]
    output_names = ["logits", "next_keys", "next_values", "next_cached_frames", "next_conv_history"]

    def __init__(self, model: Conformer, geometry: StreamGeometry):
        super().__init__()
        self.model, self.geometry = model, geometry

    def cache_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        cfg = self.model.cfg
        return {"keys": (cfg.n_layers, batch, self.geometry.left_frames, cfg.d_model),
                "values": (cfg.n_layers, batch, self.geometry.left_frames, cfg.d_model),
                "conv_history": (cfg.n_layers, batch, cfg.d_model, cfg.speech.conv_kernel - 1)}

    def forward(self, audio, valid_frames, keys, values, cached_frames, conv_history):
        m, C, L = self.model, self.geometry.chunk, self.geometry.left_frames
        full = torch.full_like(valid_frames, audio.shape[1])
        x = m.subsample(m.features(audio, full)[0])  # (B, C, d)
        valid = torch.arange(C, device=x.device)[None, :] < valid_frames[:, None]  # (B, C)
        cached = torch.arange(L, device=x.device)[None, :] >= L - cached_frames[:, None]  # (B, L): right-aligned
        idx = torch.arange(C, device=x.device)
        itself = torch.cat([torch.zeros(C, L, dtype=torch.bool, device=x.device), idx[:, None] == idx[None, :]], dim=1)
        keep = torch.cat([cached, valid], dim=1)[:, None, None, :] | itself  # (B, 1, C, L + C)
        cos, sin = rotary_tables(L + C, m.cfg.d_model // m.cfg.n_heads, x.device)
        rotary_q, rotary_k = (cos[L:], sin[L:]), (cos, sin)
        new_keys, new_values, new_history = [], [], []
        for i, block in enumerate(m.blocks):
            x, k, v, h = block.stream(x, keep, valid.to(x.dtype), rotary_q, rotary_k, keys[i], values[i], conv_history[i])
            new_keys.append(k)
            new_values.append(v)
            new_history.append(h)
        next_cached = torch.clamp(cached_frames + valid_frames, max=L)
        return (m.ctc_head(x), torch.stack(new_keys), torch.stack(new_values), next_cached, torch.stack(new_history))
