"""The typed records of a bundle's manifest (runtime/bundle.py owns the format and its versions).

`TensorSpec` describes one graph input or output; each nested record of the manifest (`model`,
its `cache`, `attention`, `quantization`, `parity`, `deploy`) is a dataclass. Keys a record does not
know are kept in its `extra` and written back, so a newer writer's additions survive a copy.

These declarations are the schema: runtime/manifest_checks.py derives its checks of a manifest
from them (a field without a default is required, `X | None` may be null, the type says what the
JSON value must be) and from the `rule(...)` a field carries for what its type cannot say (a lower
bound, a set of choices). A new field is one line here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "uint16",
          "uint32", "uint64", "bool")


def rule(min: float | None = None, choices: Sequence[str] = (), keys: Mapping[str, int] | None = None,
         expected: str | None = None) -> dict[str, Any]:
    """What a field's type cannot say, for runtime/manifest_checks.py: numbers at least `min`; a string
    among `choices`; an object whose integer `keys` are at least the bound given for each (the model
    config, which modeling/ owns); `expected`, the refusal's wording where the type's is too plain."""
    return {"min": min, "choices": tuple(choices), "keys": dict(keys or {}), "expected": expected}


def _field(default: Any = dataclasses.MISSING, **rules: Any) -> Any:
    """A dataclass field (required unless given a default) carrying `rule(**rules)`."""
    return field(default=default, metadata=rule(**rules))


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. `shape` holds ints for fixed sizes, names for dynamic axes."""

    name: str
    dtype: str = _field(choices=DTYPES)
    shape: tuple[int | str, ...] = _field(min=0, expected="a list of sizes (integers >= 0) and axis names")
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


def _specs(value: Any) -> list[TensorSpec] | None:
    return None if value is None else [v if isinstance(v, TensorSpec) else TensorSpec.from_json(v) for v in value]


class Record:
    """A typed manifest record. Fields are attributes; keys it does not know live in `extra`.

    Readers use attributes; a record equals another record, or the JSON object, of the same content.
    """

    _optional: ClassVar[tuple[str, ...]] = ()  # fields left out of the JSON when None
    _nested: ClassVar[dict[str, Any]] = {}  # field -> how to read it from JSON

    def __post_init__(self) -> None:
        for name, read in self._nested.items():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, read(value))

    @classmethod
    def _fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "extra"]

    @classmethod
    def from_json(cls, d: "dict[str, Any] | Record") -> Any:
        if isinstance(d, cls):
            return d
        if not isinstance(d, dict):
            raise TypeError(f"{cls.__name__} expects an object, got {type(d).__name__}")
        known = cls._fields()
        return cls(**{k: v for k, v in d.items() if k in known}, extra={k: v for k, v in d.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self._fields():
            value = getattr(self, name)
            if value is None and name in self._optional:
                continue
            out[name] = _to_json(value)
        out.update(self.extra)
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (dict, Record)):
            return self.to_json() == (other.to_json() if isinstance(other, Record) else other)
        return NotImplemented

    __hash__ = None  # mutable, like the dicts it replaces


def _to_json(value: Any) -> Any:
    if isinstance(value, (Record, TensorSpec)):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


@dataclass(eq=False)
class CacheRecord(Record):
    """How to drive a generation bundle without PyTorch: its cache tensors and special tokens.

    A seq2seq bundle also names its encoder graph, that graph's inputs and outputs, and the
    cross-attention tensors the encoder hands the decoder.
    """

    layers: int = _field(min=1)
    heads: int = _field(min=1)
    head_dim: int = _field(min=1)
    past: list[str]
    present: list[str]
    max_len: int = _field(min=1)
    pad_id: int
    layout: list[str] = field(default_factory=lambda: ["batch", "heads", "past", "head_dim"])
    dtype: str = "float32"
    start_id: int | None = None  # seq2seq: the decoder's first token
    eos_id: int | None = None
    # An imported model's own end-of-turn tokens (a Llama's </s>, <|im_end|>, <|eot_id|>): generation
    # stops at these instead of the end-of-text token the tokenizer's names suggest.
    end_ids: list[int] | None = None
    bos_id: int | None = None  # the token a chat template's bos_token names
    chat_template: str | None = None  # the model's Jinja chat template (runtime/chat.py renders it)
    cross: list[str] | None = None  # seq2seq: the encoder's outputs, the decoder's cross-attention inputs
    encoder: str | None = None  # seq2seq: the encoder graph's file
    encoder_inputs: list[TensorSpec] | None = None
    encoder_outputs: list[TensorSpec] | None = None
    # Format 3 on: the graph's int64 input of shape (1,) that picks how many last positions get logits (0: all);
    # None: the graph returns every position's logits and the runtime reads the last itself.
    logits_to_keep: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    _optional: ClassVar = ("start_id", "end_ids", "bos_id", "chat_template", "cross", "encoder", "encoder_inputs",
                           "encoder_outputs", "logits_to_keep")
    _nested: ClassVar = {"encoder_inputs": _specs, "encoder_outputs": _specs}

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        if self.encoder is None and self.eos_id is None:
            out.pop("eos_id")  # a cached decoder's record has no eos_id (its tokenizer has it)
        return out


@dataclass(eq=False)
class StreamRecord(Record):
    """How to drive a streaming speech bundle (format 4 on; modeling/models/conformer_stream.py draws the step).

    Each step reads `window_samples` of audio and then moves `hop_samples` on (the windows overlap, so the
    front end's frames at a boundary are exact); it returns `chunk_frames` frames of logits. The inputs
    named in `state` start as zeros and take the outputs named in `next_state` (in that order) after
    every step; `valid_frames` names the int64 input that says how many of a step's frames are speech.
    """

    chunk_frames: int = _field(min=1)
    left_chunks: int = _field(min=1)
    window_samples: int = _field(min=1)
    hop_samples: int = _field(min=1)
    valid_frames: str
    state: list[str]
    next_state: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class ModelRecord(Record):
    # the ModelConfig as a dict (modeling.config owns its fields); the sizes the manifest's bounds rest on
    config: dict[str, Any] = _field(keys={"vocab_size": 1, "max_len": 1, "type_vocab_size": 0})
    task: str | None = None
    labels: list[str] | None = None
    parameters: int | None = None
    checkpoint: dict[str, Any] | None = None  # {"name", "sha256"} of the source weights, "task" it was trained on
    cache: CacheRecord | None = None  # generation bundles
    stream: StreamRecord | None = None  # streaming speech bundles (format 4 on)
    extra: dict[str, Any] = field(default_factory=dict)

    _optional: ClassVar = ("cache", "stream")
    _nested: ClassVar = {"cache": CacheRecord.from_json, "stream": StreamRecord.from_json}


@dataclass(eq=False)
class AttentionRecord(Record):
    kind: str  # "fused" | "unfused" | "packed" (onnxruntime's com.microsoft.Attention: CPU and CUDA only)
    op: str | None = None
    count: int | None = None
    nodes: int | None = None
    layout: str | None = None  # fused: "3d" | "4d"
    encoder: "AttentionRecord | None" = None  # seq2seq: the encoder graph's
    extra: dict[str, Any] = field(default_factory=dict)

    _optional: ClassVar = ("nodes", "layout", "encoder")
    _nested: ClassVar = {"encoder": lambda d: AttentionRecord.from_json(d)}


# The weight-only block recipes (MatMulNBits) and their bits: their bundles record block_size, symmetric and
# accuracy_level, and their MatMulNBits nodes quantize activations per block on each CPU's own kernel.
BLOCK_RECIPES = {"int4": 4, "int8-weights": 8}


@dataclass(eq=False)
class QuantizationRecord(Record):
    recipe: str
    block_size: int | None = None
    symmetric: bool | None = None
    kept_float: list[str] = field(default_factory=list)
    smooth_alpha: float | None = None
    source_bundle: str | None = None
    reduce_range: bool | None = None
    weight_type: str | None = None
    per_channel: bool | None = None
    calibration: dict[str, Any] | None = None
    measured: dict[str, Any] | None = None  # size ratio and latency on the CPU that made it
    accuracy_level: int | None = None  # BLOCK_RECIPES: MatMulNBits' compute type (0: float32, 4: int8 activations)
    coverage: dict[str, Any] | None = None  # generation bundles: per graph file, what the recipe quantized
    extra: dict[str, Any] = field(default_factory=dict)

    _optional: ClassVar = ("reduce_range", "weight_type", "per_channel", "measured", "accuracy_level", "coverage")


@dataclass(eq=False)
class ParityRecord(Record):
    """What the bundle passed: a float32 tolerance (`atol`, per output `worst` and `cases`) or an
    accuracy budget (`kind` "budget": `max_drop` and the measured `fidelity`)."""

    passed: bool
    atol: float | None = _field(None, min=0)
    worst: dict[str, Any] | None = None
    cases: list[dict[str, Any]] | None = None
    kind: str | None = None
    max_drop: float | None = _field(None, min=0)
    fidelity: dict[str, Any] | None = None
    eval_texts: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    _optional: ClassVar = ("atol", "worst", "cases", "kind", "fidelity", "eval_texts")

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        if self.kind != "budget" and out.get("max_drop") is None:
            out.pop("max_drop", None)
        return out


@dataclass(eq=False)
class DeployRecord(Record):
    """`edgeformer deploy`'s record; each target's own facts (tensorrt, triton, arm64, ...) are in `extra`."""

    target: str
    graph: str | None = None
    source: dict[str, Any] | None = None
    fixed_shape: dict[str, int] | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    host: dict[str, Any] | None = None
    tools: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphSpec:
    """One graph of a bundle: its file and what it takes and returns."""

    name: str  # "model" (the one `graph` names), "encoder", ...
    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
