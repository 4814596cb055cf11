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
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import onnxruntime as ort

from .bundle import Manifest
from .errors import EdgeformerError

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
    """onnxruntime could not open a graph; `reason` is its first line, for callers that word the refusal."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


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
                    optimization: str = "all") -> ort.SessionOptions:
    """Session options for edge use.

    `spin=False` (the default) stops ONNX Runtime's worker threads from busy-waiting between
    calls: on a phone or a board a spinning core is battery and heat, and on a shared CPU it taxes
    every other process. Turn it on for the lowest latency in a tight loop on a dedicated machine.
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
) -> tuple[ort.InferenceSession, list[str]]:
    """An ONNX Runtime session with edgeformer's settings (a graph file, or a serialized graph's bytes);
    returns it and any provider fallback notes. `optimization` is one of OPTIMIZATION_LEVELS;
    `disabled_optimizers=()` keeps every fusion, as onnxruntime's defaults (and a device's) do.
    A graph onnxruntime cannot open raises SessionError."""
    chosen, notes = resolve_providers(providers)
    options = [dict((provider_options or {}).get(p, {})) for p in chosen]
    graph = model_path if isinstance(model_path, bytes) else str(model_path)
    try:
        session = ort.InferenceSession(
            graph, sess_options=session_options(spin, threads, config, optimization), providers=chosen,
            provider_options=options, disabled_optimizers=list(disabled_optimizers),
        )
    except Exception as e:  # onnxruntime raises its own exception types for an unreadable graph
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = "the graph" if isinstance(model_path, bytes) else model_path
        raise SessionError(f"onnxruntime cannot load {where}: {first}", first) from None
    actual = session.get_providers()
    lost = [p for p in chosen if p not in actual]
    if lost:
        notes.append(f"onnxruntime could not start {', '.join(lost)}; running on {', '.join(actual)}")
    return session, notes


def open_session(model_path: str | os.PathLike, settings: SessionSettings) -> tuple[ort.InferenceSession, list[str]]:
    """`create_session` with one bundle's settings."""
    return create_session(model_path, settings.providers, spin=settings.spin, threads=settings.threads,
                          provider_options=settings.provider_options,
                          disabled_optimizers=settings.disabled_optimizers, config=settings.config)


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
