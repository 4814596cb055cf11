"""What a distillation writes, for text, image and speech students alike: the teacher's record, and
the student checkpoint after every epoch with training.json and distillation.json beside it."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from edgeformer.runtime.artifacts import sha256_file

from edgeformer.modeling.build import build_model, materialize
from edgeformer.modeling.checkpoint import TRAINING_FILE, WEIGHTS_FILE, save
from edgeformer.modeling.training.distributed import current as distributed_context

DISTILLATION_FILE = "distillation.json"


def teacher_record(path: Path, teacher: nn.Module) -> dict[str, Any]:
    """Which teacher a student learned from: its path, the hash of its weights, its config and size."""
    return {"path": str(path.resolve()), "sha256": sha256_file(path / WEIGHTS_FILE), "config": teacher.cfg.to_dict(),
            "parameters": teacher.num_parameters()}


def epoch_writer(out: str | os.PathLike, student: nn.Module, teacher: dict[str, Any], recipe: dict[str, Any], task: str,
                 tc, overwrite: bool, tokenizer=None) -> Callable[[Any], None]:
    """A function of the DistillResult so far that writes the student checkpoint (the main process only
    under torchrun); the first call overwrites `out` only when `overwrite`, later ones replace the last epoch's."""
    ddp = distributed_context()
    first = [True]

    def write(result) -> None:
        if ddp.is_main:
            meta = {"task": task, "distilled_from": teacher["path"], "train_config": asdict(tc),
                    "history": result.history, "seconds": round(result.seconds, 1), "parameters": student.num_parameters()}
            record = {"teacher": teacher, "recipe": recipe, "train_config": asdict(tc), "task": task,
                      "result": result.to_json(), "world_size": ddp.world_size}
            save(cpu_copy(student), out, tokenizer=tokenizer, records={TRAINING_FILE: meta, DISTILLATION_FILE: record},
                 overwrite=overwrite or not first[0])
        first[0] = False
        ddp.barrier()

    return write


def cpu_copy(model: nn.Module) -> nn.Module:
    """`model` itself on the CPU, else a copy there (built without drawing random numbers, so training's
    random stream is the same whether or not a checkpoint was written)."""
    if next(model.parameters()).device.type == "cpu":
        return model
    copy = materialize(build_model(model.cfg, meta=True))
    copy.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    return copy
