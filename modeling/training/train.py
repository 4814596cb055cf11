"""Training: a model on prepared data, through the one training loop (loop.py).

`train` works on a model and prepared data; `train_checkpoint` is the whole `edgeformer train`
job (data, tokenizer, model, training, atomic checkpoint). AdamW, linear warm-up then cosine decay,
gradient clipping and evaluation every epoch are the loop's; the batches, loss and evaluation are
the task's (tasks.py).

What the user leaves out (preset, epochs, learning rate, batch, vocabulary) comes from the task's
recipe (edgeformer.tasks.defaults): the settings its documented result was measured with.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from edgeformer.runtime.artifacts import check_output_dir
from edgeformer.runtime.tokenizer import TextTokenizer
from edgeformer.tasks.defaults import task_defaults

from edgeformer.modeling.build import build_model
from edgeformer.modeling.checkpoint import TRAINING_FILE, save
from edgeformer.modeling.config import ConfigError, ModelConfig
from edgeformer.modeling.training.data import DEFAULT_TASK, ClassificationData, load_data_file, load_task
from edgeformer.modeling.training.distributed import current as distributed_context
from edgeformer.modeling.training.loop import TrainConfig, TrainResult, fit, lr_lambda
from edgeformer.modeling.models.transformer import Transformer
from edgeformer.modeling.training.tasks import task_for
from edgeformer.modeling.training.tokenizer import train_tokenizer

__all__ = ["TrainConfig", "TrainResult", "lr_lambda", "prepare", "train", "train_checkpoint", "training_config"]


def training_config(arch: str, task: str | None = None, data_file: str | os.PathLike | None = None,
                    **given: Any) -> TrainConfig:
    """The TrainConfig for a job: the task's recipe, then every field in `given` (the user's) over it."""
    return TrainConfig(**{**task_defaults(arch, task, data_file).train_fields(), **given})


def train(model: Transformer, data, tok: TextTokenizer, tc: TrainConfig, progress: bool = True) -> TrainResult:
    """Train `model` in place on `data`; evaluate on its held-out part after every epoch.

    Under torchrun the model runs under DistributedDataParallel (modeling/training/distributed.py): each
    rank computes on its rows of the same global batch.
    """
    torch.manual_seed(tc.seed)
    task = task_for(data, tok, model.cfg, tc)
    return fit(model, lambda runner, x, m, y: {"loss": task.loss(runner, x, m, y)}, task.batches, task.steps, tc,
               evaluate=lambda: task.evaluate(model), progress=progress)


def prepare(arch: str, task: str | None, data_file: str | os.PathLike | None):
    if task and data_file:
        raise ConfigError("give --task or --data, not both")
    if data_file:
        return load_data_file(data_file, arch), f"file:{Path(data_file).name}"
    name = task or DEFAULT_TASK[arch]
    return load_task(name, arch), name


def train_checkpoint(
    out: str | os.PathLike,
    arch: str,
    preset: str | None = None,
    task: str | None = None,
    data_file: str | os.PathLike | None = None,
    tc: TrainConfig | None = None,
    vocab_size: int | None = None,
    overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """The `edgeformer train` job: build data, tokenizer and model, train, write the checkpoint.

    `preset`, `tc` and `vocab_size` left as None, and the model fields `overrides` leaves out, are the task's.
    """
    recipe = task_defaults(arch, task, data_file)
    preset = preset or recipe.preset
    tc = tc or training_config(arch, task, data_file)
    vocab_size = vocab_size or recipe.vocab_size
    overrides = {**recipe.model, **(overrides or {})}
    if arch in ("vit", "conformer"):  # images and audio: no tokenizer, their own tasks
        from edgeformer.modeling.training.speech import train_conformer_checkpoint
        from edgeformer.modeling.training.vision import train_vit_checkpoint

        job = train_vit_checkpoint if arch == "vit" else train_conformer_checkpoint
        return job(out, preset, task, data_file, tc, overrides, overwrite, progress)
    check_output_dir(out, overwrite, sources=(data_file,) if data_file else ())  # before minutes of training
    data, task_name = prepare(arch, task, data_file)
    tok = train_tokenizer(data.texts, vocab_size)
    extra: dict[str, Any] = {"arch": arch, "vocab_size": tok.vocab_size, "pad_id": tok.pad_id}
    if isinstance(data, ClassificationData):
        extra.update(num_labels=len(data.labels), labels=list(data.labels))
    cfg = ModelConfig.from_preset(preset, **{**extra, **(overrides or {})})
    torch.manual_seed(tc.seed)
    model = build_model(cfg)
    result = train(model, data, tok, tc, progress=progress)
    meta = {"task": task_name, "preset": preset, "train_config": asdict(tc), "history": result.history,
            "seconds": round(result.seconds, 1), "parameters": model.num_parameters()}
    if distributed_context().is_main:
        save(model.cpu(), out, tokenizer=tok, records={TRAINING_FILE: meta}, overwrite=overwrite)
    distributed_context().barrier()
    return result
