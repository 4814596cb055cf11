"""Run a TensorRT deployment folder (`edgeformer deploy --target tensorrt|jetson`) with TensorRT's own runtime.

    from edgeformer import runtime
    model = runtime.load("minilm-trt/")        # manifest graph "model.engine" -> load_engine
    out = model(input_ids=ids, attention_mask=mask)

Why TensorRT's runtime and not onnxruntime's TensorRT execution provider: the `tensorrt` Python
package is what JetPack ships (onnxruntime-gpu for Jetson is not on PyPI), and the execution provider
keeps its own engine cache beside the folder's engine, a second artifact to version and invalidate.
Here the folder's `model.engine` is the one engine, and its manifest says what it was built with.

An engine runs only with the TensorRT version that built it and on GPUs of the compute capability
it was built for. `load_engine` compares the manifest's record with the installed TensorRT and the
GPU before TensorRT reads a byte of the engine, and refuses a mismatch in one line that names both.

Device memory and the stream come from NVIDIA's `cuda-python` (`cuda.bindings.runtime`, or
`cuda.cudart` in releases before 12.8), which `edgeformer[tensorrt]` installs. Only numpy, tensorrt
and cuda-python are imported here, and the last two only when an engine is loaded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .bundle import Bundle, Manifest
from .errors import BundleError, EdgeformerError, InputError
from .facade import TaskCalls

ENGINE_FILE = "model.engine"
TIMING_CACHE_FILE = "timing.cache"
MIN_TRT = (10, 0)  # the TensorRT 10 API: set_input_shape / set_tensor_address / execute_async_v3, int64 I/O

INSTALL_HINT = "pip install 'edgeformer[tensorrt]'; on a Jetson it comes with JetPack"
CUDA_HINT = ("pip install cuda-python (the 12.x release on CUDA 12, as on JetPack 6; "
             "it is part of 'edgeformer[tensorrt]')")


class TensorRTUnavailable(EdgeformerError):
    """TensorRT, the CUDA binding or a GPU is missing on this machine."""


def import_tensorrt():
    """The `tensorrt` module, or TensorRTUnavailable saying it is missing (or why it fails to load)."""
    try:
        import tensorrt as trt
    except ImportError as e:
        if getattr(e, "name", None) == "tensorrt":
            raise TensorRTUnavailable(f"TensorRT is not installed ({INSTALL_HINT})") from None
        raise TensorRTUnavailable(f"TensorRT is installed but does not load ({_first_line(e)})") from None
    except OSError as e:  # a wheel whose libnvinfer cannot be found or opened
        raise TensorRTUnavailable(f"TensorRT is installed but does not load ({_first_line(e)})") from None
    if version_tuple(trt.__version__)[:2] < MIN_TRT:
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} is installed; edgeformer needs TensorRT "
                                  f"{MIN_TRT[0]}.{MIN_TRT[1]} or later (on a Jetson: JetPack 6.1 or later)")
    return trt


def import_cudart():
    """cuda-python's CUDA runtime module, or TensorRTUnavailable saying it is missing."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.8
    except ImportError:
        try:
            from cuda import cudart  # earlier cuda-python releases
        except ImportError:
            raise TensorRTUnavailable(f"the CUDA Python binding is not installed ({CUDA_HINT})") from None
    return cudart


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def version_tuple(version: str) -> tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30); non-numeric tails are dropped ('10.14.1.post1' -> (10, 14, 1))."""
    out = []
    for part in str(version).split("."):
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def cuda_call(result: Any, what: str):
    """Unpack a cuda-python call's (error, *values) tuple; a CUDA error becomes one line."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:  # cudaSuccess
        raise TensorRTUnavailable(f"CUDA {what} failed: {getattr(err, 'name', err)}")
    return values[0] if len(values) == 1 else tuple(values)


def gpu_info(cudart=None) -> dict[str, Any]:
    """The current GPU: {"name", "compute_capability": "8.7", "memory_bytes"}; TensorRTUnavailable without one."""
    cudart = cudart or import_cudart()
    result = cudart.cudaGetDeviceCount()
    err, count = result[0], (result[1] if len(result) > 1 else 0)
    if int(err) != 0 or not count:
        reason = getattr(err, "name", str(err)) if int(err) != 0 else "no device"
        raise TensorRTUnavailable(f"no NVIDIA GPU is visible to CUDA ({reason}); TensorRT engines need one")
    device = cuda_call(cudart.cudaGetDevice(), "cudaGetDevice")
    prop = cuda_call(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return {"name": str(name).strip(), "compute_capability": f"{prop.major}.{prop.minor}",
            "memory_bytes": int(prop.totalGlobalMem), "device": int(device)}


def check_engine_compatible(record: Mapping[str, Any], trt_version: str, compute_capability: str,
                            engine: str = ENGINE_FILE) -> None:
    """Raise BundleError (one line) when an engine built as `record` says cannot run on this TensorRT and GPU.

    `record` is the manifest's deploy["tensorrt"]: {"version": "10.3.0.30", "compute_capability": "8.7", ...}.
    TensorRT deserializes only engines of its own version (no version-compatible build here), and an
    engine's kernels are compiled for one compute capability (no hardware-compatibility mode here).
    """
    built_v, built_cc = str(record.get("version", "?")), str(record.get("compute_capability", "?"))
    same_version = version_tuple(built_v) == version_tuple(trt_version)
    same_gpu = built_cc == str(compute_capability)
    if same_version and same_gpu:
        return
    what = []
    if not same_version:
        what.append("TensorRT version")
    if not same_gpu:
        what.append("GPU")
    gpu = f" ({record['gpu']})" if record.get("gpu") else ""
    raise BundleError(
        f"{engine} was built with TensorRT {built_v} for compute capability {built_cc}{gpu}; this machine has "
        f"TensorRT {trt_version} and a GPU of compute capability {compute_capability}, a different "
        f"{' and '.join(what)}: rebuild it here with `edgeformer deploy BUNDLE --target "
        f"{record.get('target', 'tensorrt')}` (the folder's model.onnx is the graph it came from)")


def engine_record(manifest: Manifest) -> dict[str, Any]:
    deploy = manifest.deploy
    record = deploy.extra.get("tensorrt") if deploy is not None else None
    if not isinstance(record, dict) or "version" not in record or "compute_capability" not in record:
        raise BundleError("the manifest names a TensorRT engine but has no deploy.tensorrt record (version, "
                          "compute capability); rebuild the folder with `edgeformer deploy`")
    return {**record, "target": deploy.target or "tensorrt"}


def _logger(trt):
    """A trt.ILogger that keeps error messages (for one-line reports) and prints nothing."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg).strip().replace("\n", " "))

    return Logger()


def load_engine(bundle: Bundle) -> "EngineModel":
    """Open the TensorRT engine of a deployment folder (already hash-checked by open_bundle)."""
    manifest = bundle.manifest
    record = engine_record(manifest)  # before anything touches TensorRT
    try:
        trt = import_tensorrt()
    except TensorRTUnavailable as e:
        raise TensorRTUnavailable(
            f"{bundle.path} is a TensorRT engine (TensorRT {record['version']}, compute capability "
            f"{record['compute_capability']}), and this machine cannot run it: {e}") from None
    cudart = import_cudart()
    gpu = gpu_info(cudart)
    check_engine_compatible(record, trt.__version__, gpu["compute_capability"], str(bundle.model_path))
    logger = _logger(trt)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(Path(bundle.model_path).read_bytes())
    if engine is None:
        detail = logger.errors[-1] if logger.errors else "no reason given"
        raise BundleError(f"TensorRT {trt.__version__} cannot deserialize {bundle.model_path}: {detail}")
    notes = [f"TensorRT {trt.__version__} on {gpu['name']} (compute capability {gpu['compute_capability']}), "
             f"{record.get('precision', '?')} engine"]
    return EngineModel(bundle, engine, trt, cudart, notes, runtime=runtime, logger=logger)


class EngineModel(TaskCalls):
    """A loaded TensorRT engine, a runtime.facade.BundleModel: a dict of numpy arrays in, a dict out, and the task calls."""

    def __init__(self, bundle: Bundle, engine, trt, cudart, notes: list[str], runtime=None, logger=None):
        self.bundle = bundle
        self.notes = notes
        self.inputs = bundle.manifest.inputs
        self.outputs = bundle.manifest.outputs
        self._trt, self._cudart, self._runtime, self._logger, self.engine = trt, cudart, runtime, logger, engine
        self._buffers: dict[str, tuple[int, int]] = {}  # tensor name -> (device pointer, bytes)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if sorted(ins) != sorted(s.name for s in self.inputs) or not {s.name for s in self.outputs} <= set(outs):
            raise BundleError(f"{bundle.model_path} has inputs {ins} and outputs {outs} but the manifest declares "
                              f"{[s.name for s in self.inputs]} and {[s.name for s in self.outputs]}; the folder is inconsistent")
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self._extra_outputs = [n for n in outs if n not in {s.name for s in self.outputs}]
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EdgeformerError(f"TensorRT could not create an execution context for {bundle.model_path} "
                                  "(out of GPU memory?)")
        self._stream = cuda_call(cudart.cudaStreamCreate(), "cudaStreamCreate")

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def providers(self) -> list[str]:
        return ["TensorRT"]

    @property
    def max_batch(self) -> int:
        """The most rows one call takes: the batch axis of the engine's optimization profile."""
        return int(self.manifest.axes.get("batch", {}).get("max") or sys.maxsize)

    def validate(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        from .inputs import validate_inputs

        return validate_inputs(self.manifest, inputs)

    def _device(self, name: str, nbytes: int) -> int:
        """A device buffer of at least `nbytes` for tensor `name`, grown (never shrunk) as shapes change."""
        ptr, size = self._buffers.get(name, (0, 0))
        if nbytes > size or not ptr:
            if ptr:
                cuda_call(self._cudart.cudaFree(ptr), "cudaFree")
            size = max(nbytes, 256)
            ptr = int(cuda_call(self._cudart.cudaMalloc(size), "cudaMalloc"))
            self._buffers[name] = (ptr, size)
        return ptr

    def __call__(self, inputs: Mapping[str, Any] | None = None, /, **named: Any) -> dict[str, np.ndarray]:
        feeds = self.validate({**(inputs or {}), **named})
        cudart, ctx, stream = self._cudart, self.context, self._stream
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        keep = []  # host arrays must outlive the asynchronous copies
        for spec in self.inputs:
            arr = np.ascontiguousarray(feeds[spec.name], dtype=self._dtypes[spec.name])
            if not ctx.set_input_shape(spec.name, tuple(arr.shape)):
                raise InputError(f"{spec.name} has shape {tuple(arr.shape)}, outside the engine's optimization profile "
                                 f"{engine_record(self.manifest).get('profile', {})}")
            ptr = self._device(spec.name, arr.nbytes)
            if arr.nbytes:
                cuda_call(cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, stream), "cudaMemcpyAsync")
            ctx.set_tensor_address(spec.name, ptr)
            keep.append(arr)
        results: dict[str, np.ndarray] = {}
        for name in [s.name for s in self.outputs] + self._extra_outputs:
            shape = tuple(ctx.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise EdgeformerError(f"TensorRT could not infer the shape of output {name} ({shape})")
            host = np.empty(shape, dtype=self._dtypes[name])
            ctx.set_tensor_address(name, self._device(name, host.nbytes))
            results[name] = host
        if not ctx.execute_async_v3(int(stream)):
            detail = self._logger.errors[-1] if self._logger is not None and self._logger.errors else "no reason given"
            raise EdgeformerError(f"TensorRT failed to run {self.bundle.model_path}: {detail}")
        for name in [s.name for s in self.outputs]:
            host = results[name]
            if host.nbytes:
                cuda_call(cudart.cudaMemcpyAsync(host.ctypes.data, self._buffers[name][0], host.nbytes, d2h, stream),
                          "cudaMemcpyAsync")
        cuda_call(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        del keep
        return {spec.name: results[spec.name].astype(spec.dtype, copy=False) for spec in self.outputs}

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The engine on `feeds`, outputs listed as `output_names` (all of the manifest's when None)."""
        out = self(dict(feeds))
        return [out[n] for n in (output_names or [s.name for s in self.outputs])]

    def close(self) -> None:
        """Free the device buffers and the stream (also done when the model is garbage-collected)."""
        buffers, self._buffers = self._buffers, {}
        for ptr, _ in buffers.values():
            try:
                self._cudart.cudaFree(ptr)
            except Exception:  # noqa: BLE001 - interpreter shutdown: CUDA may already be gone
                pass
        stream, self._stream = getattr(self, "_stream", None), None
        if stream is not None:
            try:
                self._cudart.cudaStreamDestroy(stream)
            except Exception:  # noqa: BLE001
                pass

    def __del__(self):
        if getattr(self, "_cudart", None) is not None:
            self.close()


def engine_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / ENGINE_FILE
