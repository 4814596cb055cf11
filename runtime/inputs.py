"""Example inputs built from a manifest: random token ids with right padding, for parity and bench."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .bundle import Manifest, TensorSpec

MASK = "attention_mask"


def example_inputs(
    inputs: list[TensorSpec],
    sizes: Mapping[str, int],
    rng: np.random.Generator,
    padded: bool = True,
) -> dict[str, np.ndarray]:
    """Random arrays for `inputs`, with named axes taken from `sizes` (e.g. batch, seq).

    With `padded`, every row but the first gets a random length in [1, seq] and is right-padded:
    its attention_mask is 0 and its token ids are the smallest id (the pad token) past that length.
    The first row stays full so the longest length is always exercised.
    """
    out: dict[str, np.ndarray] = {}
    lengths = None
    for spec in inputs:
        shape = tuple(d if isinstance(d, int) else sizes[d] for d in spec.shape)
        if spec.name == MASK:
            batch, seq = shape
            lengths = np.full(batch, seq)
            if padded and batch > 1:
                lengths[1:] = rng.integers(1, seq + 1, size=batch - 1)
            out[spec.name] = (np.arange(seq)[None, :] < lengths[:, None]).astype(spec.dtype)
        elif np.dtype(spec.dtype).kind in "iu":
            lo = int(spec.min if spec.min is not None else 0)
            hi = int(spec.max if spec.max is not None else 1000)
            out[spec.name] = rng.integers(lo, hi + 1, size=shape, dtype=spec.dtype)
        else:
            out[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    if lengths is not None:
        for spec in inputs:
            arr = out[spec.name]
            if spec.name != MASK and arr.ndim == 2 and np.dtype(spec.dtype).kind in "iu":
                arr[out[MASK] == 0] = int(spec.min or 0)
    return out


def manifest_inputs(manifest: Manifest, batch: int, seq: int, seed: int = 0, padded: bool = True) -> dict[str, np.ndarray]:
    return example_inputs(manifest.inputs, {"batch": batch, "seq": seq}, np.random.default_rng(seed), padded)
