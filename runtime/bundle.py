"""The bundle format: the one module that reads and writes bundle directories.

A bundle is a directory:

    model.onnx        the graph (with external data beside it when over 2 GB)
    manifest.json     what the graph expects and how it was made (see `Manifest`)
    tokenizer.json    when the model reads text

A deployment folder (`edgeformer deploy`) is a bundle whose manifest names another graph file for
its device (`graph`: model.ort for phones, model.engine for TensorRT, a Triton repository's
model.onnx) and records the target and what was checked (`deploy`).

The manifest records the model config, every input and output (name, dtype, symbolic shape,
value bounds), the named axes and their limits, the opset, the attention fusion, the quantization
recipe, the parity results the bundle passed, the versions of the tools that made it, and a
sha256 for every other file. `open_bundle` refuses a bundle whose files do not match.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import read_json_object, sha256_file
from .errors import BundleError

FORMAT = "edgeformer.bundle"
FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. `shape` holds ints for fixed sizes, names for dynamic axes."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    min: float | None = None  # inclusive bounds on values (token ids, mask values)
    max: float | None = None

    def to_json(self) -> dict[str, Any]:
        d = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.min is not None:
            d["min"] = self.min
        if self.max is not None:
            d["max"] = self.max
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(d["name"], d["dtype"], tuple(d["shape"]), d.get("min"), d.get("max"))


@dataclass
class Manifest:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    axes: dict[str, dict[str, int]]  # axis name -> {"min": .., "max": ..}
    opset: int
    model: dict[str, Any]  # {"config": {...}, "task": ..., "labels": [...]}
    attention: dict[str, Any]  # {"kind": "fused"|"unfused", "op": ..., "count": ..}
    tools: dict[str, str]
    quantization: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    graph: str = MODEL_FILE  # the file the runtime loads, relative to the bundle
    deploy: dict[str, Any] | None = None  # target, artifact, checks, tool versions (edgeformer deploy)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = [t.to_json() for t in self.inputs]
        d["outputs"] = [t.to_json() for t in self.outputs]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Manifest":
        d = dict(d)
        d["inputs"] = [TensorSpec.from_json(t) for t in d["inputs"]]
        d["outputs"] = [TensorSpec.from_json(t) for t in d["outputs"]]
        return cls(**d)

    @property
    def config(self) -> dict[str, Any]:
        return self.model.get("config", {})


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
    """Hash every file in `directory` into `manifest.files` and write manifest.json there."""
    directory = Path(directory)
    files = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != MANIFEST_FILE:
            rel = p.relative_to(directory).as_posix()
            files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    if manifest.graph not in files:
        raise BundleError(f"{directory} has no {manifest.graph}; a bundle needs its graph")
    manifest.files = files
    text = json.dumps(manifest.to_json(), indent=2, sort_keys=False)
    (directory / MANIFEST_FILE).write_text(text + "\n")
    return manifest


def read_manifest(directory: str | os.PathLike) -> Manifest:
    data = read_json_object(directory, MANIFEST_FILE, BundleError, "bundle", "edgeformer export")
    path = Path(directory) / MANIFEST_FILE
    if data.get("format") != FORMAT:
        raise BundleError(f"{path} is not an edgeformer manifest (expected format '{FORMAT}')")
    if data.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{path} has format_version {data.get('format_version')!r}; this edgeformer reads version {FORMAT_VERSION}"
        )
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError) as e:
        raise BundleError(f"{path} is missing or has malformed field {e}; the bundle is corrupt") from None


def verify_files(directory: str | os.PathLike, manifest: Manifest) -> None:
    """Raise BundleError naming the first file that is missing or whose sha256 differs."""
    directory = Path(directory)
    for rel, meta in manifest.files.items():
        p = directory / rel
        if not p.is_file():
            raise BundleError(f"{p} is listed in the manifest but missing; the bundle is incomplete")
        if p.stat().st_size != meta["bytes"] or sha256_file(p) != meta["sha256"]:
            raise BundleError(f"{p} does not match the sha256 in the manifest; the file was modified or corrupted")


def open_bundle(directory: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read and check a bundle. `verify=False` skips hashing (for trusted, read-only storage)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest.graph not in manifest.files:
        raise BundleError(f"{directory / MANIFEST_FILE} lists no {manifest.graph}; the bundle is corrupt")
    if verify:
        verify_files(directory, manifest)
    return Bundle(directory, manifest)
