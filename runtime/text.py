"""Text in, answers out: sentence embeddings and classification on top of a loaded bundle."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import EdgeformerError, InputError
from .postprocess import softmax
from .tokenizer import Batch, TextTokenizer

if TYPE_CHECKING:
    from .facade import BundleModel


@dataclass
class Classification:
    labels: list[str]  # the most probable label of each text
    probabilities: np.ndarray  # (N, num_labels)
    label_names: list[str]
    truncated: list[int]  # indices of texts cut to the model's maximum length


def tokenizer_of(model: "BundleModel") -> TextTokenizer:
    path = model.bundle.tokenizer_path
    if path is None:
        raise EdgeformerError(f"bundle {model.bundle.path} has no tokenizer.json; give token ids instead of text")
    return TextTokenizer.from_file(path)


def check_texts(texts: Any, what: str = "texts") -> list[str]:
    """A text or a list (tuple, array) of texts -> a list of texts, each valid Unicode.

    Refused: bytes (decode them first: the encoding is the caller's to know), sets (no order, so
    no way to match answers to texts), generators and other one-shot iterables, and non-strings.
    """
    if isinstance(texts, str):
        texts = [texts]
    elif isinstance(texts, np.ndarray) and texts.dtype.kind == "U" and texts.ndim == 1:
        texts = texts.tolist()
    elif not isinstance(texts, (list, tuple)):
        raise InputError(f"{what} of type {type(texts).__name__}; expected a text (str) or a list of texts"
                         + ("; decode bytes first" if isinstance(texts, (bytes, bytearray)) else ""))
    if not texts:
        raise InputError(f"no {what} given; expected at least one")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"{what}[{i}] is a {type(t).__name__}; expected a text (str)")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{what}[{i}] is not valid Unicode (it holds undecodable bytes); expected UTF-8 text") from None
    return list(texts)


def check_settings(batch_size: Any, **flags: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r}; expected a positive integer")
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise InputError(f"{name}={value!r}; expected True or False")
    return int(batch_size)


def refuse_unknown(call: str, unknown: dict[str, Any], known: Sequence[str]) -> None:
    if unknown:
        raise InputError(f"{call}() got unknown argument {next(iter(unknown))!r}; it takes: {', '.join(known)}")


def batches(model: "BundleModel", texts: Sequence[str], batch_size: int, truncation: bool):
    """Yield (Batch, outputs) for `texts` in chunks; warn once about any truncated text."""
    texts = check_texts(texts)
    tok = model.tokenizer
    max_len = model.manifest.axes.get("seq", {}).get("max") or 512
    names = [s.name for s in model.inputs]
    cut = []
    # A fixed-shape deployment (NNAPI/CoreML) takes exactly its batch and length: pad rows and tokens to them.
    deploy = model.manifest.deploy
    fixed = (deploy.fixed_shape if deploy is not None else None) or {}
    batch_size = fixed.get("batch", min(batch_size, model.max_batch))  # within the row limit
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        rows = len(chunk)
        chunk += [""] * (batch_size - rows if "batch" in fixed else 0)
        # Encoded truncating in every case, so that a refusal can name the setting that lets the text through.
        batch = tok.encode_batch(chunk, max_len, True, pad_to=fixed.get("seq"))
        if batch.truncated and not truncation:
            i = batch.truncated[0]
            raise InputError(f"text {start + i} is {len(tok.encode(chunk[i]))} tokens; the model accepts at most {max_len} "
                             "({remedy} to cut it, or shorten it)", remedy=("truncation", True))
        cut += [start + i for i in batch.truncated if i < rows]
        out = model(batch.feeds(names))
        if rows < len(chunk):
            batch = batch.rows(rows)
            out = {k: v[:rows] for k, v in out.items()}
        yield batch, out
    if cut:
        warnings.warn(f"{len(cut)} of {len(texts)} texts were longer than {max_len} tokens and were truncated "
                      f"(first: text {cut[0]})", RuntimeWarning, stacklevel=3)


def mean_pool(hidden: np.ndarray, batch: Batch, normalize: bool) -> np.ndarray:
    m = batch.attention_mask[..., None].astype(hidden.dtype)  # (B, T, 1)
    pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1.0)  # (B, C)
    if normalize:
        pooled /= np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    return pooled


def embed(model: "BundleModel", texts: Sequence[str], batch_size: int = 32, normalize: bool = True,
          truncation: bool = True) -> np.ndarray:
    """(N, d) sentence embeddings: the mean of the last hidden states over real tokens, L2-normalised
    (the sentence-transformers convention)."""
    if "last_hidden_state" not in {s.name for s in model.outputs} or model.manifest.model.task == "causal-lm":
        raise EdgeformerError("embed needs an encoder bundle with a last_hidden_state output")
    batch_size = check_settings(batch_size, normalize=normalize, truncation=truncation)
    return np.concatenate([mean_pool(out["last_hidden_state"], b, normalize)
                           for b, out in batches(model, texts, batch_size, truncation)])


def classify(model: "BundleModel", texts: Sequence[str], batch_size: int = 32, truncation: bool = True) -> Classification:
    if model.manifest.model.task != "classification":
        raise EdgeformerError(f"classify needs a classification bundle; this one is {model.manifest.model.task!r}")
    batch_size = check_settings(batch_size, truncation=truncation)
    names = model.manifest.model.labels or [str(i) for i in range(model.outputs[0].shape[-1])]
    probs, cut, start = [], [], 0
    for b, out in batches(model, texts, batch_size, truncation):
        probs.append(softmax(out["logits"]))
        cut += [start + i for i in b.truncated]  # indices into `texts`, not into the chunk
        start += len(b.input_ids)
    p = np.concatenate(probs)
    return Classification([names[i] for i in p.argmax(-1)], p, names, cut)
