"""Distillation of image and speech models: a smaller ViT from a ViT, a smaller Conformer from a Conformer.

The student learns the teacher's softened outputs (KL at temperature T, scaled by T², Hinton et
al. 2015) and the task's own targets: class labels for the ViT, CTC on the transcript for the
Conformer, where the KL is taken per frame over the frames both models keep (they share the front
end and the 4x subsampling, so frame t of one is frame t of the other). The teacher sees the
clean input, the student the augmented one (image augmentation; SpecAugment on the shared
features). The same soft-target loss (losses.py), loop (training/loop.py), checkpoint after every
epoch and distillation.json record (output.py) as text distillation.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from edgeformer.runtime.artifacts import check_output_dir

from edgeformer.modeling import checkpoint
from edgeformer.modeling.models.audio import spec_augment
from edgeformer.modeling.config import ConfigError
from edgeformer.modeling.distillation.text import DistillConfig, DistillResult
from edgeformer.modeling.distillation.losses import soft_loss
from edgeformer.modeling.distillation.output import epoch_writer, teacher_record
from edgeformer.modeling.training.loop import TrainConfig, fit
from edgeformer.modeling.models.transformer import Transformer


class MediaDistillResult(DistillResult):
    @property
    def retention(self) -> float:
        """Student accuracy over the teacher's; for CER, the same of 1 - CER (the share of characters right)."""
        if self.metric == "cer":
            return (1.0 - self.student_metric) / max(1e-9, 1.0 - self.teacher_metric)
        return self.student_metric / max(1e-9, self.teacher_metric)


def _vit_job(teacher: Transformer, preset: str, layers: int | None, tc: TrainConfig, dc: DistillConfig):
    from edgeformer.modeling.training.vision import ImageClassificationTask, digits, vit_config

    data = digits()
    cfg = vit_config(preset, data, teacher.cfg.vision.patch_size, **({"n_layers": layers} if layers else {}))
    torch.manual_seed(tc.seed)
    student = Transformer(cfg)
    task = ImageClassificationTask(data, tc)

    def step(runner, x, y):
        with torch.no_grad():
            t = teacher(pixel_values=x)["logits"]
        s = runner(pixel_values=x)["logits"]
        soft, hard = soft_loss(s, t, dc.temperature), F.cross_entropy(s, y)
        return {"loss": dc.soft_weight * soft + dc.hard_weight * hard, "soft": soft, "hard": hard}

    return "digits", "eval_accuracy", student, task, step


def _conformer_job(teacher, preset: str, layers: int | None, tc: TrainConfig, dc: DistillConfig, task_name: str | None):
    from edgeformer.modeling.models.conformer import Conformer, random_context
    from edgeformer.modeling.training.speech import SpeechTask, conformer_config, ctc_loss
    from edgeformer.tasks.speech_tasks import speech_task

    t_cfg = teacher.cfg
    cfg = conformer_config(preset, t_cfg.speech.alphabet, t_cfg.labels, streaming=t_cfg.speech.streaming,
                           **({"n_layers": layers} if layers else {}))  # the teacher's task, head and streaming
    torch.manual_seed(tc.seed)
    student = Conformer(cfg)
    data = speech_task(task_name)  # the teacher's own task
    task = SpeechTask(cfg, tc, data=data)

    def step(runner, waves, lengths, targets, target_lengths):
        features, frames = runner.features(waves, lengths)
        context = random_context() if cfg.speech.streaming else None  # both read the same chunked context
        with torch.no_grad():
            t = teacher.encode(features, frames, context)["logits"]
        out = runner.encode(spec_augment(features, frames, None), frames, context)
        if cfg.num_labels:  # a keyword spotter: one row of logits per clip
            soft, hard = soft_loss(out["logits"], t, dc.temperature), F.cross_entropy(out["logits"], targets)
        else:
            valid = torch.arange(t.shape[1])[None, :] < out["logit_lengths"][:, None]  # (B, T')
            soft = soft_loss(out["logits"][valid], t[valid], dc.temperature)
            hard = ctc_loss(out, targets, target_lengths)
        return {"loss": dc.soft_weight * soft + dc.hard_weight * hard, "soft": soft, "hard": hard}

    return data.name, "eval_accuracy" if cfg.num_labels else "eval_cer", student, task, step


def distill_media_checkpoint(teacher_path: str | os.PathLike, preset: str, out: str | os.PathLike, dc: DistillConfig | None = None,
                             tc: TrainConfig | None = None, layers: int | None = None, overwrite: bool = False,
                             progress: bool = True) -> DistillResult:
    """`edgeformer distill` for a ViT or Conformer teacher: a student of preset `preset` (and `layers` blocks)."""
    dc, tc = dc or DistillConfig(), tc or TrainConfig()
    check_output_dir(out, overwrite, sources=(teacher_path,))
    teacher_path = Path(teacher_path)
    teacher = checkpoint.load(teacher_path).eval()
    if teacher.cfg.arch == "conformer":
        task_name, metric, student, task, step = _conformer_job(teacher, preset, layers, tc, dc,
                                                                checkpoint.recorded_task(teacher_path))
    elif teacher.cfg.vision:
        task_name, metric, student, task, step = _vit_job(teacher, preset, layers, tc, dc)
    else:
        raise ConfigError(f"teacher {teacher_path} is neither a ViT nor a Conformer")
    teacher_metric = task.evaluate(teacher)[metric]
    result = MediaDistillResult(task_name, metric.removeprefix("eval_"), teacher_metric, float("nan"), data=task_name)
    write = epoch_writer(out, student, teacher_record(teacher_path, teacher), asdict(dc), task_name, tc, overwrite)

    def after_epoch(run, echo=None) -> None:
        if echo is not None:
            echo(f"epoch {run.history[-1]['epoch']}: student {metric} {run.history[-1][metric]:.4g} (teacher {teacher_metric:.4g})")
        result.history, result.seconds, result.student_metric = run.history, run.seconds, run.history[-1][metric]
        write(result)

    fit(student, step, task.batches, task.steps, tc, evaluate=lambda: task.evaluate(student), on_epoch=after_epoch,
        progress=progress, label="distilling")
    return result
