"""Calibration data: the inputs that static quantization and activation smoothing observe.

A calibration set is a list of feed batches (input name -> array), every batch the same shape,
because onnxruntime's histogram calibrators (entropy, percentile) stack what they collect.
It comes from texts (one per line, or JSON Lines with "text"), from an .npz of model inputs, or,
by default, from English paragraphs that ship with Python and that the evaluation set never uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from edgeformer.runtime.artifacts import load_arrays
from edgeformer.runtime.model import Model
from edgeformer.tasks.text import python_paragraphs

from .evaluate import read_eval_file
from .recipes import QuantizeError

Feeds = Mapping[str, np.ndarray]
BATCH_ROWS = 8
DEFAULT_TEXTS = 64


def default_calibration_texts(n: int = DEFAULT_TEXTS) -> list[str]:
    """The second paragraph of each language-reference topic; the evaluation set takes the first."""
    return python_paragraphs(which=1)[:n]


def text_batches(model: Model, texts: list[str], batch_rows: int = BATCH_ROWS) -> list[dict[str, np.ndarray]]:
    """Tokenize `texts` with the bundle's tokenizer, padded to one length, in batches of `batch_rows`."""
    if not texts:
        raise QuantizeError("the calibration set is empty; expected at least one text")
    max_len = model.manifest.axes.get("seq", {}).get("max") or 512
    feeds = model.tokenizer.encode_batch(texts, max_len, truncation=True).feeds([s.name for s in model.inputs],
                                                                                model.manifest.config.get("global_tokens"))
    return split_rows(feeds, batch_rows)


def split_rows(arrays: Mapping[str, np.ndarray], batch_rows: int) -> list[dict[str, np.ndarray]]:
    """Equal batches of at most `batch_rows` rows (the largest size that divides the rows evenly)."""
    rows = len(next(iter(arrays.values())))
    size = max(d for d in range(1, min(batch_rows, rows) + 1) if rows % d == 0)
    return [{k: np.ascontiguousarray(a[i : i + size]) for k, a in arrays.items()} for i in range(0, rows, size)]


def read_npz(path: Path, model: Model, batch_rows: int = BATCH_ROWS) -> list[dict[str, np.ndarray]]:
    """Model inputs saved with numpy.savez: one array per input name, all (rows, seq), integer."""
    specs = {s.name: s for s in model.inputs}
    arrays = load_arrays(path, QuantizeError)
    if isinstance(arrays, np.ndarray):
        raise QuantizeError(f"{path} is a .npy of one array; expected a .npz with one array per model input")
    if set(arrays) != set(specs):
        raise QuantizeError(f"{path} holds arrays {sorted(arrays) or 'none'}; expected exactly the model's inputs "
                            f"{sorted(specs)}")
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise QuantizeError(f"{path}: every array must be (rows, seq) with one shape; got "
                            + ", ".join(f"{k} {tuple(a.shape)}" for k, a in sorted(arrays.items())))
    rows, seq = next(iter(shapes))
    if rows == 0 or seq == 0:
        raise QuantizeError(f"the calibration set in {path} is empty ({rows} rows x {seq} tokens); expected at least one row")
    max_len = model.manifest.axes.get("seq", {}).get("max")
    if max_len and seq > max_len:
        raise QuantizeError(f"{path}: sequences of {seq} tokens are longer than the model's maximum of {max_len}")
    for name, a in arrays.items():
        if not np.issubdtype(a.dtype, np.integer):
            raise QuantizeError(f"{path}: {name} is {a.dtype}; expected integer token data")
    vocab = model.manifest.config.get("vocab_size")
    ids = arrays.get("input_ids")
    if ids is not None and vocab and (ids.min() < 0 or ids.max() >= vocab):
        raise QuantizeError(f"{path}: input_ids run from {ids.min()} to {ids.max()}; expected 0..{vocab - 1}")
    return split_rows({k: a.astype(np.dtype(specs[k].dtype)) for k, a in arrays.items()}, batch_rows)


def calibration_batches(model: Model, path: str | Path | None = None) -> list[dict[str, np.ndarray]]:
    """The calibration set for `model`: from `path` (.txt, .jsonl or .npz), or the built-in texts."""
    if path is None:
        if model.bundle.tokenizer_path is None:
            raise QuantizeError("the bundle has no tokenizer.json; give calibration inputs as an .npz file")
        return text_batches(model, default_calibration_texts())
    path = Path(path)
    if not path.is_file():
        raise QuantizeError(f"calibration file {path} does not exist")
    if path.suffix == ".npz":
        return read_npz(path, model)
    return text_batches(model, read_eval_file(path, kind="calibration").texts)


def calibration_texts(model: Model, path: str | Path | None = None) -> list[str] | None:
    """The calibration set as texts (the built-in paragraphs, or a .txt or .jsonl file); None where it is
    not text (an .npz of model inputs, a bundle without a tokenizer)."""
    if path is None:
        return default_calibration_texts() if model.bundle.tokenizer_path is not None else None
    path = Path(path)
    if not path.is_file():
        raise QuantizeError(f"calibration file {path} does not exist")
    return None if path.suffix == ".npz" else read_eval_file(path, kind="calibration").texts


def real_positions(feeds: Feeds) -> np.ndarray | None:
    """(rows, seq) bool: the tokens that are not padding, when the inputs say so."""
    mask = feeds.get("attention_mask")
    return None if mask is None else np.asarray(mask).astype(bool)
