"""edgeformer.modeling: transformer definitions, checkpoints, training and distillation (PyTorch).

    config.py, presets.py, config_limits.py   ModelConfig: what a model is (no torch)
    build.py                                   each architecture's class, and building it
    checkpoint.py                              the checkpoint format, and the weight checks on load
    hf.py                                      Hugging Face checkpoints into edgeformer's modules
    eager.py                                   PyTorch inference on numpy feeds (the parity reference)
    models/                                    Transformer, Seq2SeqTransformer, Conformer and their parts
    training/                                  the training loop, batches, a job per model family
    distillation/                              a smaller student from a teacher; one entry point

The names below load on first use, so `edgeformer.modeling.config` and the task library can be
imported where torch is not installed.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"ModelConfig": "config", "PRESETS": "presets", "Transformer": "models.transformer",
            "load": "checkpoint", "save": "checkpoint"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
