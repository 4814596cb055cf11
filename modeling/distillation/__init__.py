"""Distillation: a smaller student trained to copy a teacher checkpoint.

`distill_checkpoint` is the one entry point (`edgeformer distill`, the demo, the benchmarks): it reads
the teacher's config and hands the job to the family that knows it.

    text teacher (encoder, decoder)   text.py    soft targets, labels, hidden states, attention, embeddings
    ViT or Conformer teacher          media.py   soft targets and the built-in task's own targets

The losses are in losses.py, the student's config, checks and start in student.py, what is written
after every epoch in output.py.
"""

from __future__ import annotations

import os
from typing import Any

from edgeformer.modeling.checkpoint import read_config
from edgeformer.modeling.config import ConfigError, ModelConfig
from edgeformer.modeling.distillation.media import distill_media_checkpoint
from edgeformer.modeling.distillation.text import DistillConfig, DistillResult, distill_text_checkpoint, parse_layer_map
from edgeformer.modeling.training.loop import TrainConfig

__all__ = ["DistillConfig", "DistillResult", "distill_checkpoint", "parse_layer_map"]


def is_media_teacher(cfg: ModelConfig) -> bool:
    """A ViT or Conformer: distilled on its own built-in task, from logits and task targets."""
    return cfg.arch == "conformer" or cfg.vision is not None


def distill_checkpoint(
    teacher_path: str | os.PathLike,
    student: str | os.PathLike | ModelConfig | dict,
    out: str | os.PathLike,
    task: str | None = None,
    data_file: str | os.PathLike | None = None,
    dc: DistillConfig | None = None,
    tc: TrainConfig | None = None,
    layers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> DistillResult:
    """Distil the checkpoint at `teacher_path` into a student of size `student` (a preset, a config
    file, a ModelConfig or its dict) written to `out`, a checkpoint after every epoch."""
    dc = dc or DistillConfig()
    if not is_media_teacher(read_config(teacher_path)):
        return distill_text_checkpoint(teacher_path, student, out, task, data_file, dc, tc, layers, overwrite,
                                       progress, overrides)
    text_only = [name for name, given in (("task", task), ("data", data_file), ("hidden-state loss", dc.hidden),
                                          ("attention loss", dc.attention), ("layer map", dc.layer_map),
                                          ("student config overrides", overrides)) if given]
    if text_only:
        raise ConfigError(f"a ViT or Conformer teacher distils on its built-in task from logits and targets; "
                          f"{', '.join(text_only)} apply to text teachers only")
    if not isinstance(student, str):
        raise ConfigError(f"a ViT or Conformer student is given by preset name (tiny, small, base); got {type(student).__name__}")
    return distill_media_checkpoint(teacher_path, student, out, dc, tc, layers, overwrite, progress)
