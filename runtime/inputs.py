"""A graph's inputs: their checks (`validate_inputs`), padding and positions for token ids, and
random example inputs built from a manifest (for parity and bench)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .bundle import Manifest, TensorSpec
from .errors import InputError

MASK = "attention_mask"
GLOBAL_MASK = "global_attention_mask"  # a Longformer's global tokens: at most global_tokens per row

# Inputs that may be left out, and the value they take, as in every transformer library:
# no attention_mask means no padding; no token_type_ids means one segment.
DEFAULT_FILL = {"attention_mask": 1, "token_type_ids": 0}


def first_positions(shape: tuple[int, int], count: int) -> np.ndarray:
    """(B, T) int64 marking the first `count` positions of every row: a Longformer's default global tokens."""
    return np.ascontiguousarray(np.broadcast_to(np.arange(shape[1]) < count, shape), dtype=np.int64)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists -> (B, T) int64 ids and mask, padded on the left so every row ends at the last column."""
    T = max(len(p) for p in prompts)
    ids = np.full((len(prompts), T), pad_id, dtype=np.int64)
    mask = np.zeros((len(prompts), T), dtype=np.int64)
    for i, p in enumerate(prompts):
        if len(p):
            ids[i, T - len(p):], mask[i, T - len(p):] = p, 1
    return ids, mask


def right_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists -> (B, S) int64 ids and mask padded on the right: an encoder's source, whose
    positions count from the first column as in training."""
    S = max(len(p) for p in prompts)
    ids = np.full((len(prompts), S), pad_id, dtype=np.int64)
    mask = np.zeros((len(prompts), S), dtype=np.int64)
    for i, p in enumerate(prompts):
        ids[i, :len(p)], mask[i, :len(p)] = p, 1
    return ids, mask


def next_positions(mask: np.ndarray, T: int) -> np.ndarray:
    """Position ids of the last T tokens: real tokens counted from 0 in each row, so left padding shifts nothing."""
    return np.maximum(np.cumsum(mask, axis=-1) - 1, 0)[:, -T:].astype(np.int64)


def example_inputs(
    inputs: list[TensorSpec],
    sizes: Mapping[str, int],
    rng: np.random.Generator,
    padded: bool = True,
    global_tokens: int = 1,
) -> dict[str, np.ndarray]:
    """Random arrays for `inputs`, with named axes taken from `sizes` (e.g. batch, seq).

    With `padded`, every row but the first gets a random length in [1, seq] and is right-padded:
    its attention_mask is 0 and its token ids are the smallest id (the pad token) past that length.
    The first row stays full so the longest length is always exercised. A global_attention_mask
    marks 0 to `global_tokens` random real tokens of each row.
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
            # ids that share the mask's (batch, seq) shape get the pad id where it is 0; a cached decoder's
            # mask covers past + new tokens, its ids only the new ones
            if spec.name != MASK and arr.shape == out[MASK].shape and np.dtype(spec.dtype).kind in "iu":
                arr[out[MASK] == 0] = int(spec.min or 0)
    if GLOBAL_MASK in out:
        marked = np.zeros_like(out[GLOBAL_MASK])
        real = lengths if lengths is not None else np.full(marked.shape[0], marked.shape[1])
        for row, n in enumerate(real):
            count = int(rng.integers(0, min(global_tokens, int(n)) + 1))
            marked[row, rng.choice(int(n), size=count, replace=False)] = 1
        out[GLOBAL_MASK] = marked
    return out


def axis_sizes(manifest: Manifest, batch: int, seq: int) -> dict[str, int]:
    """A size for every named axis of the manifest, within its limits: `batch` and `seq` as asked (a
    seq2seq source a little longer than `seq`, a cache's past 5 tokens, other axes 4), and a cache's
    total = past + seq, so the inputs it sizes agree with each other."""
    sizes = {}
    for axis, lim in manifest.axes.items():
        lo, hi = int(lim.get("min", 1)), lim.get("max")
        want = {"batch": batch, "seq": seq, "past": 5, "src": seq + 3}.get(axis, 4)
        sizes[axis] = max(lo, min(want, int(hi)) if hi is not None else want)
    if "total" in manifest.axes:
        hi = manifest.axes["total"].get("max")
        if hi is not None and sizes.get("past", 0) + sizes.get("seq", 1) > hi:
            sizes["seq"] = max(1, int(hi) - sizes.get("past", 0))
        sizes["total"] = sizes.get("past", 0) + sizes.get("seq", 1)
    return sizes


def global_slots(manifest: Manifest) -> int:
    """How many tokens per row a Longformer bundle's global_attention_mask may mark."""
    return int(manifest.config.get("global_tokens") or 1)


def manifest_inputs(manifest: Manifest, batch: int, seq: int, seed: int = 0, padded: bool = True) -> dict[str, np.ndarray]:
    return example_inputs(manifest.inputs, {"batch": batch, "seq": seq}, np.random.default_rng(seed), padded,
                          global_slots(manifest))


def default_input(manifest: Manifest, spec: TensorSpec, like: np.ndarray) -> np.ndarray | None:
    """What a left-out input means, shaped like the first input given (None: it cannot be left out).
    No attention_mask: no padding; no token_type_ids: one segment; no global_attention_mask: the first
    global_tokens positions are global, as in training."""
    shape = like.shape[: len(spec.shape)]
    if spec.name == GLOBAL_MASK:
        return first_positions(shape, global_slots(manifest))
    if spec.name in DEFAULT_FILL:
        return np.full(shape, DEFAULT_FILL[spec.name], dtype=spec.dtype)
    return None


def validate_inputs(manifest: Manifest, inputs: Mapping[str, Any], specs: Sequence[TensorSpec] | None = None
                    ) -> dict[str, np.ndarray]:
    """Check names, dtypes, ranks, axis sizes and value bounds against `specs` (default: the
    manifest's main graph inputs) and the manifest's axes; return arrays ready to feed."""
    specs = manifest.inputs if specs is None else specs
    expected = [s.name for s in specs]
    unknown = [k for k in inputs if k not in expected]
    if unknown:
        raise InputError(f"unknown input {unknown[0]!r}; this model takes: {', '.join(expected)}")
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.name not in inputs:
            default = default_input(manifest, spec, next(iter(arrays.values()))) if arrays else None
            if default is None:
                raise InputError(f"missing input {spec.name!r}; this model takes: {', '.join(expected)}")
            arrays[spec.name] = default
            continue
        arrays[spec.name] = _convert(spec, inputs[spec.name], model_invariant(manifest, spec.name))
    sizes = _check_axes(manifest, specs, arrays)
    if GLOBAL_MASK in arrays:
        _check_global_count(manifest, arrays[GLOBAL_MASK], arrays.get(MASK))
    if "total" in sizes and "seq" in sizes:  # a cached decoder: the mask covers the past and the new tokens
        past = sizes.get("past", (0, ""))[0]
        if sizes["total"][0] != past + sizes["seq"][0]:
            raise InputError(f"attention_mask covers {sizes['total'][0]} tokens; expected past + new tokens = "
                             f"{past} + {sizes['seq'][0]}")
    return arrays


def _check_global_count(manifest: Manifest, marked: np.ndarray, mask: np.ndarray | None) -> None:
    """At most global_tokens real tokens marked per row (marks on padding are ignored, as the graph ignores them)."""
    G = global_slots(manifest)
    counts = ((marked != 0) & (mask != 0 if mask is not None else True)).sum(axis=1)
    if (counts > G).any():
        row = int(np.argmax(counts > G))
        raise InputError(f"{GLOBAL_MASK} marks {int(counts[row])} tokens in row {row}; this model attends globally "
                         f"to at most {G} (global_tokens)")


def _check_axes(manifest: Manifest, specs: Sequence[TensorSpec], arrays: dict[str, np.ndarray]
                ) -> dict[str, tuple[int, str]]:
    sizes: dict[str, tuple[int, str]] = {}  # axis name -> (size, input that fixed it)
    for spec in specs:
        arr = arrays[spec.name]
        for axis, (dim, size) in enumerate(zip(spec.shape, arr.shape)):
            if isinstance(dim, int):
                if size != dim:
                    raise InputError(f"{spec.name} has size {size} on axis {axis}; expected {dim} (shape {_fmt(spec.shape)})"
                                     + _fixed_note(manifest))
                continue
            if dim in sizes and sizes[dim][0] != size:
                other_size, other = sizes[dim]
                raise InputError(
                    f"{spec.name} has {dim}={size} but {other} has {dim}={other_size}; they must agree"
                )
            sizes[dim] = (size, spec.name)
            limits = manifest.axes.get(dim, {})
            lo, hi = limits.get("min", 1), limits.get("max")
            if size < lo:
                raise InputError(f"{spec.name} has {dim}={size}; expected at least {lo}")
            if hi is not None and size > hi:
                raise InputError(f"{spec.name} has {dim}={size}; this model accepts at most {hi} ({dim} limit)")
    return sizes


def model_invariant(manifest: Manifest, name: str) -> tuple[int, int, str] | None:
    """(lowest, highest, what is expected) of the values the model itself can take for the input `name`,
    whatever the manifest's bounds say (a manifest is data, and a loosened one must not let a mask
    of 5 scale attention or an id index past the embedding table): a mask is 0 or 1, ids are
    below the vocabulary the config names, positions below the context."""
    config = manifest.model.config
    if name.endswith("attention_mask"):
        return 0, 1, "0 (padding) or 1 (a token) in a mask, whatever the manifest allows"
    tables = {"input_ids": ("vocab_size", "token ids"), "decoder_input_ids": ("vocab_size", "token ids"),
              "token_type_ids": ("type_vocab_size", "segment ids"), "position_ids": ("max_len", "positions")}
    if name not in tables:
        return None
    key, what = tables[name]
    size = config.get(key)
    cache = manifest.model.cache
    if key == "max_len" and cache is not None:
        size = max(size or 0, cache.max_len or 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        return None
    return 0, size - 1, f"{what} in [0, {size - 1}] ({key} is {size}), whatever the manifest allows"


def _convert(spec: TensorSpec, value: Any, invariant: tuple[int, int, str] | None = None) -> np.ndarray:
    """`value` as a contiguous array of the spec's dtype; its bounds (the manifest's, and the model's
    `invariant`) and finiteness are checked on the values as given, before the cast (a uint64 id of
    2**63 + 5 must not turn negative first)."""
    if isinstance(value, (str, bytes, set, frozenset, dict)) or value is None or hasattr(value, "__next__"):
        raise InputError(f"{spec.name} is a {type(value).__name__}; expected an array (or nested lists) of numbers")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError):  # ragged nested lists, objects numpy cannot hold
        raise InputError(f"{spec.name} has rows of different lengths or values numpy cannot hold; expected a "
                         f"rectangular array of numbers of shape {_fmt(spec.shape)}") from None
    want = np.dtype(spec.dtype)
    if arr.dtype.kind == "O":
        raise InputError(f"{spec.name} holds Python objects (None, strings, integers past 64 bits, or rows of different lengths); "
                         f"expected {want} numbers of shape {_fmt(spec.shape)}")
    if arr.ndim != len(spec.shape):
        raise InputError(
            f"{spec.name} has rank {arr.ndim} (shape {tuple(arr.shape)}); expected rank {len(spec.shape)} {_fmt(spec.shape)}"
        )
    ok_kinds = {"i": "iub", "u": "iub", "f": "f", "b": "b"}.get(want.kind, want.kind)
    if arr.dtype.kind not in ok_kinds:
        raise InputError(f"{spec.name} has dtype {arr.dtype}; expected {want} (or another {_kind_name(want)} type)")
    _check_bounds(spec, arr)
    if invariant is not None:
        _check_invariant(spec.name, arr, *invariant)
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        idx = np.unravel_index(int(np.argmin(np.isfinite(arr))), arr.shape)
        raise InputError(f"{spec.name} has value {arr[idx]} at {[int(i) for i in idx]}; expected finite numbers")
    return np.ascontiguousarray(arr, dtype=want)


def _fixed_note(manifest: Manifest) -> str:
    deploy = manifest.deploy
    if deploy is None or not deploy.fixed_shape:
        return ""
    return f"; this {deploy.target} deployment has fixed shapes " + ", ".join(f"{k}={v}" for k, v in deploy.fixed_shape.items())


def _check_bounds(spec: TensorSpec, arr: np.ndarray) -> None:
    if arr.size == 0 or (spec.min is None and spec.max is None):
        return
    if spec.min is not None and arr.min() < spec.min:
        idx = np.unravel_index(int(np.argmin(arr)), arr.shape)
        raise InputError(f"{spec.name} has value {arr[idx]} at {[int(i) for i in idx]}; expected values in {_range(spec)}")
    if spec.max is not None and arr.max() > spec.max:
        idx = np.unravel_index(int(np.argmax(arr)), arr.shape)
        raise InputError(f"{spec.name} has value {arr[idx]} at {[int(i) for i in idx]}; expected values in {_range(spec)}")


def _check_invariant(name: str, arr: np.ndarray, lo: int, hi: int, what: str) -> None:
    if arr.size == 0:
        return
    outside = (arr < lo) | (arr > hi)
    if lo == 0 and hi == 1:  # a mask: 0.5 is inside the range and still no mask value
        outside = (arr != 0) & (arr != 1)
    if outside.any():
        idx = np.unravel_index(int(np.argmax(outside)), arr.shape)
        raise InputError(f"{name} has value {arr[idx]} at {[int(i) for i in idx]}; expected {what}")


def _range(spec: TensorSpec) -> str:
    lo = "-inf" if spec.min is None else f"{spec.min:g}"
    hi = "inf" if spec.max is None else f"{spec.max:g}"
    return f"[{lo}, {hi}]"


def _kind_name(dtype: np.dtype) -> str:
    return {"i": "integer", "u": "integer", "f": "floating-point", "b": "boolean"}.get(dtype.kind, str(dtype))


def _fmt(shape: Sequence[int | str]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"
