"""What a bundle's manifest may say, checked before it is trusted (runtime/bundle.py owns the format).

A bundle arrives from elsewhere; its manifest tells the runtime which files to open, which inputs
to accept and what values they may hold. Three checks, each refusing with one BundleError line:

    check_manifest_json   the JSON's shape: every field of the type and range its record expects
                          (derived from the record dataclasses of runtime/records.py)
    check_manifest_paths  every file it names is a relative path inside the bundle (no .., no links out)
    check_manifest_bounds the limits it promises fit the model it describes: ids below vocab_size,
                          lengths within max_len, a cache's ids in the vocabulary
    check_graph_agrees    (at load) the graph takes and returns what the manifest declares: the same
                          names in order, dtypes, ranks and fixed sizes; at least one output

Loosened bounds would otherwise let ONNX Runtime's own errors (and log lines) reach the user, and
an empty `outputs` would make every call return nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import types
import typing
from typing import Any, Mapping

from .artifacts import confined_path
from .errors import BundleError
from .records import DTYPES, Record, TensorSpec, rule

# onnxruntime's type strings for the manifest's dtypes
ORT_TYPES = {f"tensor({'float' if d == 'float32' else 'double' if d == 'float64' else d})": d for d in DTYPES}
SHA256_HEX = set("0123456789abcdef")
NO_RULES = rule()


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

    def present(self, key: str, optional: bool, expected: str | None = None) -> bool:
        if key not in self.data or self.data[key] is None:
            if not optional:
                self.fail(key, expected or "a value (the field is required)")
            return False
        return True

    def obj(self, key: str, optional: bool = False) -> "_Fields | None":
        if not self.present(key, optional):
            return None
        return _Fields(self.where, self.data[key], self._name(key))

    def value(self, key: str, kind: Any, required: bool, rules: Mapping[str, Any] = NO_RULES) -> None:
        """Refuse the field unless it holds a JSON value of the declared type `kind` within `rules`."""
        if not self.present(key, optional=not required, expected=rules["expected"]):
            return
        kind, nullable = _without_none(kind)
        origin, args = typing.get_origin(kind) or kind, typing.get_args(kind)
        if isinstance(kind, type) and issubclass(kind, Record):
            check_record(self.obj(key), kind)
        elif origin is dict:
            self.mapping(key, args[1] if args else Any, rules)
        elif origin in (list, tuple) and args[0] is TensorSpec:
            self.specs(key)
        elif kind is not Any and not _fits(self.data[key], kind, rules):
            self.fail(key, rules["expected"] or _wanted(kind, rules, nullable))

    def mapping(self, key: str, values: Any, rules: Mapping[str, Any]) -> None:
        obj = self.obj(key)
        for name, lo in rules["keys"].items():  # named keys of an object whose schema lives elsewhere
            obj.value(name, int, False, rule(min=lo))
        if values is not Any:
            for name in obj.data:
                obj.value(name, values, True)

    def specs(self, key: str) -> None:
        value = self.data[key]
        if not isinstance(value, list) or not value:
            self.fail(key, "a non-empty list of tensors")
        names = set()
        for i, spec in enumerate(value):
            t = _Fields(self.where, spec, f"{self._name(key)}[{i}]")
            check_record(t, TensorSpec)
            if spec.get("min") is not None and spec.get("max") is not None and spec["min"] > spec["max"]:
                t.fail("max", f"a number >= min ({spec['min']})")
            if spec["name"] in names:
                t.fail("name", "a name no other tensor of the list has")
            names.add(spec["name"])


def check_record(fields: _Fields, record: type) -> None:
    """Check an object against a record dataclass of runtime/records.py: a field without a default is
    required, `X | None` may be null or absent, the value must be of the field's type and within its
    `rule`. Keys the record does not declare are its `extra`, not checked."""
    for f, kind in _declared(record):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fields.value(f.name, kind, required, f.metadata or NO_RULES)


def check_record_json(where: str | os.PathLike, data: Any, record: type, path: str = "") -> None:
    """`check_record` on one JSON object, refusals naming fields under `path`."""
    check_record(_Fields(str(where), data, path), record)


@functools.cache
def _declared(record: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(record)
    return [(f, hints[f.name]) for f in dataclasses.fields(record) if f.name != "extra"]


def _without_none(kind: Any) -> tuple[Any, bool]:
    """(the type with None taken out, whether it allowed None)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        rest = tuple(a for a in args if a is not type(None))
        return (rest[0] if len(rest) == 1 else typing.Union[rest]), True
    return kind, False


def _fits(v: Any, kind: Any, rules: Mapping[str, Any]) -> bool:
    """A JSON value of type `kind`: numbers at least rules["min"], strings among rules["choices"]. In a
    list of sizes and names (`int | str`), a name must not be empty."""
    origin, args = typing.get_origin(kind) or kind, typing.get_args(kind)
    lo = rules["min"]
    if kind is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(v, a, rules) and (v != "") for a in args)
    if kind is bool:
        return isinstance(v, bool)
    if kind is int:
        return _is_int(v) and v >= (lo or 0)
    if kind is float:
        return _is_number(v) and math.isfinite(v) and (lo is None or v >= lo)
    if kind is str:
        return isinstance(v, str) and (not rules["choices"] or v in rules["choices"])
    if origin in (list, tuple):
        return isinstance(v, list) and all(_fits(x, args[0], rules) for x in v)
    if origin is dict:
        return isinstance(v, dict)
    raise TypeError(f"no manifest check for fields of type {kind}")  # a new kind of field in records.py


def _wanted(kind: Any, rules: Mapping[str, Any], nullable: bool) -> str:
    """What a field of type `kind` must hold, as a refusal says it."""
    origin, args = typing.get_origin(kind) or kind, typing.get_args(kind)
    lo = rules["min"]
    if kind is bool:
        return "true or false"
    if kind is int:
        return f"an integer >= {lo or 0}"
    if kind is float:
        return "a finite number" + (f" >= {lo}" if lo is not None else "") + (" or null" if nullable else "")
    if kind is str:
        return f"one of {', '.join(rules['choices'])}" if rules["choices"] else "a string"
    if origin in (list, tuple):
        item = typing.get_origin(args[0]) or args[0]
        return "a list of " + {str: "strings", int: "integers", float: "numbers", dict: "objects"}.get(item, "values")
    return "an object"


def check_manifest_json(where: str | os.PathLike, data: dict[str, Any], manifest: type) -> None:
    """Refuse, in one line naming the field, a manifest whose fields have the wrong type or range.

    Every field is checked as its dataclass declares it: `manifest` is runtime/bundle.py's `Manifest`
    (passed in, since bundle.py reads through this module), its records those of runtime/records.py.
    `format` and `format_version` were checked before (bundle.check_version); `axes` and `files`
    are checked entry by entry below, for what their types cannot say (a max against its min, digests)."""
    m = _Fields(str(where), data, "")
    for f, kind in _declared(manifest):
        if f.name not in ("format", "format_version", "axes", "files"):
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            m.value(f.name, kind, required, f.metadata or NO_RULES)
    axes = m.data.get("axes")
    if not isinstance(axes, dict):
        m.fail("axes", "an object of axis name -> {min, max}")
    for name, lim in axes.items():
        a = _Fields(m.where, lim, f"axes.{name}")
        a.value("min", int, False, rule(min=0))
        a.value("max", int, False, rule(min=1))
        if lim.get("min") is not None and lim.get("max") is not None and lim["max"] < lim["min"]:
            a.fail("max", f"an integer >= min ({lim['min']})")
    files = m.obj("files")  # every bundle lists its files, with their sizes and digests
    for name, meta in files.data.items():
        f = _Fields(m.where, meta, f"files[{name!r}]")
        f.value("bytes", int, True)
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
