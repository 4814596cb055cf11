"""Checkpoint directories: config.json + model.safetensors (+ tokenizer.json, + training.json).

Weights are safetensors only; pickle files are never loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model

from edgeformer.runtime.artifacts import atomic_directory, read_json_object
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.tokenizer import TextTokenizer

from .config import ModelConfig
from .model import Transformer
from .seq2seq import build_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
TRAINING_FILE = "training.json"


class CheckpointError(EdgeformerError):
    pass


def save(
    model: Transformer,
    path: str | os.PathLike,
    tokenizer: TextTokenizer | None = None,
    records: dict[str, dict[str, Any]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint directory atomically: it appears complete or not at all.

    `records` are JSON files to write beside the weights: training.json (how it was trained) or
    source.json (where imported weights came from).
    """
    with atomic_directory(path, overwrite=overwrite) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(model.cfg.to_dict(), indent=2) + "\n")
        save_model(model, str(tmp / WEIGHTS_FILE))
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_FILE)
        for name, record in (records or {}).items():
            (tmp / name).write_text(json.dumps(record, indent=2) + "\n")
    return Path(path)


def read_config(path: str | os.PathLike) -> ModelConfig:
    return ModelConfig.from_dict(read_json_object(path, CONFIG_FILE, CheckpointError, "checkpoint", "edgeformer train"))


def load_tokenizer(path: str | os.PathLike) -> TextTokenizer | None:
    p = Path(path) / TOKENIZER_FILE
    return TextTokenizer.from_file(p) if p.is_file() else None


def load(path: str | os.PathLike) -> Transformer:
    """The model stored in checkpoint directory `path`, in eval mode (a Seq2SeqTransformer for arch seq2seq)."""
    path = Path(path)
    cfg = read_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
        hint = f" ({pickled[0]} is a pickle and is never loaded: convert it to safetensors)" if pickled else ""
        raise CheckpointError(f"{path} has no {WEIGHTS_FILE}{hint}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({e}); it may be truncated") from None
    model = build_model(cfg)
    load_state(model, state, weights)
    return model.eval()


def load_state(model: Transformer, state: dict[str, torch.Tensor], source: Path) -> None:
    """Copy `state` into `model`, naming the first tensor that is missing, unexpected or misshapen."""
    expected = model.state_dict()
    # Tied weights are stored once; safetensors keeps one name of each shared group.
    tied = {"lm_head.weight"} if model.cfg.arch in ("decoder", "seq2seq") and model.cfg.tie_embeddings else set()
    missing = [k for k in expected if k not in state and k not in tied]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise CheckpointError(f"{source} lacks tensor {missing[0]!r} ({len(missing)} missing); config and weights disagree")
    if unexpected:
        raise CheckpointError(f"{source} has unexpected tensor {unexpected[0]!r}; config and weights disagree")
    for name, t in state.items():
        if tuple(t.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{source}: tensor {name!r} has shape {tuple(t.shape)} but the config expects {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=False)
    if tied:
        model.lm_head.weight = model.embed.tok.weight
