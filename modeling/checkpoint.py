"""The checkpoint format: the one module that reads and writes checkpoint directories.

    config.json          the ModelConfig, with `format` and `format_version`
    model.safetensors    the weights (safetensors only; pickle files are never loaded)
    tokenizer.json       when the model reads text
    training.json, ...   records of how it was made (training, distillation, source.json for imports)

Versions: 1 is a config.json without `format`/`format_version` (every checkpoint written before
the field existed); 2 adds them. Every version in READS loads; a newer one is refused with a
message that says so, before any field of the config is read.

Weights are checked here, in one place (`check_tensors`): a tensor missing, unexpected or of another
shape. `load` builds the model once, on the meta device (modeling/build.py), and checks the
safetensors header against it (read without loading a tensor), so a config that disagrees with its
weights is refused before a byte of them is allocated.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_model

from edgeformer.runtime.artifacts import atomic_directory, check_format_version, confined_path, read_json_object
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.tokenizer import TextTokenizer

from edgeformer.modeling.build import build_model, materialize
from edgeformer.modeling.config import ConfigError, ModelConfig
from edgeformer.modeling.models.transformer import Transformer

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


def recorded_task(path: str | os.PathLike) -> str | None:
    """The built-in task the checkpoint was trained on, as its training.json records it (None: not recorded)."""
    f = Path(path) / TRAINING_FILE
    try:
        task = json.loads(f.read_text()).get("task") if f.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return task if isinstance(task, str) else None


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
    model = build_model(cfg, meta=True)  # shapes only: nothing is allocated yet
    check_weights_header(model, weights)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({e}); it may be truncated") from None
    _copy_state(materialize(model), state)
    return model.eval()


def tied_tensors(cfg: ModelConfig) -> set[str]:
    """Tensors that share another's storage: saved once (safetensors keeps one name of each shared group)."""
    return {"lm_head.weight"} if cfg.arch in ("decoder", "seq2seq") and cfg.tie_embeddings else set()


def check_tensors(expected: dict[str, tuple], found: dict[str, tuple], tied: set[str], source: Path,
                  error: type[EdgeformerError]) -> None:
    """Refuse `found` (name -> shape) unless it holds each tensor of `expected` but those in `tied`,
    nothing else, each of the expected shape: `error` names the first that is not."""
    for name, shape in found.items():
        if name not in expected:
            raise error(f"{source} has tensor {name!r}, which the config does not build; config and weights disagree")
        if shape != expected[name]:
            raise error(f"{source}: tensor {name!r} has shape {shape} but the config expects {expected[name]}")
    missing = [k for k in expected if k not in found and k not in tied]
    if missing:
        raise error(f"{source} lacks tensor {missing[0]!r} ({len(missing)} missing); config and weights disagree")


_DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def check_weights_header(model: nn.Module, weights: Path) -> None:
    """Refuse, before loading, weights whose header disagrees with `model` (built on the meta device):
    a tensor missing, unexpected or of another shape (ConfigError), or a file that does not hold the
    bytes its header claims."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            header = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({e}); it may be truncated") from None
    expected = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    check_tensors(expected, {k: shape for k, (shape, _) in header.items()}, tied_tensors(model.cfg), weights, ConfigError)
    claimed = sum(math.prod(shape) * _DTYPE_SIZES.get(dtype, 8) for shape, dtype in header.values())
    if claimed > weights.stat().st_size:
        raise ConfigError(f"{weights} is {weights.stat().st_size} bytes but its header describes {claimed}; it is truncated")


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Copy `state` into `model`, naming the first tensor that is missing, unexpected or misshapen."""
    expected = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    check_tensors(expected, {k: tuple(t.shape) for k, t in state.items()}, tied_tensors(model.cfg), source, CheckpointError)
    _copy_state(model, state)


def _copy_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy checked weights into `model`, then tie what was saved once."""
    model.load_state_dict(state, strict=False)
    if tied_tensors(model.cfg):
        model.lm_head.weight = model.embed.tok.weight
