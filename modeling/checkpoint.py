"""The checkpoint format: the one module that reads and writes checkpoint directories.

    config.json          the ModelConfig, with `format` and `format_version`
    model.safetensors    the weights (safetensors only; pickle files are never loaded)
    tokenizer.json       when the model reads text
    training.json, ...   records of how it was made (training, distillation, source.json for imports)

Versions: 1 is a config.json without `format`/`format_version` (every checkpoint written before
the field existed); 2 adds them. Every version in READS loads; a newer one is refused with a
message that says so, before any field of the config is read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model

from edgeformer.runtime.artifacts import atomic_directory, check_format_version, confined_path, read_json_object
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.tokenizer import TextTokenizer

from .config import ModelConfig
from .config_limits import check_weights_header
from .model import Transformer
from .seq2seq import build_model

FORMAT = "edgeformer.checkpoint"
FORMAT_VERSION = 2
READS = (1, 2)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
TRAINING_FILE = "training.json"  # how it was trained (modeling.train, modeling.distill)
SOURCE_FILE = "source.json"  # where imported weights came from (modeling.hf)


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
        (tmp / CONFIG_FILE).write_text(json.dumps(config_to_json(model.cfg), indent=2) + "\n")
        save_model(model, str(tmp / WEIGHTS_FILE))
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_FILE)
        for name, record in (records or {}).items():
            (tmp / name).write_text(json.dumps(record, indent=2) + "\n")
    return Path(path)


def config_to_json(cfg: ModelConfig) -> dict[str, Any]:
    """config.json's content: the format, its version, then the config's fields."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, **cfg.to_dict()}


def config_from_json(data: dict[str, Any], where: str = CONFIG_FILE) -> ModelConfig:
    """The ModelConfig of a config.json of any version in READS; a newer or unknown one is refused."""
    data = dict(data)
    fmt, version = data.pop("format", None), data.pop("format_version", None)
    if fmt is None and version is None:
        version = 1  # written before checkpoints carried a version
    elif fmt != FORMAT:
        raise CheckpointError(f"{where} has format {fmt!r}; expected '{FORMAT}'")
    check_format_version(where, version, FORMAT_VERSION, READS, CheckpointError)
    return ModelConfig.from_dict(data)


def read_config(path: str | os.PathLike) -> ModelConfig:
    data = read_json_object(path, CONFIG_FILE, CheckpointError, "checkpoint", "edgeformer train")
    return config_from_json(data, str(Path(path) / CONFIG_FILE))


def load_tokenizer(path: str | os.PathLike) -> TextTokenizer | None:
    p = Path(path) / TOKENIZER_FILE
    return TextTokenizer.from_file(confined_path(path, TOKENIZER_FILE, CheckpointError)) if p.is_file() else None


def load(path: str | os.PathLike) -> Transformer:
    """The model stored in checkpoint directory `path`, in eval mode (a Seq2SeqTransformer for arch seq2seq)."""
    path = Path(path)
    cfg = read_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
        hint = f" ({pickled[0]} is a pickle and is never loaded: convert it to safetensors)" if pickled else ""
        raise CheckpointError(f"{path} has no {WEIGHTS_FILE}{hint}")
    confined_path(path, WEIGHTS_FILE, CheckpointError)
    check_weights_header(cfg, weights, CheckpointError)  # shapes and sizes agree before a byte is allocated
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
