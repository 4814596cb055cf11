"""The student of a distillation: its config from the teacher's, the checks, the layer map, its start.

A preset gives a student its size; everything that makes it read the teacher's tokens and answer
the teacher's task (vocabulary, labels, norm, positions, ...) comes from the teacher.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from edgeformer.modeling.checkpoint import config_from_json
from edgeformer.modeling.config import ConfigError, ModelConfig
from edgeformer.modeling.models.transformer import Transformer
from edgeformer.modeling.presets import PRESETS

# task -> (metric, higher is better): the tasks distillation covers
METRICS = {"classification": ("accuracy", True), "causal-lm": ("perplexity", False), "embedding": ("cosine to teacher", True)}
# The style of a model comes from its teacher; a preset only says how big the student is.
PRESET_SIZES = ("d_model", "n_heads", "n_layers", "d_ff")


def student_config(teacher: ModelConfig, student: str | os.PathLike | ModelConfig | dict, layers: int | None = None,
                   overrides: dict | None = None) -> ModelConfig:
    """The student's config: a preset's sizes in the teacher's style, or a full config (file or dict),
    then `overrides` (fields such as attention_kind, window, max_len)."""
    if isinstance(student, ModelConfig):
        cfg = student
    elif isinstance(student, dict):
        cfg = ModelConfig.from_dict(student)
    elif str(student) in PRESETS:
        sizes = {k: v for k, v in PRESETS[str(student)].items() if k in PRESET_SIZES}
        cfg = teacher.with_fields(**sizes)
    elif str(student).endswith(".json"):
        path = Path(student)
        if not path.is_file():
            raise ConfigError(f"student config {path} does not exist; expected a ModelConfig JSON file")
        try:
            raw = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path} is not valid JSON ({e}); expected a ModelConfig object") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} holds a JSON {type(raw).__name__}; expected a ModelConfig object")
        cfg = config_from_json(raw, str(path))
    else:
        raise ConfigError(f"unknown student {student!r}; expected a preset ({', '.join(PRESETS)}) or a config .json file")
    if layers is not None:
        cfg = cfg.with_fields(n_layers=layers)
    if overrides:
        cfg = cfg.with_fields(**overrides)
    check_compatible(teacher, cfg)
    return cfg


def check_compatible(teacher: ModelConfig, student: ModelConfig) -> None:
    """A student must read the teacher's tokens and answer the teacher's task."""
    if teacher.vision or student.vision:
        raise ConfigError("distillation reads text; image models (image_size > 0) are not supported")
    if teacher.task not in METRICS:
        raise ConfigError(f"distillation covers {', '.join(METRICS)} teachers, not {teacher.task}")
    if student.vocab_size != teacher.vocab_size:
        raise ConfigError(f"student vocab_size {student.vocab_size} differs from the teacher's {teacher.vocab_size}; "
                          "a student must share the teacher's tokenizer")
    if student.type_vocab_size != teacher.type_vocab_size:
        raise ConfigError(f"student type_vocab_size {student.type_vocab_size} differs from the teacher's {teacher.type_vocab_size}")
    if student.task != teacher.task:
        raise ConfigError(f"the teacher is a {teacher.task} model but the student is a {student.task} model; "
                          "expected the same task")
    if student.num_labels != teacher.num_labels or (student.labels or None) != (teacher.labels or None):
        raise ConfigError(f"student labels {student.labels} differ from the teacher's {teacher.labels}")
    if student.task == "embedding" and student.d_model != teacher.d_model:
        raise ConfigError(f"an embedding student replaces the teacher's vectors, so its width must be the teacher's "
                          f"{teacher.d_model}, not {student.d_model}")


def resolve_layer_map(layer_map: list[tuple[int, int]] | None, student: ModelConfig, teacher: ModelConfig,
                      attention: bool = False) -> list[tuple[int, int]]:
    """The (student, teacher) hidden-state pairs; by default student block i against teacher block i*T/S."""
    S, T = student.n_layers, teacher.n_layers
    pairs = layer_map or [(i, round(i * T / S)) for i in range(1, S + 1)]
    for s, t in pairs:
        if not 0 <= s <= S:
            raise ConfigError(f"layer map names student layer {s}, but the student has layers 0..{S} (0 = embeddings)")
        if not 0 <= t <= T:
            raise ConfigError(f"layer map names teacher layer {t}, but the teacher has layers 0..{T} (0 = embeddings)")
    if attention and not any(s and t for s, t in pairs):
        raise ConfigError("the attention loss needs a layer-map pair of two blocks (indices >= 1)")
    return pairs


def teacher_layers_for(student: ModelConfig, teacher: ModelConfig) -> list[int]:
    """The teacher blocks a student of S blocks starts from: spread evenly from the first to the last.

    For half the depth that is every other block, ending on the teacher's last one, as DistilBERT
    took blocks 0, 2, 4, 7, 9, 11 of BERT's 12. The last block matters: on all-MiniLM-L6-v2, a
    3-block student from blocks 0, 2, 4 started at a mean embedding cosine of 0.35 to the teacher on
    held-out sentences; from 0, 3, 5 at 0.60. A one-block student takes the first block.
    """
    S, T = student.n_layers, teacher.n_layers
    if S == 1:
        return [0]
    return [int(i * (T - 1) / (S - 1) + 0.5) for i in range(S)]


def can_init_from_teacher(student: ModelConfig, teacher: ModelConfig) -> str | None:
    """None when the student can take the teacher's weights, else the reason it cannot."""
    for name in ("d_model", "n_heads", "d_ff", "norm", "activation", "positional", "embedding_norm", "pooler"):
        if getattr(student, name) != getattr(teacher, name):
            return f"{name} differs ({getattr(student, name)} vs the teacher's {getattr(teacher, name)})"
    if student.positional == "learned" and student.max_len > teacher.max_len:
        return f"the student's learned positions go further ({student.max_len}) than the teacher's ({teacher.max_len})"
    if student.n_layers > teacher.n_layers:
        return f"the student has more layers ({student.n_layers}) than the teacher ({teacher.n_layers})"
    return None


@torch.no_grad()
def init_from_teacher(student: Transformer, teacher: Transformer) -> list[int]:
    """Copy embeddings, heads and the blocks `teacher_layers_for` picks into `student`; returns them."""
    picked = teacher_layers_for(student.cfg, teacher.cfg)
    source = teacher.state_dict()
    for name, tensor in student.state_dict().items():
        src = name
        if name.startswith("blocks."):
            i, rest = name[len("blocks."):].split(".", 1)
            src = f"blocks.{picked[int(i)]}.{rest}"
        if src not in source:  # the student's own attention weights (Linformer's E, F; LSH rotations) keep their start
            continue
        value = source[src]
        if name == "embed.pos.weight":
            value = value[: tensor.shape[0]]
        tensor.copy_(value)
    return picked
