"""The distillation losses. Each is a mean over examples, so that the sharded batches of
DistributedDataParallel add up to the single-process update exactly (modeling/training/distributed.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeformer.modeling.models.transformer import Transformer, attention_keep_mask


def soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on softened distributions, times T^2; a mean over examples (or tokens)."""
    V = student_logits.shape[-1]
    s = F.log_softmax(student_logits.reshape(-1, V) / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.reshape(-1, V) / temperature, dim=-1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature**2


def hidden_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, C) each: squared error per real token, averaged per example, then over examples.

    Both sides pass through a LayerNorm without parameters first: a pre-norm residual stream grows
    with depth (measured: a squared error near 14 against soft and hard losses near 2-4 on the
    small preset), and unnormalised it swamps every other loss.
    """
    m = mask.to(student.dtype)  # (B, T)
    C = teacher.shape[-1]
    per_token = (F.layer_norm(student, (C,)) - F.layer_norm(teacher, (C,))).pow(2).mean(-1)  # (B, T)
    return ((per_token * m).sum(1) / m.sum(1).clamp(min=1.0)).mean()


def attention_loss(student: torch.Tensor, teacher: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(B, H, T, T) scores; over the query-key pairs attention may use; heads averaged if counts differ."""
    if student.shape[1] != teacher.shape[1]:
        student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    k = keep.to(student.dtype)  # (B, 1, T, T)
    per_pair = (student - teacher).pow(2) * k  # (B, H, T, T)
    return (per_pair.sum((1, 2, 3)) / (k.sum((1, 2, 3)) * student.shape[1]).clamp(min=1.0)).mean()


def pooled(model: Transformer, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, C) -> (B, C) pooled and L2-normalised: the sentence embedding the runtime's embed returns."""
    return F.normalize(model.pool(hidden, mask), dim=-1)


def embedding_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "cosine":
        return (1.0 - (student * teacher).sum(-1)).mean()
    return (student - teacher).pow(2).mean(-1).mean()


class StudentStep(nn.Module):
    """The student and its projections as one module, so DistributedDataParallel syncs them all."""

    def __init__(self, student: Transformer, projections: nn.ModuleDict):
        super().__init__()
        self.student, self.projections = student, projections

    def forward(self, x, m, attention_scores: bool):
        with self.student.capture(attention_scores) as seen:
            out = self.student(x, m)
        return out, seen


def distillation_losses(
    step: nn.Module, student: Transformer, projections: nn.ModuleDict, teacher: Transformer,
    x: torch.Tensor, m: torch.Tensor, y: torch.Tensor | None, dc, pairs: list[tuple[int, int]],
) -> dict[str, torch.Tensor]:
    """Each loss `dc` (a DistillConfig) enables, unweighted; `step` is `StudentStep` (maybe under DDP)."""
    with torch.no_grad():
        with teacher.capture(dc.attention) as t_seen:
            t_out = teacher(x, m)
    s_out, s_seen = step(x, m, dc.attention)
    losses: dict[str, torch.Tensor] = {}
    task = student.cfg.task
    if task == "embedding":
        s_vec = pooled(student, s_out["last_hidden_state"], m)
        t_vec = pooled(teacher, t_out["last_hidden_state"], m)
        losses["embedding"] = embedding_loss(s_vec, t_vec, dc.embedding_loss)
    else:
        if dc.soft_weight:
            losses["soft"] = soft_loss(s_out["logits"], t_out["logits"], dc.temperature)
        if dc.hard_weight and y is not None:
            logits = s_out["logits"]
            losses["hard"] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    if dc.hidden:
        terms = [hidden_loss(projections[f"{s}"](s_seen["hidden_states"][s]) if f"{s}" in projections
                             else s_seen["hidden_states"][s], t_seen["hidden_states"][t], m) for s, t in pairs]
        losses["hidden"] = torch.stack(terms).mean()
    if dc.attention:
        keep = attention_keep_mask(m, student.cfg.causal)
        terms = [attention_loss(s_seen["attention_scores"][s - 1], t_seen["attention_scores"][t - 1], keep)
                 for s, t in pairs if s and t]
        losses["attention"] = torch.stack(terms).mean()
    return losses
