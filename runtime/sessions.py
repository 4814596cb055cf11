"""ONNX Runtime sessions with edgeformer's settings: the one place edgeformer creates them.

`runtime.load` opens every graph of a bundle here with one `SessionSettings`; a `Model` owns the
sessions. Tools that need a bare session for a graph file call `create_session` too, naming what
they need beyond the defaults: the deploy checks a graph optimization level, a thread count and
every fusion (to run the kernels a device runs); debug probes and smoothing a graph with its
intermediate tensors exposed (`expose_tensors`) and optimizations off, so each tensor is the one
the graph as written computes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import onnxruntime as ort

from .bundle import Manifest
from .errors import BundleError, EdgeformerError

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
}
CPU = "CPUExecutionProvider"
# ONNX Runtime's graph optimization levels by name: "none" runs the graph as written.
OPTIMIZATION_LEVELS = {
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

# ONNX Runtime graph fusions left off by default. SkipLayerNormFusion replaces Add + LayerNormalization
# with a SkipLayerNormalization kernel that measured slower on x86 CPUs with AVX2: on all-MiniLM-L6-v2
# at 128 tokens, 20.5-20.9 ms with it and 19.5-19.8 ms without at batch 1, 157-159 ms and 147-149 ms at
# batch 8 (2 cores). Pass disabled_optimizers=() to `load` to have every fusion.
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


@dataclass(frozen=True)
class SessionSettings:
    """How `load` makes the session of every graph of a bundle."""

    providers: Sequence[str] | None = None
    spin: bool = False
    threads: int | None = None
    provider_options: Mapping[str, Mapping[str, Any]] | None = None
    disabled_optimizers: Sequence[str] = DISABLED_OPTIMIZERS
    config: Mapping[str, str] = field(default_factory=dict)


class SessionError(EdgeformerError):
    """onnxruntime could not open a graph; `reason` says why in one line (`load_failure_reason`), for
    callers that word the refusal."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class BundleGraphError(SessionError, BundleError):
    """A bundle's graph that onnxruntime cannot open, though its bytes match the manifest's hash."""


# onnxruntime's refusal reads "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from PATH failed:DETAIL",
# DETAIL often led by the C++ source line and function that noticed ("model.cc:256 onnxruntime::Model::Model(...)").
_ORT_STATUS = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*(\w+)\s*:\s*")
_LOAD_FROM = re.compile(r"^Load model(?: from .*?)? failed:\s*")
_SOURCE_LINE = re.compile(r"(?:[\w.+-]*/)*[\w.+-]+\.(?:cc|cpp|h|hpp):\d+\s+")
_SIGNATURE = re.compile(r"^[\w:<>,*&~ ]*?[\w>]\(")  # a C++ function signature up to its "("
_REWORDED = [  # onnxruntime's wording of a common failure -> what it means for the graph file
    (re.compile(r"Protobuf parsing failed"), lambda m: "its bytes do not parse as an ONNX graph (truncated, corrupted, or "
                                                      "not an ONNX file)"),
    (re.compile(r"No graph was found in the protobuf"), lambda m: "it holds no ONNX graph (an empty or foreign file)"),
    (re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)"),
     lambda m: f"the graph has ONNX IR version {m[1]}; this onnxruntime reads up to {m[2]}"),
    (re.compile(r"Opset (\d+) is under development.*?domain (\S+) is till opset (\d+)"),
     lambda m: f"the graph uses opset {m[1]} of {m[2]}; this onnxruntime supports up to opset {m[3]}"),
    (re.compile(r"Initializer '([^']*)': raw_data size \((\d+) bytes\) does not match expected size from shape and data "
                r"type \((\d+) bytes\)"),
     lambda m: f"the weight {m[1]!r} holds {m[2]} bytes where its shape and type need {m[3]}"),
    (re.compile(r"In Node, \(\"([^\"]*)\", ([\w.]+),.*?, Error No Op registered for (\S+) with domain_version of (\d+)"),
     lambda m: f"the graph is invalid: node {m[1]!r} is of type {m[3]}, which opset {m[4]} does not have"),
    (re.compile(r"In Node, \(\"([^\"]*)\", ([\w.]+),.*?, Error (.*)"),
     lambda m: f"the graph is invalid: node {m[1]!r} ({m[2]}): {_clause(m[3])}"),
    (re.compile(r"^(?:This is an invalid model\.|Invalid model\.)\s*(.*)"), lambda m: f"the graph is invalid: {_clause(m[1])}"),
]
MAX_REASON = 240


def load_failure_reason(text: str) -> str:
    """onnxruntime's refusal to open a graph, in one line of edgeformer's words: its status code, the
    path it echoes and its C++ source locations and function signatures dropped, a common failure
    reworded, and what is left cut at a word boundary."""
    detail = " ".join(str(text).split())
    detail = _LOAD_FROM.sub("", _ORT_STATUS.sub("", detail))
    while (loc := _SOURCE_LINE.search(detail)) is not None:
        rest = detail[loc.end():]
        sig = _SIGNATURE.match(rest)
        if sig is not None:
            rest = _after_parentheses(rest, sig.end() - 1)
        elif re.match(r"^[A-Za-z_]\w*\s+\S", rest):  # a bare function name before the message
            rest = rest.split(None, 1)[1]
        detail = detail[: loc.start()] + rest
    for pattern, words in _REWORDED:
        m = pattern.search(detail)
        if m is not None:
            detail = words(m)
            break
    detail = detail.strip() or "no reason given"
    if len(detail) > MAX_REASON:
        detail = detail[:MAX_REASON].rsplit(" ", 1)[0] + " ..."
    return detail


def _clause(sentence: str) -> str:
    """A sentence as a clause that continues ours: lower-case start, no closing period."""
    sentence = sentence.strip().rstrip(".")
    return sentence[:1].lower() + sentence[1:]


def _after_parentheses(text: str, start: int) -> str:
    """`text` after the parenthesised group that opens at `start` (and a trailing " const")."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            rest = text[i + 1:].lstrip()
            return rest[len("const"):].lstrip() if rest.startswith("const ") else rest
    return text


def resolve_providers(requested: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Map short names to ONNX Runtime providers; return (providers to use, fallback notes).

    The CPU provider always closes the list so that a node a device provider cannot take still
    runs. A requested provider this onnxruntime build lacks is dropped with a note, never silently.
    """
    if not requested:
        return [CPU], []
    available = ort.get_available_providers()
    chosen, notes = [], []
    for name in requested:
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in PROVIDER_ALIASES.values() and full not in available:
            known = ", ".join(sorted(PROVIDER_ALIASES))
            raise EdgeformerError(f"unknown execution provider '{name}'; expected one of: {known}")
        if full in available:
            if full not in chosen:
                chosen.append(full)
        else:
            notes.append(f"{full} is not available in this onnxruntime build (available: {', '.join(available)})")
    if CPU not in chosen:
        chosen.append(CPU)
    if notes:
        notes.append(f"running on {', '.join(chosen)}")
    return chosen, notes


def session_options(spin: bool = False, threads: int | None = None, config: Mapping[str, str] | None = None,
                    optimization: str = "all", profile_prefix: str | None = None) -> ort.SessionOptions:
    """Session options for edge use.

    `spin=False` (the default) stops ONNX Runtime's worker threads from busy-waiting between
    calls: on a phone or a board a spinning core is battery and heat, and on a shared CPU it taxes
    every other process. Turn it on for the lowest latency in a tight loop on a dedicated machine.
    `runtime.load` turns it on for bundles that generate (runtime/model.py GENERATING_KINDS): a decode step is a few
    hundred kernels of microseconds each, and waking a sleeping worker for each costs more than the
    kernel (SmolLM2-135M int4: 101 decode tokens/s spinning, 82.5 not, benchmarks/smollm2.py); the
    workers spin only briefly once a step is done, as llama.cpp's do.
    """
    so = ort.SessionOptions()
    flag = "1" if spin else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", flag)
    so.add_session_config_entry("session.inter_op.allow_spinning", flag)
    if threads:
        so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3  # errors only: ORT's warnings are noise for a user of a valid bundle
    if optimization not in OPTIMIZATION_LEVELS:
        raise EdgeformerError(f"unknown graph optimization level {optimization!r}; "
                              f"expected one of: {', '.join(OPTIMIZATION_LEVELS)}")
    so.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, value)
    if profile_prefix is not None:  # onnxruntime's per-node profile, written by session.end_profiling()
        so.enable_profiling, so.profile_file_prefix = True, profile_prefix
    return so


def deployment_session_config(manifest: Manifest) -> dict[str, str]:
    """Session settings a deployment needs: an .ort converted in the 'Runtime' style replays the
    optimizations it saved (the bundle's hashes were checked, so its recorded optimizations are trusted)."""
    deploy = manifest.deploy
    if deploy is not None and deploy.extra.get("ort_optimization_style") == "Runtime":
        return {"session.enable_saved_runtime_optimizations": "1"}
    return {}


def create_session(
    model_path: str | os.PathLike | bytes,
    providers: Sequence[str] | None = None,
    *,
    spin: bool = False,
    threads: int | None = None,
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    disabled_optimizers: Sequence[str] = DISABLED_OPTIMIZERS,
    config: Mapping[str, str] | None = None,
    optimization: str = "all",
    profile_prefix: str | None = None,
) -> tuple[ort.InferenceSession, list[str]]:
    """An ONNX Runtime session with edgeformer's settings (a graph file, or a serialized graph's bytes);
    returns it and any provider fallback notes. `optimization` is one of OPTIMIZATION_LEVELS;
    `disabled_optimizers=()` keeps every fusion, as onnxruntime's defaults (and a device's) do.
    `profile_prefix` turns on onnxruntime's profiler, its file named from that prefix.
    A graph onnxruntime cannot open raises SessionError."""
    chosen, notes = resolve_providers(providers)
    options = [dict((provider_options or {}).get(p, {})) for p in chosen]
    graph = model_path if isinstance(model_path, bytes) else str(model_path)
    try:
        session = ort.InferenceSession(
            graph, sess_options=session_options(spin, threads, config, optimization, profile_prefix), providers=chosen,
            provider_options=options, disabled_optimizers=list(disabled_optimizers),
        )
    except Exception as e:  # onnxruntime raises its own exception types for an unreadable graph
        reason = load_failure_reason(str(e)) if str(e).strip() else type(e).__name__
        where = "the graph" if isinstance(model_path, bytes) else model_path
        raise SessionError(f"onnxruntime cannot load {where}: {reason}", reason) from None
    actual = session.get_providers()
    lost = [p for p in chosen if p not in actual]
    if lost:
        notes.append(f"onnxruntime could not start {', '.join(lost)}; running on {', '.join(actual)}")
    return session, notes


def open_session(model_path: str | os.PathLike, settings: SessionSettings) -> tuple[ort.InferenceSession, list[str]]:
    """`create_session` with one bundle's settings; a graph that does not open is a corrupt bundle (BundleGraphError)."""
    try:
        return create_session(model_path, settings.providers, spin=settings.spin, threads=settings.threads,
                              provider_options=settings.provider_options,
                              disabled_optimizers=settings.disabled_optimizers, config=settings.config)
    except SessionError as e:
        raise BundleGraphError(f"{model_path} is not a graph onnxruntime {ort.__version__} can open: {e.reason}; "
                               "the bundle is corrupt (or its hashes were rewritten over a changed file)",
                               e.reason) from None


def expose_tensors(model: Any, tensors: Sequence[str]) -> Any:
    """A copy of `model` (an ONNX ModelProto) with `tensors` added as graph outputs, so one run returns
    them all. The outputs carry no type: onnxruntime takes the producer's. Only the protobuf message's
    own methods are used, so the runtime needs no onnx package for it."""
    exposed = type(model)()
    exposed.CopyFrom(model)
    known = {o.name for o in exposed.graph.output}
    for name in tensors:
        if name not in known:
            exposed.graph.output.add().name = name
            known.add(name)
    return exposed
