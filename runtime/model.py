"""Load a bundle into ONNX Runtime and run it on numpy arrays, checking every input first."""

from __future__ import annotations

import os
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from .bundle import Bundle, Manifest, TensorSpec, open_bundle
from .errors import EdgeformerError, InputError

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

# ONNX Runtime graph fusions left off by default. SkipLayerNormFusion replaces Add + LayerNormalization
# with a SkipLayerNormalization kernel that measured slower on x86 CPUs with AVX2: on all-MiniLM-L6-v2
# at 128 tokens, 20.5-20.9 ms with it and 19.5-19.8 ms without at batch 1, 157-159 ms and 147-149 ms at
# batch 8 (2 cores). Pass disabled_optimizers=() to `load` to have every fusion.
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)

# Inputs that may be left out, and the value they take, as in every transformer library:
# no attention_mask means no padding; no token_type_ids means one segment.
DEFAULT_FILL = {"attention_mask": 1, "token_type_ids": 0}


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


def session_options(spin: bool = False, threads: int | None = None, config: Mapping[str, str] | None = None) -> ort.SessionOptions:
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
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, value)
    return so


class Model:
    """A loaded bundle. Call it with a dict of numpy arrays; it returns a dict of numpy arrays."""

    def __init__(self, bundle: Bundle, session: ort.InferenceSession, notes: list[str]):
        self.bundle = bundle
        self.session = session
        self.notes = notes
        self.load_options: dict[str, Any] = {}  # how `load` made the session, for a bundle's other graphs (seq2seq encoder)
        self.inputs = bundle.manifest.inputs
        self.outputs = bundle.manifest.outputs
        self._tokenizer = None
        graph_inputs = [i.name for i in session.get_inputs()]
        if graph_inputs != [s.name for s in self.inputs]:
            raise EdgeformerError(
                f"{bundle.model_path} has inputs {graph_inputs} but the manifest declares "
                f"{[s.name for s in self.inputs]}; the bundle is inconsistent"
            )

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def tokenizer(self):
        """The bundle's TextTokenizer (needs the optional `tokenizers` package), loaded on first use."""
        if self._tokenizer is None:
            from .text import tokenizer_of

            self._tokenizer = tokenizer_of(self)
        return self._tokenizer

    def embed(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True, truncation: bool = True) -> np.ndarray:
        """(N, d) L2-normalised mean-pooled sentence embeddings of `texts` (see runtime.text)."""
        from .text import embed

        return embed(self, texts, batch_size, normalize, truncation)

    def classify(self, texts: Sequence[str], batch_size: int = 32, truncation: bool = True):
        """Labels and probabilities for `texts` (a runtime.text.Classification)."""
        from .text import classify

        return classify(self, texts, batch_size, truncation)

    def generate(self, prompt, **settings):
        """Generate tokens (and text) with a decoder bundle exported with --kv-cache (see runtime.generate)."""
        from .generate import generate

        return generate(self, prompt, **settings)

    def stream(self, prompt, **settings):
        """Like `generate`, as an iterator of steps that yields each token as it comes (see runtime.generate)."""
        from .generate import stream

        return stream(self, prompt, **settings)

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def __call__(self, inputs: Mapping[str, Any] | None = None, /, **named: Any) -> dict[str, np.ndarray]:
        feeds = self.validate({**(inputs or {}), **named})
        values = self.session.run(None, feeds)
        return {spec.name: value for spec, value in zip(self.outputs, values)}

    def validate(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Check names, dtypes, ranks, axis sizes and value bounds; return arrays ready to feed."""
        return validate_inputs(self.manifest, inputs)


def validate_inputs(manifest: Manifest, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    expected = [s.name for s in manifest.inputs]
    unknown = [k for k in inputs if k not in expected]
    if unknown:
        raise InputError(f"unknown input {unknown[0]!r}; this model takes: {', '.join(expected)}")
    arrays: dict[str, np.ndarray] = {}
    sizes: dict[str, tuple[int, str]] = {}  # axis name -> (size, input that fixed it)
    for spec in manifest.inputs:
        if spec.name not in inputs:
            if spec.name in DEFAULT_FILL and arrays:
                first = next(iter(arrays.values()))
                arrays[spec.name] = np.full(first.shape[: len(spec.shape)], DEFAULT_FILL[spec.name], dtype=spec.dtype)
                continue
            raise InputError(f"missing input {spec.name!r}; this model takes: {', '.join(expected)}")
        arrays[spec.name] = _convert(spec, inputs[spec.name])
    for spec in manifest.inputs:
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
        _check_bounds(spec, arr)
    if "total" in sizes and "seq" in sizes:  # a cached decoder: the mask covers the past and the new tokens
        past = sizes.get("past", (0, ""))[0]
        if sizes["total"][0] != past + sizes["seq"][0]:
            raise InputError(f"attention_mask covers {sizes['total'][0]} tokens; expected past + new tokens = "
                             f"{past} + {sizes['seq'][0]}")
    return arrays


def _convert(spec: TensorSpec, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    want = np.dtype(spec.dtype)
    if arr.ndim != len(spec.shape):
        raise InputError(
            f"{spec.name} has rank {arr.ndim} (shape {tuple(arr.shape)}); expected rank {len(spec.shape)} {_fmt(spec.shape)}"
        )
    ok_kinds = {"i": "iub", "u": "iub", "f": "f", "b": "b"}.get(want.kind, want.kind)
    if arr.dtype.kind not in ok_kinds:
        raise InputError(f"{spec.name} has dtype {arr.dtype}; expected {want} (or another {_kind_name(want)} type)")
    return np.ascontiguousarray(arr, dtype=want)


def _fixed_note(manifest: Manifest) -> str:
    fixed = (manifest.deploy or {}).get("fixed_shape")
    if not fixed:
        return ""
    return f"; this {manifest.deploy['target']} deployment has fixed shapes " + ", ".join(f"{k}={v}" for k, v in fixed.items())


def _check_bounds(spec: TensorSpec, arr: np.ndarray) -> None:
    if arr.size == 0 or (spec.min is None and spec.max is None):
        return
    if spec.min is not None and arr.min() < spec.min:
        idx = np.unravel_index(int(np.argmin(arr)), arr.shape)
        raise InputError(f"{spec.name} has value {arr[idx]} at {[int(i) for i in idx]}; expected values in {_range(spec)}")
    if spec.max is not None and arr.max() > spec.max:
        idx = np.unravel_index(int(np.argmax(arr)), arr.shape)
        raise InputError(f"{spec.name} has value {arr[idx]} at {[int(i) for i in idx]}; expected values in {_range(spec)}")


def _range(spec: TensorSpec) -> str:
    lo = "-inf" if spec.min is None else f"{spec.min:g}"
    hi = "inf" if spec.max is None else f"{spec.max:g}"
    return f"[{lo}, {hi}]"


def _kind_name(dtype: np.dtype) -> str:
    return {"i": "integer", "u": "integer", "f": "floating-point", "b": "boolean"}.get(dtype.kind, str(dtype))


def _fmt(shape: Sequence[int | str]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def load(
    path: str | os.PathLike,
    providers: Sequence[str] | None = None,
    *,
    spin: bool = False,
    threads: int | None = None,
    verify: bool = True,
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    disabled_optimizers: Sequence[str] = DISABLED_OPTIMIZERS,
) -> Model:
    """Open the bundle at `path` and start an ONNX Runtime session for it.

    providers: short names ("cpu", "cuda", "tensorrt", ...) or ONNX Runtime provider names, in
    order of preference; CPU by default. A provider that is not available is reported by a
    RuntimeWarning and in `Model.notes`, and the model runs on the rest.
    """
    bundle = open_bundle(path, verify=verify)
    if bundle.manifest.graph.endswith(".engine"):  # a TensorRT deployment: TensorRT's own runtime, not onnxruntime
        from .tensorrt import load_engine

        return load_engine(bundle)
    session, notes = create_session(bundle.model_path, providers, spin=spin, threads=threads,
                                    provider_options=provider_options, disabled_optimizers=disabled_optimizers,
                                    config=deployment_session_config(bundle.manifest))
    if notes:
        warnings.warn("; ".join(notes), RuntimeWarning, stacklevel=2)
    model = Model(bundle, session, notes)
    model.load_options = dict(providers=providers, spin=spin, threads=threads, provider_options=provider_options,
                              disabled_optimizers=disabled_optimizers)
    return model


def deployment_session_config(manifest: Manifest) -> dict[str, str]:
    """Session settings a deployment needs: an .ort converted in the 'Runtime' style replays the
    optimizations it saved (the bundle's hashes were checked, so its recorded optimizations are trusted)."""
    if (manifest.deploy or {}).get("ort_optimization_style") == "Runtime":
        return {"session.enable_saved_runtime_optimizations": "1"}
    return {}


def create_session(
    model_path: str | os.PathLike,
    providers: Sequence[str] | None = None,
    *,
    spin: bool = False,
    threads: int | None = None,
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    disabled_optimizers: Sequence[str] = DISABLED_OPTIMIZERS,
    config: Mapping[str, str] | None = None,
) -> tuple[ort.InferenceSession, list[str]]:
    """An ONNX Runtime session with edgeformer's settings; returns it and any provider fallback notes."""
    chosen, notes = resolve_providers(providers)
    options = [dict((provider_options or {}).get(p, {})) for p in chosen]
    try:
        session = ort.InferenceSession(
            str(model_path), sess_options=session_options(spin, threads, config), providers=chosen,
            provider_options=options, disabled_optimizers=list(disabled_optimizers),
        )
    except Exception as e:  # onnxruntime raises its own exception types for an unreadable graph
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgeformerError(f"onnxruntime cannot load {model_path}: {first}") from None
    actual = session.get_providers()
    lost = [p for p in chosen if p not in actual]
    if lost:
        notes.append(f"onnxruntime could not start {', '.join(lost)}; running on {', '.join(actual)}")
    return session, notes
