"""Load a bundle into ONNX Runtime and run it on numpy arrays, checking every input first.

`load` opens every graph of a bundle (`Manifest.graphs`: the main graph, and a seq2seq bundle's
encoder) with the same settings and the same check of the graph's inputs against the manifest.
A `Model` owns those graphs; each is callable with a dict of arrays and validates it first.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from .bundle import CACHED_DECODER, SEQ2SEQ, Bundle, GraphSpec, Manifest, open_bundle
from .errors import EdgeformerError, InputError
from .facade import TaskCalls
from .inputs import DEFAULT_FILL, validate_inputs  # noqa: F401  (DEFAULT_FILL: re-exported)
from .limits import Limits, call_sizes, check_threads, limits_for
from .manifest_checks import check_graph_agrees
from .sessions import (CPU, DISABLED_OPTIMIZERS, PROVIDER_ALIASES, SessionSettings,  # noqa: F401  (re-exported)
                       create_session, deployment_session_config, open_session, resolve_providers, session_options)


class Graph:
    """One graph of a bundle in ONNX Runtime: call it with a dict of arrays, get a dict of arrays."""

    def __init__(self, manifest: Manifest, spec: GraphSpec, session: ort.InferenceSession, path: os.PathLike | str,
                 limits: Limits | None = None):
        self.manifest, self.spec, self.session = manifest, spec, session
        self.limits = limits or limits_for(manifest)
        check_graph_agrees(path, spec.inputs, spec.outputs, session)

    @property
    def inputs(self):
        return self.spec.inputs

    @property
    def outputs(self):
        return self.spec.outputs

    def validate(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        feeds = validate_inputs(self.manifest, inputs, self.spec.inputs)
        self.limits.check(self.manifest, call_sizes(self.spec.inputs, feeds))
        return feeds

    def __call__(self, inputs: Mapping[str, Any] | None = None, /, **named: Any) -> dict[str, np.ndarray]:
        feeds = self.validate(_named_inputs(inputs, named))
        values = self.session.run([s.name for s in self.spec.outputs], feeds)
        return {spec.name: value for spec, value in zip(self.spec.outputs, values)}


class Model(TaskCalls):
    """A loaded bundle. Call it with a dict of numpy arrays; it returns a dict of numpy arrays.

    One Model serves many threads: calling it, `embed`, `classify`, `generate` and `stream` from
    several threads at once gives each call the result it would get alone. Nothing a call sets is
    shared (the tokenizer is never reconfigured per call, each generation keeps its own cache and
    random generator), and ONNX Runtime's `InferenceSession.run` is safe to call concurrently.

    `graphs` holds every graph of the bundle by name ("model", and "encoder" for seq2seq);
    `session` is the main graph's ONNX Runtime session. The task calls (`embed`, `classify`,
    `classify_images`, `transcribe`, `generate`, `stream`) come from runtime.facade.TaskCalls.
    """

    def __init__(self, bundle: Bundle, graphs: Mapping[str, Graph], notes: list[str]):
        self.bundle = bundle
        self.graphs = dict(graphs)
        self.session = self.graphs["model"].session
        self.notes = notes
        self.inputs = bundle.manifest.inputs
        self.outputs = bundle.manifest.outputs

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    def graph(self, name: str) -> Graph:
        """The bundle's graph `name` ("model", "encoder"), validated like the main one."""
        if name not in self.graphs:
            raise EdgeformerError(f"{self.bundle.path} has no {name} graph; its graphs: {', '.join(self.graphs)}")
        return self.graphs[name]

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def __call__(self, inputs: Mapping[str, Any] | None = None, /, **named: Any) -> dict[str, np.ndarray]:
        feeds = self.validate(_named_inputs(inputs, named))
        values = self.session.run(None, feeds)
        return {spec.name: value for spec, value in zip(self.outputs, values)}

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The main graph on `feeds` as they are (no checks): for timing, and for comparing graphs."""
        return self.session.run(output_names, feeds if isinstance(feeds, dict) else dict(feeds))

    def validate(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Check names, dtypes, ranks, axis sizes, value bounds and the call's size against the
        model's limits (max_batch, memory budget); return arrays ready to feed."""
        return self.graphs["model"].validate(inputs)

    @property
    def limits(self) -> Limits:
        return self.graphs["model"].limits

    @property
    def max_batch(self) -> int:
        """The most rows one call takes (see runtime.limits)."""
        return self.limits.max_batch

    def check_size(self, batch: int, seq: int | None = None) -> None:
        """Refuse, before building any input, a call of `batch` rows (of `seq` tokens) past the limits."""
        sizes = {"batch": batch} if seq is None else {"batch": batch, "seq": seq}
        self.limits.check(self.manifest, sizes)


def _named_inputs(inputs: Any, named: Mapping[str, Any]) -> dict[str, Any]:
    if inputs is not None and not isinstance(inputs, Mapping):
        raise InputError(f"inputs of type {type(inputs).__name__}; expected a dict of input name -> array")
    return {**(inputs or {}), **named}


# Bundle kinds whose sessions spin unless told not to: decoding is a loop of steps of many tiny kernels.
GENERATING_KINDS = (CACHED_DECODER, SEQ2SEQ)


def load(
    path: str | os.PathLike,
    providers: Sequence[str] | None = None,
    *,
    spin: bool | None = None,
    threads: int | None = None,
    verify: bool = True,
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    disabled_optimizers: Sequence[str] = DISABLED_OPTIMIZERS,
    max_batch: int | None = None,
    memory_budget: int | None = None,
    public_key: Any = None,
) -> Model:
    """Open the bundle at `path` and start an ONNX Runtime session for each of its graphs.

    providers: short names ("cpu", "cuda", "tensorrt", ...) or ONNX Runtime provider names, in
    order of preference; CPU by default. A provider that is not available is reported by a
    RuntimeWarning and in `Model.notes`, and the model runs on the rest.

    spin: let ONNX Runtime's idle threads busy-wait (default: on for bundles that generate, whose decode
    steps are many tiny kernels; off otherwise: runtime.sessions.session_options says why).
    threads: ONNX Runtime's intra-op threads, 1 to the machine's cores (default: all of them).
    max_batch, memory_budget: the most rows and bytes one call may take (runtime.limits); by default
    the manifest's batch maximum and half the memory available now.
    public_key: an Ed25519 public key: a path, PEM bytes, a key object, or a str (PEM text when it starts
    with -----BEGIN, else a path; runtime.signing); the bundle must then
    carry a signature by its private key over its manifest and files (runtime.signing), or is refused.
    """
    threads = check_threads(threads)
    if public_key is not None and not verify:
        raise EdgeformerError("public_key needs verify=True: the signature covers the files through their hashes")
    bundle = open_bundle(path, verify=verify)
    if public_key is not None:
        from .signing import verify_signature

        verify_signature(bundle.path, bundle.manifest.files, public_key)
    if bundle.manifest.graph.endswith(".engine"):  # a TensorRT deployment: TensorRT's own runtime, not onnxruntime
        from .tensorrt import load_engine

        return load_engine(bundle)
    if spin is None:
        spin = bundle.manifest.kind in GENERATING_KINDS
    settings = SessionSettings(providers, spin, threads, provider_options, tuple(disabled_optimizers),
                               deployment_session_config(bundle.manifest))
    graphs, notes = {}, []
    limits = limits_for(bundle.manifest, max_batch, memory_budget)
    for spec in bundle.manifest.graphs:
        file = bundle.path / spec.file
        session, graph_notes = open_session(file, settings)
        graphs[spec.name] = Graph(bundle.manifest, spec, session, file, limits)
        notes += [n for n in graph_notes if n not in notes]
    if notes:
        warnings.warn("; ".join(notes), RuntimeWarning, stacklevel=2)
    return Model(bundle, graphs, notes)
