"""Rotary positions (RoFormer): each head's query and key vectors are rotated by their position.

Pairs of channels (i, i + hd/2) turn by the angle pos * theta^(-2i/hd) (theta 10000 unless the model
says otherwise: rope_theta), so q.k depends on the two positions only through their difference.
Llama 3's scaling (rope_scaling=llama3) slows the frequencies whose wavelength exceeds the original
context divided by low_freq_factor by `factor`, keeps those shorter than it divided by
high_freq_factor, and blends linearly in between, so the model reads longer inputs than it was
first trained on. Nothing is added to the embeddings; the tables below are
derived from the config, so they are not saved in checkpoints. With a key/value cache the cached
keys are stored rotated and new tokens take the positions after them (position_ids).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3's frequency scaling (its config's rope_scaling with rope_type llama3)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_len: int = 8192


def frequencies(head_dim: int, base: float = 10000.0, scaling: RopeScaling | None = None) -> torch.Tensor:
    """(hd/2,) float64 angular frequencies base^(-2i/hd), Llama 3-scaled when `scaling` is given."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hd/2,)
    if scaling is None:
        return inv_freq
    low_wavelen = scaling.original_max_len / scaling.low_freq_factor  # longer than this: slowed by `factor`
    high_wavelen = scaling.original_max_len / scaling.high_freq_factor  # shorter than this: kept
    wavelen = 2 * math.pi / inv_freq
    smooth = (scaling.original_max_len / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    blended = (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    return torch.where((wavelen >= high_wavelen) & (wavelen <= low_wavelen), blended, scaled)


def rotary_tables(max_len: int, head_dim: int, base: float = 10000.0,
                  scaling: RopeScaling | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (max_len, head_dim): the angle of channel i and of channel i + hd/2 is the same.

    Computed in float64 and rounded once, so every process builds the same tables (see sinusoidal_table).
    """
    inv_freq = frequencies(head_dim, base, scaling)  # (hd/2,)
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (max_len, hd/2)
    angles = torch.cat([angles, angles], dim=-1)  # (max_len, hd)
    return angles.cos().float(), angles.sin().float()


class Rotary(nn.Module):
    def __init__(self, max_len: int, head_dim: int, base: float = 10000.0, scaling: RopeScaling | None = None):
        super().__init__()
        self.max_len, self.head_dim, self.base, self.scaling = max_len, head_dim, base, scaling
        cos, sin = rotary_tables(max_len, head_dim, base, scaling)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def derive_buffers(self) -> None:
        """The tables again, after the model was built on the meta device (modeling/build.py)."""
        self.cos, self.sin = rotary_tables(self.max_len, self.head_dim, self.base, self.scaling)

    def forward(self, T: int, position_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The angles of T tokens at 0..T-1, or at `position_ids` (B, T): (cos, sin), each (B or 1, T, 1, hd)."""
        if position_ids is None:
            return self.cos[:T][None, :, None, :], self.sin[:T][None, :, None, :]
        return self.cos[position_ids][:, :, None, :], self.sin[position_ids][:, :, None, :]


def rotary_for(cfg) -> Rotary:
    """The rotary positions of a ModelConfig: its head size, rope_theta and rope_scaling."""
    att = cfg.attention
    scaling = (RopeScaling(att.rope_factor, att.rope_low_freq_factor, att.rope_high_freq_factor, att.rope_original_max_len)
               if att.rope_scaling == "llama3" else None)
    return Rotary(cfg.max_len, cfg.head_dim, att.rope_theta, scaling)


def apply_rotary(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate queries or keys by `rope` = (cos, sin): (B, T, H, hd) by the angles of `Rotary`, or any layout
    the angles broadcast to (the Conformer's (B, H, T, hd))."""
    cos, sin = rope
    half = x.shape[-1] // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)  # (B, T, H, hd)
    return x * cos + turned * sin
