"""The gated feed-forward of the Llama family (SwiGLU: Shazeer, 2020, "GLU Variants Improve Transformer").

    x (B, T, C) ─► gate (B, T, F) ─► act ─┐
                └► up   (B, T, F) ────────┴─► * ─► down ─► (B, T, C)

Three matrices instead of two, so a gated model's d_ff is usually about 2/3 of a plain one's for
the same parameter count. With activation silu this is Llama's, Qwen2's and Mistral's MLP.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgeformer.modeling.config import ModelConfig

ACTIVATIONS = {"gelu": lambda: nn.GELU(), "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "relu": lambda: nn.ReLU(),
               "silu": lambda: nn.SiLU()}


class GatedFeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.linear_bias)
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.linear_bias)
        self.act = ACTIVATIONS[cfg.activation]()
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.linear_bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.act(self.gate(x)) * self.up(x)))  # (B, T, C)
