"""`edgeformer run`: feed token ids to a bundle and print what it returns. Imports no PyTorch."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

from edgeformer import runtime
from edgeformer.runtime.artifacts import load_arrays, read_text_file
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.postprocess import softmax

from .output import SIGNATURE, write_json


def parse_ids(ids: tuple[str, ...]) -> list[list[int]]:
    """--ids "5 17 42" (repeatable): one list of token ids per option."""
    rows = []
    for text in ids:
        try:
            rows.append([int(t) for t in text.replace(",", " ").split()])
        except ValueError:
            raise EdgeformerError(f"--ids {text!r} is not a list of integers; expected e.g. --ids \"5 17 42\"") from None
        big = [t for t in rows[-1] if not 0 <= t < 2**63]
        if big:
            raise EdgeformerError(f"--ids has token id {big[0]}; expected ids from 0 up to the model's vocabulary")
    return rows


def read_inputs(input_file: str | None, ids: tuple[str, ...], pad_id: int) -> dict[str, np.ndarray]:
    if bool(input_file) == bool(ids):
        raise EdgeformerError("give either --input FILE or --ids \"...\"")
    if ids:
        rows = parse_ids(ids)
        if not all(rows):
            raise EdgeformerError("--ids is empty; expected at least one token id")
        T = max(len(r) for r in rows)
        input_ids = np.full((len(rows), T), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), T), dtype=np.int64)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)], mask[i, : len(r)] = r, 1
        return {"input_ids": input_ids, "attention_mask": mask}
    loaded = load_arrays(input_file)
    if isinstance(loaded, np.ndarray):
        return {"input_ids": loaded[None, :] if loaded.ndim == 1 else loaded}
    return loaded


def top_labels(names: list[str], p: np.ndarray, k: int = 3) -> str:
    """'best (0.912)  next: second 0.050, third 0.020' for one row of probabilities."""
    top = np.argsort(-p)[:k]
    return f"{names[top[0]]} ({p[top[0]]:.3f})  next: " + ", ".join(f"{names[i]} {p[i]:.3f}" for i in top[1:])


def describe(model: runtime.Model, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> list[str]:
    """Human-readable lines: predictions for known tasks, then every output's shape and values."""
    m = model.manifest.model
    lines = []
    logits = outputs.get("logits")
    if logits is not None and m.task == "classification":
        labels = m.labels or [str(i) for i in range(logits.shape[-1])]
        for row, p in enumerate(softmax(logits)):
            lines.append(f"row {row}: {top_labels(labels, p)}")
    elif logits is not None and m.task == "causal-lm":
        mask = feeds.get("attention_mask", np.ones(logits.shape[:2], dtype=np.int64))
        for row in range(logits.shape[0]):
            last = int(mask[row].sum()) - 1
            p = softmax(logits[row, last])
            top = np.argsort(-p)[:5]
            lines.append(f"row {row}: next token ids " + ", ".join(f"{i} ({p[i]:.3f})" for i in top))
    for name, value in outputs.items():
        lines.append(f"{name}: shape {tuple(value.shape)} {value.dtype}")
        lines.append(np.array2string(value, precision=4, threshold=24, edgeitems=3, suppress_small=True))
    return lines


def predictions(model: runtime.Model, outputs: dict[str, np.ndarray]) -> dict:
    """A classifier's labels, as `run --text --json` gives them: labels, label_names, probabilities."""
    m = model.manifest.model
    logits = outputs.get("logits")
    if logits is None or m.task != "classification":
        return {}
    names = m.labels or [str(i) for i in range(logits.shape[-1])]
    p = softmax(logits)
    return {"labels": [names[i] for i in p.argmax(-1)], "label_names": names, "probabilities": p}


def load(bundle, providers, spin, threads, public_key=None, max_batch=None) -> runtime.Model:
    model = runtime.load(bundle, providers=providers or None, spin=spin, threads=threads, public_key=public_key,
                         max_batch=max_batch)
    if public_key is not None:
        confirm_signature(bundle, public_key)
    return model


def confirm_signature(bundle, public_key) -> None:
    """Say that BUNDLE's signature was checked (runtime.load refuses it otherwise): on stderr, and as
    `signature` in the verb's JSON (output.write_json)."""
    from edgeformer.runtime.signing import key_id, read_key

    kid = key_id(read_key(public_key, private=False))
    click.echo(f"signature verified: {bundle} is signed by key {kid[:16]} ({public_key})", err=True)
    click.get_current_context().meta[SIGNATURE] = {"verified": True, "key_id": kid, "public_key": str(public_key)}


def run_ids(model: runtime.Model, input_file, ids, json_out) -> None:
    feeds = read_inputs(input_file, ids, int(model.manifest.config.get("pad_id", 0)))
    feeds = model.validate(feeds)
    outputs = model(feeds)
    if json_out != "-":
        click.echo("\n".join(describe(model, feeds, outputs)))
    write_json(json_out, {**outputs, **predictions(model, outputs)})
    sys.stdout.flush()


def read_texts(texts: tuple[str, ...], text_file: str | None) -> list[str]:
    if texts and text_file:
        raise EdgeformerError("give --text or --file, not both")
    if text_file:
        path = Path(text_file)
        texts = tuple(line for line in read_text_file(path, "text").splitlines() if line.strip())
        if not texts:
            raise EdgeformerError(f"{path} has no texts; expected one text per line")
    return list(texts)


def run_text(model: runtime.Model, texts, text_file, also_ids, truncation: bool, json_out) -> None:
    """Classification bundles print labels with probabilities; other encoders print embeddings."""
    if also_ids:
        raise EdgeformerError("give texts (--text/--file) or token ids (--ids/--input), not both")
    texts = read_texts(texts, text_file)
    if model.manifest.model.task == "classification":
        result = model.classify(texts, truncation=truncation)
        if json_out != "-":
            for i, (text, p) in enumerate(zip(texts, result.probabilities)):
                click.echo(f"{i}: {top_labels(result.label_names, p)}  | {text[:60]}")
        write_json(json_out, {"labels": result.labels, "label_names": result.label_names,
                              "probabilities": result.probabilities, "truncated": result.truncated})
        return
    vectors = model.embed(texts, truncation=truncation)
    if json_out != "-":
        click.echo(f"embeddings: shape {vectors.shape} {vectors.dtype}, L2-normalised mean pooling")
        for i, (text, v) in enumerate(zip(texts, vectors)):
            click.echo(f"{i}: norm {np.linalg.norm(v):.4f}  first values {np.array2string(v[:4], precision=4)}  | {text[:60]}")
    write_json(json_out, {"embeddings": vectors})
