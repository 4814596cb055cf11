"""What a bundle's manifest may say, checked before it is trusted (runtime/bundle.py owns the format).

A bundle arrives from elsewhere; its manifest tells the runtime which files to open, which inputs
to accept and what values they may hold. Three checks, each refusing with one BundleError line:

    check_manifest_json   the JSON's shape: every field of the type and range its record expects
    check_manifest_paths  every file it names is a relative path inside the bundle (no .., no links out)
    check_manifest_bounds the limits it promises fit the model it describes: ids below vocab_size,
                          lengths within max_len, a cache's ids in the vocabulary
    check_graph_agrees    (at load) the graph takes and returns what the manifest declares: the same
                          names in order, dtypes, ranks and fixed sizes; at least one output

Loosened bounds would otherwise let ONNX Runtime's own errors (and log lines) reach the user, and
an empty `outputs` would make every call return nothing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from .artifacts import confined_path
from .errors import BundleError

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "uint16",
          "uint32", "uint64", "bool")
# onnxruntime's type strings for the same dtypes
ORT_TYPES = {f"tensor({'float' if d == 'float32' else 'double' if d == 'float64' else d})": d for d in DTYPES}
SHA256_HEX = set("0123456789abcdef")


class _Fields:
    """Reads one JSON object field by field, naming the field path in every refusal."""

    def __init__(self, where: str, data: Any, path: str):
        if not isinstance(data, dict):
            raise BundleError(f"{where}: {path or 'the manifest'} is a JSON {_kind(data)}; expected an object")
        self.where, self.data, self.path = where, data, path

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, expected: str) -> None:
        raise BundleError(f"{self.where}: {self._name(key)} is {_show(self.data.get(key))}; expected {expected}")

    def present(self, key: str, optional: bool) -> bool:
        if key not in self.data or self.data[key] is None:
            if not optional:
                self.fail(key, "a value (the field is required)")
            return False
        return True

    def int(self, key: str, lo: int = 0, optional: bool = False) -> None:
        if self.present(key, optional) and (not _is_int(self.data[key]) or self.data[key] < lo):
            self.fail(key, f"an integer >= {lo}")

    def str(self, key: str, optional: bool = False, choices: Sequence[str] = ()) -> None:
        if not self.present(key, optional):
            return
        value = self.data[key]
        if not isinstance(value, str) or (choices and value not in choices):
            self.fail(key, f"one of {', '.join(choices)}" if choices else "a string")

    def bool(self, key: str, optional: bool = False) -> None:
        if self.present(key, optional) and not isinstance(self.data[key], bool):
            self.fail(key, "true or false")

    def strings(self, key: str, optional: bool = False) -> None:
        if self.present(key, optional):
            value = self.data[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                self.fail(key, "a list of strings")

    def obj(self, key: str, optional: bool = False) -> "_Fields | None":
        if not self.present(key, optional):
            return None
        return _Fields(self.where, self.data[key], self._name(key))

    def specs(self, key: str, optional: bool = False, nonempty: bool = True) -> None:
        if not self.present(key, optional):
            return
        value = self.data[key]
        if not isinstance(value, list) or (nonempty and not value):
            self.fail(key, "a non-empty list of tensors" if nonempty else "a list of tensors")
        names = set()
        for i, spec in enumerate(value):
            t = _Fields(self.where, spec, f"{self._name(key)}[{i}]")
            t.str("name")
            t.str("dtype", choices=DTYPES)
            shape = spec.get("shape")
            if not isinstance(shape, list) or not all((_is_int(d) and d >= 0) or (isinstance(d, str) and d) for d in shape):
                t.fail("shape", "a list of sizes (integers >= 0) and axis names")
            for bound in ("min", "max"):
                v = spec.get(bound)
                if v is not None and (not _is_number(v) or not math.isfinite(v)):
                    t.fail(bound, "a finite number or null")
            if spec.get("min") is not None and spec.get("max") is not None and spec["min"] > spec["max"]:
                t.fail("max", f"a number >= min ({spec['min']})")
            if spec["name"] in names:
                t.fail("name", "a name no other tensor of the list has")
            names.add(spec["name"])


def check_manifest_json(where: str | os.PathLike, data: dict[str, Any]) -> None:
    """Refuse, in one line naming the field, a manifest whose fields have the wrong type or range."""
    m = _Fields(str(where), data, "")
    m.specs("inputs")
    m.specs("outputs")
    axes = m.data.get("axes")
    if not isinstance(axes, dict):
        m.fail("axes", "an object of axis name -> {min, max}")
    for name, lim in axes.items():
        a = _Fields(m.where, lim, f"axes.{name}")
        a.int("min", 0, optional=True)
        a.int("max", 1, optional=True)
        if lim.get("min") is not None and lim.get("max") is not None and lim["max"] < lim["min"]:
            a.fail("max", f"an integer >= min ({lim['min']})")
    m.int("opset", 1)
    model = m.obj("model")
    config = model.obj("config")
    config.int("vocab_size", 1, optional=True)
    config.int("max_len", 1, optional=True)
    config.int("type_vocab_size", 0, optional=True)
    model.str("task", optional=True)
    model.strings("labels", optional=True)
    cache = model.obj("cache", optional=True)
    if cache is not None:
        for key in ("layers", "heads", "head_dim", "max_len"):
            cache.int(key, 1)
        cache.int("pad_id", 0)
        cache.int("start_id", 0, optional=True)
        cache.int("eos_id", 0, optional=True)
        cache.strings("past")
        cache.strings("present")
        cache.strings("cross", optional=True)
        cache.str("encoder", optional=True)
        cache.specs("encoder_inputs", optional=True)
        cache.specs("encoder_outputs", optional=True)
    m.obj("attention").str("kind")
    m.obj("tools", optional=True)
    quantization, parity, deploy = (m.obj(key, optional=True) for key in ("quantization", "parity", "deploy"))
    if quantization is not None:
        quantization.str("recipe")
    if parity is not None:
        parity.bool("passed")
        for key in ("atol", "max_drop"):
            value = parity.data.get(key)
            if value is not None and (not _is_number(value) or not math.isfinite(value) or value < 0):
                parity.fail(key, "a finite number >= 0 or null")
    if deploy is not None:
        deploy.str("target")
    m.str("graph", optional=True)
    m.str("kind", optional=True)
    files = m.obj("files")
    for name, meta in (files.data.items() if files is not None else ()):
        f = _Fields(m.where, meta, f"files[{name!r}]")
        f.int("bytes", 0)
        digest = meta.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= SHA256_HEX:
            f.fail("sha256", "64 lowercase hex digits")


def check_manifest_paths(directory: str | os.PathLike, manifest) -> None:
    """Every file the manifest names stays inside the bundle: its files, its graph, a seq2seq encoder."""
    named = list(manifest.files) + [g.file for g in manifest.graphs]
    for name in named:
        confined_path(directory, name, BundleError)


def check_manifest_bounds(where: str | os.PathLike, manifest) -> None:
    """The limits the manifest promises must fit the model it describes (its config and cache)."""
    config = manifest.model.config
    vocab, max_len = config.get("vocab_size"), config.get("max_len")
    cache = manifest.model.cache
    positions = max(max_len or 0, cache.max_len if cache is not None else 0) or None
    limits = {"input_ids": vocab, "decoder_input_ids": vocab, "position_ids": positions,
              "token_type_ids": config.get("type_vocab_size") or None}
    specs = list(manifest.inputs) + list((cache.encoder_inputs or []) if cache is not None else [])
    for spec in specs:
        hi = limits.get(spec.name)
        if hi is not None and (spec.max is None or spec.max > hi - 1 or spec.min is None or spec.min < 0):
            raise BundleError(f"{where}: {spec.name} accepts values in [{spec.min}, {spec.max}]; the model's table "
                              f"holds [0, {hi - 1}]: the manifest is inconsistent")
    for axis in ("seq", "total", "src", "past"):
        lim = manifest.axes.get(axis)
        if lim is None or positions is None:
            continue
        if lim.get("max") is None or lim["max"] > positions:
            raise BundleError(f"{where}: axis {axis} allows up to {lim.get('max')} tokens; the model's context is "
                              f"{positions}: the manifest is inconsistent")
    if cache is not None and vocab is not None:
        for key in ("pad_id", "start_id", "eos_id"):
            value = getattr(cache, key)
            if value is not None and value >= vocab:
                raise BundleError(f"{where}: model.cache.{key} is {value}; expected a token id below vocab_size {vocab}")
    if cache is not None and max_len is not None and cache.max_len > max(max_len, 1) and manifest.kind != "seq2seq":
        raise BundleError(f"{where}: model.cache.max_len is {cache.max_len}; the model's context is {max_len}")
    if cache is not None:
        names = {s.name for s in manifest.inputs}, {s.name for s in manifest.outputs}
        for key, known in (("past", names[0]), ("present", names[1])):
            missing = [n for n in getattr(cache, key) if n not in known]
            if missing:
                raise BundleError(f"{where}: model.cache.{key} names {missing[0]!r}, which is not a graph "
                                  f"{'input' if key == 'past' else 'output'}: the manifest is inconsistent")


def check_graph_agrees(path: str | os.PathLike, inputs, outputs, session) -> None:
    """The graph in `session` takes and returns what the manifest declares (names in order, dtypes,
    ranks, fixed sizes), with at least one output."""
    if not outputs:
        raise BundleError(f"{path}: the manifest declares no outputs; expected the graph's outputs")
    for what, specs, actual in (("inputs", inputs, session.get_inputs()), ("outputs", outputs, session.get_outputs())):
        names = [a.name for a in actual]
        if names != [s.name for s in specs]:
            raise BundleError(f"{path} has {what} {names} but the manifest declares {[s.name for s in specs]}; "
                              "the bundle is inconsistent")
        for spec, arg in zip(specs, actual):
            dtype = ORT_TYPES.get(arg.type, arg.type)
            if dtype != spec.dtype:
                raise BundleError(f"{path}: {spec.name} is {dtype} in the graph but {spec.dtype} in the manifest; "
                                  "the bundle is inconsistent")
            shape = list(arg.shape) if arg.shape is not None else None
            if shape is None:
                continue
            if len(shape) != len(spec.shape):
                raise BundleError(f"{path}: {spec.name} has rank {len(shape)} in the graph but {len(spec.shape)} in the "
                                  "manifest; the bundle is inconsistent")
            for dim, declared in zip(shape, spec.shape):
                if isinstance(dim, int) and isinstance(declared, int) and dim != declared:
                    raise BundleError(f"{path}: {spec.name} has shape {shape} in the graph but {list(spec.shape)} in "
                                      "the manifest; the bundle is inconsistent")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _kind(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(v), "number")


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
