"""The bundle format: the one module that reads and writes bundle directories.

A bundle is a directory:

    model.onnx        the graph (its weights beside it in model.onnx.data when over 64 MB: runtime/graph_files.py)
    manifest.json     what the graph expects and how it was made (see `Manifest`)
    tokenizer.json    when the model reads text
    encoder.onnx      a seq2seq bundle's second graph (see `CacheRecord`)
    signature.json    when signed (runtime/signing.py); written after the manifest, so not listed in it

A deployment folder (`edgeformer deploy`) is a bundle whose manifest names another graph file for
its device (`graph`: model.ort for phones, model.engine for TensorRT, a Triton repository's
model.onnx) and records the target and what was checked (`deploy`).

The manifest records the kind of bundle (`KINDS`; runtime/kinds.py refines it by what the bundle
reads, `Manifest.modality`, derived from the fields below), the model config, every input and output (name,
dtype, symbolic shape, value bounds), the named axes and their limits, the opset, the attention
fusion, the quantization recipe, the parity results the bundle passed, the versions of the tools
that made it, and a sha256 for every other file. `open_bundle` refuses a bundle whose files do
not match, and a manifest that runtime/manifest_checks.py does not pass (types of every field,
paths inside the folder, bounds within what the model's config allows).

Versions (`format_version`): 1 had no `kind` (it is inferred from the model's cache record);
2 adds `kind`; 3 adds the cache record's `logits_to_keep`, the name of a cached decoder's int64
input of shape (1,) that picks how many last positions get logits (0: all), so a prompt's step returns
(B, 1, V) instead of (B, T, V); the runtime reads the last row itself from a version 1 or 2 graph;
4 adds the kind `streaming-speech` and its record, `model.stream` (`StreamRecord`): a Conformer step
that takes a window of audio and its caches and returns that chunk's logits and the caches.
Every version listed in READS loads; a newer one is refused with a message that says so. The
nested records are typed (`ModelRecord`, `CacheRecord`, ...); keys a record does not know are kept
in its `extra` and written back, so a newer writer's additions survive a copy.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import check_format_version, confined_path, read_json_object, sha256_file
from .errors import BundleError
from .manifest_checks import check_manifest_bounds, check_manifest_json, check_manifest_paths
from .records import (AttentionRecord, CacheRecord, DeployRecord, GraphSpec, ModelRecord, ParityRecord,  # noqa: F401
                      QuantizationRecord, Record, StreamRecord, TensorSpec, _to_json, rule)

FORMAT = "edgeformer.bundle"
FORMAT_VERSION = 4
READS = (1, 2, 3, 4)  # every version this project has written
LOGITS_TO_KEEP = "logits_to_keep"  # a cached decoder's input from format 3 on (transformers' name and meaning)
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
SIGNATURE_FILE = "signature.json"  # runtime/signing.py: written after the manifest, so not listed in it

PLAIN, CACHED_DECODER, SEQ2SEQ, STREAMING_SPEECH = "plain", "cached-decoder", "seq2seq", "streaming-speech"
KINDS = (PLAIN, CACHED_DECODER, SEQ2SEQ, STREAMING_SPEECH)
ADDED_IN = {STREAMING_SPEECH: 4}  # kinds newer than format 1's
TEXT, IMAGE, AUDIO, IDS = "text", "image", "audio", "ids"  # what a bundle reads (`Manifest.modality`)


_RECORDS = {"model": ModelRecord, "attention": AttentionRecord, "quantization": QuantizationRecord,
            "parity": ParityRecord, "deploy": DeployRecord}


@dataclass
class Manifest:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    axes: dict[str, dict[str, int]]  # axis name -> {"min": .., "max": ..}
    opset: int = field(metadata=rule(min=1))
    model: ModelRecord
    attention: AttentionRecord
    tools: dict[str, str] = field(default_factory=dict)  # the versions that made it
    quantization: QuantizationRecord | None = None
    parity: ParityRecord | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    graph: str = MODEL_FILE  # the file the runtime loads, relative to the bundle
    deploy: DeployRecord | None = None  # target, artifact, checks, tool versions (edgeformer deploy)
    kind: str | None = None  # one of KINDS; None: inferred from the model record
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _RECORDS and isinstance(value, dict):  # writers may assign a record as a plain dict
            value = _RECORDS[name].from_json(value)
        object.__setattr__(self, name, value)

    def __post_init__(self) -> None:
        if self.kind is None:
            self.kind = infer_kind(self.model)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            d[f.name] = _to_json(getattr(self, f.name))
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Manifest":
        d = dict(d)
        d["inputs"] = [TensorSpec.from_json(t) for t in d["inputs"]]
        d["outputs"] = [TensorSpec.from_json(t) for t in d["outputs"]]
        return cls(**d)

    @property
    def parity_atol(self) -> float | None:
        """The float32 tolerance the bundle passed at export (None for a quantized bundle's budget)."""
        return self.parity.atol if self.parity is not None else None

    @property
    def config(self) -> dict[str, Any]:
        return self.model.config

    @property
    def cache(self) -> CacheRecord | None:
        return self.model.cache

    @property
    def modality(self) -> str:
        """What the bundle reads: AUDIO (a speech recogniser's or keyword spotter's waveforms), IMAGE (a ViT's pixels), TEXT
        (it carries a tokenizer) or IDS (token ids). Derived from what every format version holds."""
        if self.model.task in ("speech-recognition", "audio-classification"):
            return AUDIO
        if self.config.get("image_size"):
            return IMAGE
        return TEXT if TOKENIZER_FILE in self.files else IDS

    @property
    def graphs(self) -> list[GraphSpec]:
        """Every graph the runtime opens: the main one first, then a seq2seq bundle's encoder."""
        graphs = [GraphSpec("model", self.graph, self.inputs, self.outputs)]
        cache = self.model.cache
        if cache is not None and cache.encoder is not None:
            graphs.append(GraphSpec("encoder", cache.encoder, cache.encoder_inputs or [], cache.encoder_outputs or []))
        return graphs


def infer_kind(model: ModelRecord) -> str:
    """The kind of a bundle whose manifest does not say (format version 1)."""
    cache = model.cache
    if cache is None:
        return PLAIN
    return SEQ2SEQ if cache.encoder is not None else CACHED_DECODER


@dataclass
class Bundle:
    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        """The graph the runtime loads: model.onnx, or a deployment's model.ort / model.engine."""
        return self.path / self.manifest.graph

    @property
    def tokenizer_path(self) -> Path | None:
        p = self.path / TOKENIZER_FILE
        return p if TOKENIZER_FILE in self.manifest.files else None


def write_manifest(directory: str | os.PathLike, manifest: Manifest) -> Manifest:
    """Hash every file in `directory` into `manifest.files` and write manifest.json there (this version's format)."""
    directory = Path(directory)
    files = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name not in (MANIFEST_FILE, SIGNATURE_FILE):
            rel = p.relative_to(directory).as_posix()
            files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    for graph in manifest.graphs:
        if graph.file not in files:
            raise BundleError(f"{directory} has no {graph.file}; a bundle needs its {graph.name} graph")
    manifest.files = files
    manifest.format, manifest.format_version = FORMAT, FORMAT_VERSION
    text = json.dumps(manifest.to_json(), indent=2, sort_keys=False)
    (directory / MANIFEST_FILE).write_text(text + "\n")
    return manifest


def check_version(path: Path, data: dict[str, Any]) -> None:
    """Refuse, in one line, a manifest of another format or of a version this edgeformer cannot read."""
    if data.get("format") != FORMAT:
        raise BundleError(f"{path} is not an edgeformer manifest (expected format '{FORMAT}')")
    check_format_version(path, data.get("format_version"), FORMAT_VERSION, READS, BundleError)


def read_manifest(directory: str | os.PathLike) -> Manifest:
    data = read_json_object(directory, MANIFEST_FILE, BundleError, "bundle", "edgeformer export")
    path = Path(directory) / MANIFEST_FILE
    check_version(path, data)
    if data["format_version"] == 1 and "kind" in data:
        raise BundleError(f"{path} has a kind field at format_version 1; the bundle is corrupt")
    model = data.get("model")
    cache = model.get("cache") if isinstance(model, dict) else None
    if data["format_version"] < 3 and isinstance(cache, dict) and LOGITS_TO_KEEP in cache:
        raise BundleError(f"{path} has model.cache.{LOGITS_TO_KEEP} at format_version {data['format_version']}; "
                          "the field came with version 3: the bundle is corrupt")
    check_manifest_json(path, data, Manifest)
    known = {f.name for f in dataclasses.fields(Manifest)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BundleError(f"{path} has unknown field {unknown[0]!r}; this edgeformer knows: {', '.join(sorted(known))}")
    try:
        manifest = Manifest.from_json(data)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        detail = str(e).split("__init__() ")[-1]  # the field, not the constructor that noticed it
        raise BundleError(f"{path} has a malformed record ({detail}); the bundle is corrupt") from None
    if manifest.kind not in KINDS:
        raise BundleError(f"{path} is a bundle of kind {manifest.kind!r}; this edgeformer knows: {', '.join(KINDS)}")
    if manifest.format_version < ADDED_IN.get(manifest.kind, 1):
        raise BundleError(f"{path} is a {manifest.kind} bundle at format_version {manifest.format_version}; the kind "
                          f"came with version {ADDED_IN[manifest.kind]}: the bundle is corrupt")
    check_manifest_bounds(path, manifest)
    check_logits_to_keep(path, manifest)
    check_stream(path, manifest)
    return manifest


def check_stream(path: Path, manifest: Manifest) -> None:
    """A streaming-speech bundle has a stream record, and only it; the record's names are the graph's."""
    stream = manifest.model.stream
    if (stream is None) != (manifest.kind != STREAMING_SPEECH):
        raise BundleError(f"{path}: a {manifest.kind} bundle " + ("needs" if stream is None else "has no")
                          + " model.stream record: the manifest is inconsistent")
    if stream is None:
        return
    inputs, outputs = {s.name for s in manifest.inputs}, {s.name for s in manifest.outputs}
    missing = [n for n in [stream.valid_frames, *stream.state] if n not in inputs]
    missing += [n for n in stream.next_state if n not in outputs]
    if missing or len(stream.state) != len(stream.next_state) or stream.window_samples < stream.hop_samples:
        raise BundleError(f"{path}: model.stream does not match the graph ({', '.join(missing) or 'state and next_state differ in length, or the window is shorter than its hop'}); the manifest is inconsistent")


def check_logits_to_keep(path: Path, manifest: Manifest) -> None:
    """The input the cache record names for `logits_to_keep` is an int64 input of shape (1,) of the main graph."""
    cache = manifest.cache
    name = cache.logits_to_keep if cache is not None else None
    if name is None:
        return
    spec = next((s for s in manifest.inputs if s.name == name), None)
    if spec is None or spec.dtype != "int64" or tuple(spec.shape) != (1,):
        found = "is not a graph input" if spec is None else f"is {spec.dtype} of shape {list(spec.shape)}"
        raise BundleError(f"{path}: model.cache.logits_to_keep names {name!r}, which {found}; expected an int64 input "
                          "of shape [1]: the manifest is inconsistent")


def verify_files(directory: str | os.PathLike, manifest: Manifest) -> None:
    """Raise BundleError naming the first file that is missing or whose sha256 differs."""
    directory = Path(directory)
    for rel, meta in manifest.files.items():
        p = confined_path(directory, rel, BundleError)
        if not p.is_file():
            raise BundleError(f"{p} is listed in the manifest but missing; the bundle is incomplete")
        if p.stat().st_size != meta["bytes"] or sha256_file(p) != meta["sha256"]:
            raise BundleError(f"{p} does not match the sha256 in the manifest; the file was modified or corrupted")


def open_bundle(directory: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read and check a bundle. `verify=False` skips hashing (for trusted, read-only storage)."""
    if not isinstance(directory, (str, os.PathLike)):
        raise BundleError(f"bundle path of type {type(directory).__name__}; expected a folder path (str or Path)")
    directory = Path(directory)
    manifest = read_manifest(directory)
    check_manifest_paths(directory, manifest)
    for graph in manifest.graphs:
        if graph.file not in manifest.files:
            raise BundleError(f"{directory / MANIFEST_FILE} lists no {graph.file}; the bundle is corrupt")
    if verify:
        verify_files(directory, manifest)
    return Bundle(directory, manifest)
