"""The normalisations a block can use: LayerNorm (the 2017 paper, BERT, GPT-2) or RMSNorm (Llama).

RMSNorm scales each vector by the reciprocal of its root mean square and a learned gain: no mean
is subtracted and there is no bias. It is written as plain arithmetic, so the exported graph is
Pow/ReduceMean/Sqrt/Div/Mul in every opset and runs on every runtime edgeformer targets.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgeformer.modeling.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., C): x / sqrt(mean(x^2) + eps) * weight."""
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(cfg: ModelConfig) -> nn.Module:
    """The block and final norm of `cfg` (norm_type); the embeddings' norm (BERT) is always a LayerNorm."""
    if cfg.norm_type == "rmsnorm":
        return RMSNorm(cfg.d_model, cfg.layer_norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
