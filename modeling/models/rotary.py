"""Rotary positions (RoFormer): each head's query and key vectors are rotated by their position.

Pairs of channels (i, i + hd/2) turn by the angle pos * 10000^(-2i/hd), so q.k depends on the two
positions only through their difference. Nothing is added to the embeddings; the tables below are
derived from the config, so they are not saved in checkpoints. With a key/value cache the cached
keys are stored rotated and new tokens take the positions after them (position_ids).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def rotary_tables(max_len: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (max_len, head_dim): the angle of channel i and of channel i + hd/2 is the same.

    Computed in float64 and rounded once, so every process builds the same tables (see sinusoidal_table).
    """
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hd/2,)
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (max_len, hd/2)
    angles = torch.cat([angles, angles], dim=-1)  # (max_len, hd)
    return angles.cos().float(), angles.sin().float()


class Rotary(nn.Module):
    def __init__(self, max_len: int, head_dim: int):
        super().__init__()
        self.max_len, self.head_dim = max_len, head_dim
        cos, sin = rotary_tables(max_len, head_dim)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def derive_buffers(self) -> None:
        """The tables again, after the model was built on the meta device (modeling/build.py)."""
        self.cos, self.sin = rotary_tables(self.max_len, self.head_dim)

    def forward(self, T: int, position_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The angles of T tokens at 0..T-1, or at `position_ids` (B, T): (cos, sin), each (B or 1, T, 1, hd)."""
        if position_ids is None:
            return self.cos[:T][None, :, None, :], self.sin[:T][None, :, None, :]
        return self.cos[position_ids][:, :, None, :], self.sin[position_ids][:, :, None, :]


def apply_rotary(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate queries or keys by `rope` = (cos, sin): (B, T, H, hd) by the angles of `Rotary`, or any layout
    the angles broadcast to (the Conformer's (B, H, T, hd))."""
    cos, sin = rope
    half = x.shape[-1] // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)  # (B, T, H, hd)
    return x * cos + turned * sin
