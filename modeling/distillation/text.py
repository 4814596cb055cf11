"""Distillation: train a smaller student to copy a teacher (DistilBERT- and TinyBERT-style).

Losses, each switchable, summed with their weights (`DistillConfig`):
- soft targets: KL(teacher || student) between temperature-softened distributions, times T^2
  (Hinton et al.), for classifiers (per example) and language models (per token);
- hard labels: cross-entropy on the task's labels (classification) or next tokens (LM);
- hidden states: mean squared error between student hidden states and a mapped subset of the
  teacher's (index 0 = embedding output, i = output of block i), through a learned projection
  when the widths differ (TinyBERT);
- attention: mean squared error between attention scores before softmax of mapped layers (TinyBERT;
  averaged over heads when the head counts differ);
- sentence embeddings (models without a head): cosine or MSE between the pooled, L2-normalised
  embeddings of student and teacher, which needs no labels.
Every loss is a mean over examples, so the sharded batches of DistributedDataParallel add up to
the single-process update exactly (modeling/training/distributed.py).

A student whose shapes match the teacher's starts from teacher blocks spread evenly from the first
to the last: every other one at half the depth (DistilBERT).

The losses are in losses.py, the student's config, checks and start in student.py; the
epochs run through the training loop (training/loop.py), the batches come from the tasks (training/tasks.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgeformer.runtime.artifacts import check_output_dir

from edgeformer.modeling import checkpoint
from edgeformer.modeling.config import ConfigError, ModelConfig
from edgeformer.modeling.training.data import (TASKS, ClassificationData, CorpusData, DataError, TextData, load_data_file, load_task, load_texts,
                   padded_batches)
from edgeformer.modeling.training.distributed import current as distributed_context
from edgeformer.modeling.distillation.losses import StudentStep, distillation_losses, pooled
from edgeformer.modeling.distillation.output import DISTILLATION_FILE, epoch_writer, teacher_record  # noqa: F401  (DISTILLATION_FILE: re-exported)
from edgeformer.modeling.training.loop import Echo, TrainConfig, TrainResult, fit
from edgeformer.modeling.models.transformer import Transformer
from edgeformer.modeling.distillation.student import (METRICS, can_init_from_teacher, check_compatible, init_from_teacher, resolve_layer_map,
                      student_config)
from edgeformer.modeling.training.tasks import task_for

EMBEDDING_LOSSES = ("cosine", "mse")
INITS = ("auto", "teacher", "random")


@dataclass
class DistillConfig:
    temperature: float = 2.0
    soft_weight: float = 1.0  # KL on softened logits (classification, LM)
    hard_weight: float = 1.0  # cross-entropy on labels / next tokens (0: unlabelled)
    hidden: bool = False  # hidden-state loss over `layer_map`
    hidden_weight: float = 1.0
    attention: bool = False  # attention-score loss over the block pairs of `layer_map`
    attention_weight: float = 1.0
    layer_map: list[tuple[int, int]] | None = None  # (student, teacher) hidden-state indices; None: spread evenly
    embedding_loss: str = "cosine"  # sentence-embedding models: cosine | mse on normalised pooled vectors
    embedding_weight: float = 1.0
    init: str = "auto"  # auto: from teacher blocks (teacher_layers_for) when the shapes match; teacher; random

    def __post_init__(self):
        if not self.temperature > 0:
            raise ConfigError(f"temperature={self.temperature}; expected a positive number")
        for name in ("soft_weight", "hard_weight", "hidden_weight", "attention_weight", "embedding_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)}; expected a weight >= 0")
        if self.embedding_loss not in EMBEDDING_LOSSES:
            raise ConfigError(f"embedding_loss={self.embedding_loss!r}; expected one of: {', '.join(EMBEDDING_LOSSES)}")
        if self.init not in INITS:
            raise ConfigError(f"init={self.init!r}; expected one of: {', '.join(INITS)}")
        if self.layer_map is not None:
            self.layer_map = [tuple(int(i) for i in pair) for pair in self.layer_map]

    def loss_weights(self) -> dict[str, float]:
        """Each loss's weight in the sum that is minimised, by the names distillation_losses gives them."""
        return {"soft": self.soft_weight, "hard": self.hard_weight, "hidden": self.hidden_weight,
                "attention": self.attention_weight, "embedding": self.embedding_weight}


def parse_layer_map(text: str) -> list[tuple[int, int]]:
    """'1:2,2:4' -> [(1, 2), (2, 4)]: student hidden state 1 learns teacher hidden state 2, ..."""
    pairs = []
    for item in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+):(\d+)", item)
        if not m:
            raise ConfigError(f"layer map item {item!r}; expected STUDENT:TEACHER pairs such as '1:2,2:4'")
        pairs.append((int(m.group(1)), int(m.group(2))))
    return pairs


@dataclass
class DistillResult:
    task: str
    metric: str
    teacher_metric: float
    student_metric: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    init_layers: list[int] | None = None  # teacher blocks the student started from
    layer_map: list[tuple[int, int]] = field(default_factory=list)
    data: str = ""  # the task name or file the student learned on

    @property
    def retention(self) -> float:
        """Student metric as a share of the teacher's (inverted for perplexity: lower is better)."""
        if METRICS[self.task][1]:
            return self.student_metric / self.teacher_metric
        return self.teacher_metric / self.student_metric

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "retention": self.retention}


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def embedding_cosines(student: Transformer, teacher: Transformer, ids: list[list[int]], pad_id: int) -> torch.Tensor:
    """Cosine between student and teacher sentence embeddings, one per text."""
    student.eval()
    dev = next(student.parameters()).device
    out = []
    for x, m, _ in padded_batches(ids, None, 64, pad_id, None):
        x, m = x.to(dev), m.to(dev)
        s = pooled(student, student(x, m)["last_hidden_state"], m)
        t = pooled(teacher, teacher(x, m)["last_hidden_state"], m)
        out.append((s * t).sum(-1).cpu())
    return torch.cat(out)


def _evaluate(task, model: Transformer, teacher: Transformer, kind: str) -> dict[str, float]:
    if kind == "embedding":
        cos = embedding_cosines(model, teacher, task.eval_ids, model.cfg.pad_id)
        return {"eval_cosine": float(cos.mean()), "eval_min_cosine": float(cos.min())}
    return task.evaluate(model)


def _metric(kind: str, metrics: dict[str, float]) -> float:
    return metrics[{"classification": "eval_accuracy", "causal-lm": "eval_perplexity", "embedding": "eval_cosine"}[kind]]


# ---------------------------------------------------------------- the job


def distill(
    teacher: Transformer,
    student: Transformer,
    data: ClassificationData | CorpusData | TextData,
    tok,
    dc: DistillConfig | None = None,
    tc: TrainConfig | None = None,
    progress: bool = True,
    on_epoch=None,
) -> DistillResult:
    """Train `student` in place to copy `teacher` on `data`; evaluate both on the held-out part each epoch.

    `on_epoch(result)` runs after each epoch (the checkpoint writer). Under torchrun the student
    runs under DistributedDataParallel.
    """
    dc, tc = dc or DistillConfig(), tc or TrainConfig()
    check_compatible(teacher.cfg, student.cfg)
    pairs = resolve_layer_map(dc.layer_map, student.cfg, teacher.cfg, dc.attention)
    if (dc.hidden or dc.attention) and (student.cfg.reversible or teacher.cfg.reversible):
        raise ConfigError("hidden-state and attention losses read each block's output, which reversible blocks do not "
                          "keep; expected --no-hidden-loss and --no-attention-loss with a reversible model")
    kind = student.cfg.task
    if (kind == "embedding") != isinstance(data, TextData):
        raise ConfigError(f"a {kind} model needs {'unlabelled text' if kind == 'embedding' else 'its task data'}, "
                          f"not {type(data).__name__}")
    torch.manual_seed(tc.seed)
    task = task_for(data, tok, student.cfg, tc)
    projections = nn.ModuleDict()
    if dc.hidden and student.cfg.d_model != teacher.cfg.d_model:
        for s, _ in pairs:
            projections[f"{s}"] = nn.Linear(student.cfg.d_model, teacher.cfg.d_model)
    teacher.eval().to(distributed_context().device)
    teacher_metrics = _evaluate(task, teacher, teacher, kind)
    result = DistillResult(kind, METRICS[kind][0], _metric(kind, teacher_metrics), float("nan"), layer_map=pairs)
    weights = dc.loss_weights()

    def step(runner, x, m, y):
        losses = distillation_losses(runner, student, projections, teacher, x, m, y, dc, pairs)
        return {"loss": sum(weights[k] * v for k, v in losses.items()), **losses}

    def evaluate():
        return {**_evaluate(task, student, teacher, kind), **{f"teacher_{k}": v for k, v in teacher_metrics.items()}}

    def after_epoch(run: TrainResult, echo: Echo) -> None:
        result.history, result.seconds = run.history, run.seconds
        result.student_metric = _metric(kind, run.final)
        echo(f"epoch {run.final['epoch']}: {result.metric} student {result.student_metric:.4g} teacher "
             f"{result.teacher_metric:.4g} (retention {result.retention:.3f})  "
             f"train loss {run.final['train_loss']:.4g}", soft_wrap=True)
        if on_epoch is not None:
            on_epoch(result)

    steps = min(task.steps, tc.steps_per_epoch or task.steps)  # steps_per_epoch caps every task here
    run = fit(StudentStep(student, projections), step, task.batches, steps, tc, evaluate=evaluate,
              on_epoch=after_epoch, progress=progress, label="distilling")
    result.seconds = run.seconds
    return result


def prepare_data(teacher: ModelConfig, task: str | None, data_file: str | os.PathLike | None, recorded_task: str | None):
    """The data for the teacher's task, checked against the teacher's labels."""
    if task and data_file:
        raise ConfigError("give --task or --data, not both")
    if teacher.task == "embedding":
        return load_texts(task, data_file)
    if data_file:
        data, name = load_data_file(data_file, teacher.arch), f"file:{Path(data_file).name}"
    else:
        name = task or (recorded_task if recorded_task in TASKS else None) or ("stdlib-topics" if teacher.arch == "encoder" else "pydoc-lm")
        data = load_task(name, teacher.arch)
    if teacher.task == "classification":
        if not isinstance(data, ClassificationData) or list(data.labels) != list(teacher.labels or []):
            got = list(data.labels) if isinstance(data, ClassificationData) else "no labels"
            raise DataError(f"the data's labels {got} are not the teacher's {teacher.labels}; expected the task it was trained on")
    elif not isinstance(data, CorpusData):
        raise DataError(f"a {teacher.task} teacher needs running text, not labelled examples")
    return data, name


def distill_text_checkpoint(
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
    """`edgeformer distill` for a text teacher: every check first, then distillation, a checkpoint after every epoch.

    `overrides` are student config fields set on top of the student's size (e.g. attention_kind="local").

    The checkpoint records the teacher (path and weights hash) and the recipe in distillation.json.
    """
    dc, tc = dc or DistillConfig(), tc or TrainConfig()
    check_output_dir(out, overwrite, sources=(teacher_path,))
    teacher_path = Path(teacher_path)
    teacher = checkpoint.load(teacher_path)
    tok = checkpoint.load_tokenizer(teacher_path)
    if tok is None:
        raise ConfigError(f"teacher {teacher_path} has no tokenizer.json; the student reads text with the teacher's tokenizer")
    cfg = student_config(teacher.cfg, student, layers, overrides)
    pairs = resolve_layer_map(dc.layer_map, cfg, teacher.cfg, dc.attention)
    reason = can_init_from_teacher(cfg, teacher.cfg)
    if dc.init == "teacher" and reason:
        raise ConfigError(f"cannot start the student from teacher layers: {reason}")
    recorded = checkpoint.recorded_task(teacher_path)
    data, task_name = prepare_data(teacher.cfg, task, data_file, recorded)
    torch.manual_seed(tc.seed)
    model = Transformer(cfg)
    init_layers = init_from_teacher(model, teacher) if dc.init != "random" and not reason else None
    recipe = {**asdict(dc), "layer_map": [list(p) for p in pairs], "init_layers": init_layers,
              "init_note": reason if dc.init != "random" and reason else None}
    write = epoch_writer(out, model, teacher_record(teacher_path, teacher), recipe, task_name, tc, overwrite, tok)
    result = distill(teacher, model, data, tok, dc, tc, progress=progress, on_epoch=write)
    result.init_layers, result.data = init_layers, task_name
    return result
