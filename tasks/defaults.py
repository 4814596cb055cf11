"""How each built-in task trains when the user names nothing: the recipe behind its documented result; no PyTorch.

One global default (5 epochs at lr 1e-3) suits no task: the ViT on 8x8 digits reached 0.83 held-out
accuracy with it and 0.98 with 40 epochs at 3e-3. So every built-in task carries the recipe its
measured result came from, and `edgeformer train` uses it for every setting the user leaves out; a
flag the user gives always wins. Training on the user's own data (`--data`) keeps the global
defaults (`GENERIC`): nothing is known about that data; so does a built-in task whose result is not
measured yet (spoken-digits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .text import DEFAULT_TASK


@dataclass(frozen=True)
class TaskDefaults:
    preset: str
    epochs: int
    lr: float
    batch_size: int = 32
    steps_per_epoch: int | None = None  # language modelling: windows sampled per epoch (None: one pass)
    vocab_size: int = 2048  # text tasks: the BPE vocabulary
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields over the preset's
    documented: str = ""  # the held-out result this recipe reached, and where it is written

    def train_fields(self) -> dict[str, Any]:
        """The TrainConfig fields this recipe sets."""
        return {"epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size, "steps_per_epoch": self.steps_per_epoch}


GENERIC = TaskDefaults(preset="tiny", epochs=5, lr=1e-3)

TASK_DEFAULTS: dict[str, TaskDefaults] = {
    # `make demo`'s encoder (pipeline/demo_plan.py)
    "stdlib-topics": TaskDefaults("small", epochs=3, lr=2e-3, documented="accuracy 0.828 (docs/measured.md)"),
    # `make demo`'s decoder: 320 windows of 128 tokens
    "pydoc-lm": TaskDefaults("tiny", epochs=4, lr=3e-3, steps_per_epoch=80, documented="perplexity 136.5 (docs/measured.md)"),
    # the 2017 encoder-decoder without dropout: exact match 1.00 at epochs 8 to 10 of 10
    "reverse": TaskDefaults("tiny", epochs=10, lr=2e-3, batch_size=64, vocab_size=300, model={"dropout": 0.0},
                            documented="exact match 1.00 (docs/generation.md)"),
    "digits": TaskDefaults("tiny", epochs=40, lr=3e-3, documented="accuracy 0.9833 (docs/speech-and-vision.md)"),
    # 14 epochs of 50 fresh batches of 8 clips
    "audio-digits": TaskDefaults("tiny", epochs=14, lr=3e-3, batch_size=8, documented="CER 0.0199 (docs/speech-and-vision.md)"),
    # 20 epochs of 150 fresh batches of 16 spoken clips (17 minutes on 2 cores); half the held-out clips are in
    # voices training never hears. Trained to stream (export --streaming), without dropout: no clip is seen twice.
    "spoken-digits": TaskDefaults("tiny", epochs=20, lr=3e-3, batch_size=16, steps_per_epoch=150,
                                  model={"streaming": True, "dropout": 0.0},
                                  documented="CER 0.084, 0.070 at 10-30 dB; streamed 0.098 (docs/speech-and-vision.md)"),
    # keyword spotting: 1 s clips, 12 labels drawn equally often; 40 x 100 batches of 32 (17 minutes on 2 cores)
    "spoken-commands": TaskDefaults("tiny", epochs=40, lr=3e-3, batch_size=32, steps_per_epoch=100,
                                    model={"dropout": 0.0},
                                    documented="accuracy 0.910, 0.875 in unheard voices (docs/speech-and-vision.md)"),
}

# the task each arch trains on when neither --task nor --data is given
ARCH_TASK = {**DEFAULT_TASK, "vit": "digits", "conformer": "audio-digits"}


def task_defaults(arch: str, task: str | None = None, data_file: Any = None) -> TaskDefaults:
    """The recipe `edgeformer train --arch ARCH [--task TASK | --data FILE]` starts from.

    An unknown task gets the generic recipe here; loading its data refuses it by name.
    """
    if data_file:
        return GENERIC
    return TASK_DEFAULTS.get(task or ARCH_TASK.get(arch, ""), GENERIC)
