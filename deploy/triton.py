"""The `triton` target: a Triton Inference Server model repository.

    DIR/                       the repository (tritonserver --model-repository=DIR)
        NAME/config.pbtxt      platform onnxruntime_onnx, inputs/outputs from the manifest,
                               dynamic batching, instance groups
        NAME/1/model.onnx      the bundle's graph, byte for byte (and its external data, if any)
        manifest.json, README.md, tokenizer.json
                               files at the repository root: Triton takes only sub-directories
                               of a repository as models, so `runtime.load(DIR)` works as well

Checks before anything is written: config.pbtxt parses as Triton's ModelConfig (the protobuf that
ships in the tritonclient package) and every field matches the manifest; the config's inputs and
outputs match the graph's (names, types, dims, as onnxruntime reads them); the copied graph has the
source's sha256 and computes the same outputs, bit for bit, on a padded batch of max_batch rows.

Not taken: key/value-cache decoders and seq2seq bundles (a step's state would have to live in
Triton's sequence batcher), and TensorRT deployments (the core deploys bundles only).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeformer.runtime.artifacts import sha256_file
from edgeformer.runtime.bundle import MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE, Bundle, Manifest, TensorSpec
from edgeformer.runtime.compare import max_abs
from edgeformer.runtime.inputs import axis_sizes, example_inputs, global_slots
from edgeformer.runtime.sessions import create_session

from .folder import README_FILE, Check, Deployment, DeployError, DeployOptions, check_call_memory
from .kinds import refuse_kind

CONFIG_FILE = "config.pbtxt"
VERSION = "1"
PLATFORM = "onnxruntime_onnx"
DEFAULT_MAX_BATCH = 8
# How long the dynamic batcher holds a request waiting for others to join its batch. 100 µs is the
# value Triton's batcher guide starts from: invisible next to a network round trip, and enough for
# requests arriving together under load to share one run. Raise it (with perf_analyzer) for throughput.
MAX_QUEUE_DELAY_US = 100
CHECK_SEQ = 32  # the dynamic axes' size in the run check (capped by the manifest's limits)
KINDS = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}
# Manifest dtype -> Triton's config type and its wire name (the tritonclient InferInput datatype).
DTYPES = {"bool": ("TYPE_BOOL", "BOOL"), "uint8": ("TYPE_UINT8", "UINT8"), "uint16": ("TYPE_UINT16", "UINT16"),
          "uint32": ("TYPE_UINT32", "UINT32"), "uint64": ("TYPE_UINT64", "UINT64"), "int8": ("TYPE_INT8", "INT8"),
          "int16": ("TYPE_INT16", "INT16"), "int32": ("TYPE_INT32", "INT32"), "int64": ("TYPE_INT64", "INT64"),
          "float16": ("TYPE_FP16", "FP16"), "float32": ("TYPE_FP32", "FP32"), "float64": ("TYPE_FP64", "FP64"),
          "bfloat16": ("TYPE_BF16", "BF16")}
ORT_TYPES = {f"tensor({ort})": m for m, ort in [
    ("bool", "bool"), ("uint8", "uint8"), ("uint16", "uint16"), ("uint32", "uint32"), ("uint64", "uint64"),
    ("int8", "int8"), ("int16", "int16"), ("int32", "int32"), ("int64", "int64"), ("float16", "float16"),
    ("float32", "float"), ("float64", "double"), ("bfloat16", "bfloat16")]}
# A model name is a folder name (and a URL path segment: /v2/models/NAME/infer); the repository
# root also holds these files, so a model folder cannot take their names.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
RESERVED = {MANIFEST_FILE, README_FILE, TOKENIZER_FILE}
# Triton releases whose ONNX Runtime backend runs the opset-23 Attention op (onnxruntime >= 1.23),
# from the `ort_version` that Triton's build.py sets at each release tag.
ATTENTION_TRITON = "25.08"
TRITON_ORT = [("25.06, 25.07", "1.22.0"), ("25.08, 25.09", "1.23.0"), ("25.10", "1.23.1"),
              ("25.11 to 26.01", "1.23.2"), ("26.02", "1.24.1"), ("26.03", "1.24.2"), ("26.04 to 26.06", "1.24.4"),
              ("26.07", "1.27.0")]


_PB2: Any = None


def model_config_pb2():
    """Triton's model_config_pb2 from the tritonclient package, with or without its grpc extra.

    `tritonclient.grpc` refuses to import without grpcio, but the generated module inside it needs
    only protobuf, so without the extra it is loaded from its file.
    """
    global _PB2
    if _PB2 is not None:
        return _PB2
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise DeployError("the triton target checks config.pbtxt with tritonclient's model config: "
                          "pip install 'edgeformer[triton]'")
    try:
        from tritonclient.grpc import model_config_pb2 as pb2  # tritonclient[grpc]
    except Exception:  # RuntimeError without grpcio; the generated file itself needs only protobuf
        path = Path(list(spec.submodule_search_locations)[0]) / "grpc" / "model_config_pb2.py"
        name = "_edgeformer_triton_model_config_pb2"
        file_spec = importlib.util.spec_from_file_location(name, path)
        if file_spec is None or not path.is_file():
            raise DeployError(f"tritonclient has no {path.name} at {path.parent}; reinstall it: "
                              "pip install 'edgeformer[triton]'") from None
        pb2 = importlib.util.module_from_spec(file_spec)
        sys.modules[name] = pb2
        try:
            file_spec.loader.exec_module(pb2)
        except Exception as e:
            del sys.modules[name]
            raise DeployError(f"tritonclient's model config does not load with this protobuf: {e}") from None
    _PB2 = pb2
    return pb2


def default_name(bundle: Bundle) -> str:
    """The bundle folder's name, with what a model name cannot hold replaced by '_'."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", bundle.path.resolve().name).lstrip("._-")[:128]
    return name if NAME_RE.fullmatch(name) and name not in RESERVED else "model"


def model_name(bundle: Bundle, opt: DeployOptions) -> str:
    if opt.name is None:
        return default_name(bundle)
    if not NAME_RE.fullmatch(opt.name):
        raise DeployError(f"--name {opt.name!r} is not a Triton model name: it names the model's folder, so use "
                          "letters, digits, '_', '.' and '-' (starting with a letter or digit, at most 128)")
    if opt.name in RESERVED:
        raise DeployError(f"--name {opt.name!r} is a file of the repository's root; choose another name")
    return opt.name


def batched(manifest: Manifest) -> bool:
    """Whether every input and output leads with the named `batch` axis (Triton's implicit batch dim)."""
    return all(s.shape and s.shape[0] == "batch" for s in manifest.inputs + manifest.outputs)


def max_batch_size(manifest: Manifest, opt: DeployOptions) -> int:
    """0 without a batch axis; else --triton-batch, by default 8 capped by the manifest's batch limit."""
    if not batched(manifest):
        return 0
    hi = manifest.axes.get("batch", {}).get("max")
    if opt.max_batch is None:
        return min(DEFAULT_MAX_BATCH, hi) if hi else DEFAULT_MAX_BATCH
    return opt.max_batch


def refuse(bundle: Bundle, target: str, manifest: Manifest, opt: DeployOptions) -> None:
    refuse_kind(bundle, target, manifest)  # deploy/kinds.py
    if len([f for f in bundle.manifest.files if f.endswith(".onnx")]) > 1:
        raise DeployError(f"{bundle.path} has several graphs (a seq2seq bundle); the triton target takes one-graph "
                          "bundles (an encoder-decoder would need a Triton ensemble and the sequence batcher)")
    if manifest.cache is not None or any("past" in s.shape for s in manifest.inputs):
        raise DeployError(f"{bundle.path} is a key/value-cache decoder: its cache is per-sequence state that Triton's "
                          "dynamic batcher does not keep; deploy a bundle exported without --kv-cache")
    model_name(bundle, opt)
    if opt.device not in KINDS:
        raise DeployError(f"--device {opt.device!r}: expected one of {', '.join(KINDS)}")
    if opt.instances < 1:
        raise DeployError(f"--instances {opt.instances}: expected at least 1")
    bad = [s.name for s in manifest.inputs + manifest.outputs if s.dtype not in DTYPES]
    if bad:
        raise DeployError(f"{bundle.path} has tensors of types Triton's ONNX Runtime backend does not take: "
                          f"{', '.join(bad)}")
    if opt.max_batch is not None:
        if not batched(manifest):
            raise DeployError("--triton-batch needs a batch axis first in every input and output; this deployment has "
                              "none (a fixed batch size), so Triton serves it without batching")
        hi = manifest.axes.get("batch", {}).get("max")
        if hi is not None and opt.max_batch > hi:
            raise DeployError(f"--triton-batch {opt.max_batch} is over the bundle's batch limit of {hi}")
        check_call_memory(manifest, check_sizes(manifest, opt.max_batch), f"--triton-batch {opt.max_batch}")
    model_config_pb2()


def _dims(spec: TensorSpec, batching: bool) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in (spec.shape[1:] if batching else spec.shape)]


def expected_config(name: str, manifest: Manifest, opt: DeployOptions) -> dict[str, Any]:
    """What config.pbtxt must say, as plain values (what the parse-back check compares against)."""
    mbs = max_batch_size(manifest, opt)
    tensors = lambda specs: [{"name": s.name, "data_type": DTYPES[s.dtype][0], "dims": _dims(s, mbs > 0)}  # noqa: E731
                             for s in specs]
    return {"name": name, "platform": PLATFORM, "max_batch_size": mbs, "input": tensors(manifest.inputs),
            "output": tensors(manifest.outputs),
            "dynamic_batching": {"max_queue_delay_microseconds": MAX_QUEUE_DELAY_US} if mbs else None,
            "instance_group": [{"count": opt.instances, "kind": KINDS[opt.device]}]}


def config_text(want: dict[str, Any], manifest: Manifest) -> str:
    """config.pbtxt as protobuf text, commented where a choice was made."""
    mbs = want["max_batch_size"]
    shapes = {s.name: s.shape for s in manifest.inputs + manifest.outputs}

    def tensor(t: dict[str, Any]) -> str:
        dims = ", ".join(str(d) for d in t["dims"])
        return (f"  {{\n    # manifest shape ({', '.join(str(d) for d in shapes[t['name']])})\n"
                f"    name: \"{t['name']}\"\n    data_type: {t['data_type']}\n    dims: [ {dims} ]\n  }}")

    lines = ["# Written by `edgeformer deploy --target triton`; checked against manifest.json and the graph.",
             f"name: \"{want['name']}\"", f"platform: \"{want['platform']}\""]
    if mbs:
        lines += ["# The batch axis is implicit: dims list the rest; -1 is a dynamic axis (seq: pad to a common length",
                  "# so that requests can share a batch).", f"max_batch_size: {mbs}"]
    else:
        lines += ["# No batch axis first in every tensor (a fixed batch): no batching, dims are the full shapes.",
                  "max_batch_size: 0"]
    lines += ["input [", ",\n".join(tensor(t) for t in want["input"]), "]",
              "output [", ",\n".join(tensor(t) for t in want["output"]), "]"]
    if want["dynamic_batching"]:
        lines += ["# Requests of the same shape are batched up to max_batch_size, each waiting at most this long.",
                  "# No preferred_batch_size: Triton's guide leaves it unset except for TensorRT profiles.",
                  "dynamic_batching {",
                  f"  max_queue_delay_microseconds: {want['dynamic_batching']['max_queue_delay_microseconds']}", "}"]
    lines += ["instance_group ["]
    lines += [",\n".join(f"  {{\n    count: {g['count']}\n    kind: {g['kind']}\n  }}" for g in want["instance_group"])]
    lines += ["]", ""]
    return "\n".join(lines)


def parsed_config(text: str) -> dict[str, Any]:
    """config.pbtxt parsed with Triton's ModelConfig (unknown fields or enum values fail), as plain values."""
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    try:
        cfg = text_format.Parse(text, pb2.ModelConfig())
    except text_format.ParseError as e:
        raise DeployError(f"config.pbtxt does not parse as Triton's ModelConfig: {e}") from None
    tensors = lambda ts: [{"name": t.name, "data_type": pb2.DataType.Name(t.data_type), "dims": list(t.dims)}  # noqa: E731
                          for t in ts]
    return {"name": cfg.name, "platform": cfg.platform, "max_batch_size": cfg.max_batch_size,
            "input": tensors(cfg.input), "output": tensors(cfg.output),
            "dynamic_batching": ({"max_queue_delay_microseconds": cfg.dynamic_batching.max_queue_delay_microseconds}
                                 if cfg.HasField("dynamic_batching") else None),
            "instance_group": [{"count": g.count, "kind": pb2.ModelInstanceGroup.Kind.Name(g.kind)}
                               for g in cfg.instance_group]}


def check_config(text: str, want: dict[str, Any]) -> Check:
    got = parsed_config(text)
    diffs = [f"{k}: {got[k]!r} (manifest wants {want[k]!r})" for k in want if got.get(k) != want[k]]
    return Check("config.pbtxt vs manifest (tritonclient ModelConfig)", not diffs,
                 "; ".join(diffs) or f"{len(want['input'])} inputs, {len(want['output'])} outputs, "
                 f"max_batch_size {want['max_batch_size']}, {want['instance_group'][0]['count']} x "
                 f"{want['instance_group'][0]['kind']}", {"config": got})


def check_graph(model: Path, got: dict[str, Any]) -> Check:
    """The config's tensors against the graph's, as onnxruntime (Triton's backend) reads them."""
    sess, _ = create_session(model, disabled_optimizers=())
    batching = got["max_batch_size"] > 0
    problems = []
    for kind, graph_ts, config_ts in (("input", sess.get_inputs(), got["input"]),
                                      ("output", sess.get_outputs(), got["output"])):
        graph = {t.name: t for t in graph_ts}
        config = {t["name"]: t for t in config_ts}
        if kind == "input" and set(graph) != set(config):  # the ONNX Runtime backend feeds every graph input
            problems.append(f"graph inputs {sorted(graph)} != config inputs {sorted(config)}")
        elif set(config) - set(graph):
            problems.append(f"config outputs {sorted(set(config) - set(graph))} are not in the graph")
        for name in sorted(set(graph) & set(config)):
            g, c = graph[name], config[name]
            if ORT_TYPES.get(g.type) is None or DTYPES[ORT_TYPES[g.type]][0] != c["data_type"]:
                problems.append(f"{kind} {name}: graph {g.type}, config {c['data_type']}")
            dims = ([-1] if batching else []) + c["dims"]
            gshape = list(g.shape)
            if len(gshape) != len(dims) or any(isinstance(a, int) and a != b for a, b in zip(gshape, dims)) \
                    or (batching and isinstance(gshape[0], int)):
                problems.append(f"{kind} {name}: graph shape {gshape}, config dims {c['dims']}"
                                + (" after the implicit batch dim" if batching else ""))
    return Check("config.pbtxt vs model.onnx (onnxruntime metadata)", not problems,
                 "; ".join(problems) or "names, types and dims agree" + (" (batch dim implicit)" if batching else ""))


def check_sizes(manifest: Manifest, mbs: int) -> dict[str, int]:
    """Axis sizes of the run check: max_batch rows, the other axes at CHECK_SEQ within their limits."""
    return axis_sizes(manifest, mbs or CHECK_SEQ, CHECK_SEQ)


def check_copy(source: Path, copy: Path, manifest: Manifest, mbs: int, seed: int) -> Check:
    """The copied graph is the source's, byte for byte, and computes its outputs exactly on a padded batch."""
    same_file = sha256_file(source) == sha256_file(copy)
    # one thread: the same kernels in the same order, so exact equality holds; every fusion, as Triton's backend runs it
    a, _ = create_session(source, threads=1, disabled_optimizers=())
    b, _ = create_session(copy, threads=1, disabled_optimizers=())
    sizes = check_sizes(manifest, mbs)
    feeds = example_inputs(manifest.inputs, sizes, np.random.default_rng(seed), padded=True, global_tokens=global_slots(manifest))
    worst = 0.0
    for x, y in zip(a.run(None, feeds), b.run(None, feeds)):
        worst = max(worst, max_abs(x, y))
    shape = ",".join(f"{k}={v}" for k, v in sizes.items())
    return Check("model copy vs bundle (sha256 + onnxruntime run)", same_file and worst == 0.0,
                 f"sha256 {'equal' if same_file else 'DIFFERS'}; max abs {worst:.3g} at {shape} (padded)",
                 {"sha256_equal": same_file, "max_abs": worst, "sizes": sizes})


def build(bundle: Bundle, target: str, manifest: Manifest, work: Path, opt: DeployOptions,
          progress: Callable[[str], None]) -> Deployment:
    name = model_name(bundle, opt)
    version_dir = work / name / VERSION
    version_dir.mkdir(parents=True)
    progress(f"triton: copying {bundle.manifest.graph} into {name}/{VERSION}/")
    shutil.copy2(bundle.model_path, version_dir / MODEL_FILE)
    for rel in bundle.manifest.files:  # external weights beside the graph (model.onnx.data over 2 GB)
        if rel.startswith(f"{bundle.manifest.graph}."):
            shutil.copy2(bundle.path / rel, version_dir / rel)
    want = expected_config(name, manifest, opt)
    text = config_text(want, manifest)
    (work / name / CONFIG_FILE).write_text(text)
    progress("triton: checking config.pbtxt against the manifest and the graph")
    checks = [check_config(text, want)]
    checks.append(check_graph(version_dir / MODEL_FILE, parsed_config(text)))
    progress(f"triton: running the copy on a padded batch of {want['max_batch_size'] or 'fixed'} rows")
    checks.append(check_copy(bundle.model_path, version_dir / MODEL_FILE, manifest, want["max_batch_size"], opt.seed))
    rows = [[t["name"], "input", t["data_type"], str(t["dims"])] for t in want["input"]]
    rows += [[t["name"], "output", t["data_type"], str(t["dims"])] for t in want["output"]]
    graph = f"{name}/{VERSION}/{MODEL_FILE}"
    return Deployment(graph=graph, checks=checks, readme=_readme(name, manifest, want, bundle),
                      record={"triton": {"model": name, "version": int(VERSION), "config": f"{name}/{CONFIG_FILE}",
                                         "platform": PLATFORM, "max_batch_size": want["max_batch_size"],
                                         "max_queue_delay_microseconds":
                                             MAX_QUEUE_DELAY_US if want["max_batch_size"] else None,
                                         "instances": opt.instances, "kind": KINDS[opt.device]}},
                      tables=[(f"Triton model {name} (max_batch_size {want['max_batch_size']})",
                               ["tensor", "kind", "data_type", "dims"], rows)])


def _readme(name: str, manifest: Manifest, want: dict[str, Any], bundle: Bundle) -> str:
    mbs = want["max_batch_size"]
    fused = manifest.attention.kind == "fused" or manifest.opset >= 23
    seq_max = manifest.axes.get("seq", {}).get("max")
    pad = seq_max or CHECK_SEQ
    wire = {s.name: DTYPES[s.dtype][1] for s in manifest.inputs}
    lines = ["## Serve it with Triton Inference Server", "",
             f"This folder is a Triton model repository holding one model, `{name}` "
             f"(`{name}/config.pbtxt`, `{name}/{VERSION}/model.onnx`, platform `{PLATFORM}`). Triton takes only the "
             "repository's sub-directories as models, so the files beside them (this README, manifest.json"
             + (", tokenizer.json" if bundle.tokenizer_path else "") + ") are ignored by the server, and "
             "`edgeformer.runtime.load()` still loads this folder.", "",
             "```sh",
             "docker run --rm --gpus=all -p8000:8000 -p8001:8001 -p8002:8002 -v $PWD:/models \\",
             "    nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models",
             f"curl -s localhost:8000/v2/models/{name}/ready -o /dev/null -w '%{{http_code}}\\n'   # 200 when loaded",
             "```", "",
             "Leave out `--gpus=all` on a machine without an NVIDIA GPU"
             + (" (the instance group is KIND_AUTO: GPUs when Triton sees any, else the CPU)." if want["instance_group"][0]["kind"] == "KIND_AUTO"
                else f" (this config asks for {want['instance_group'][0]['kind']}).") , ""]
    if fused:
        lines += [f"This bundle uses the ONNX `Attention` op (opset {manifest.opset}), which needs onnxruntime >= 1.23 "
                  f"in Triton's ONNX Runtime backend: use Triton **{ATTENTION_TRITON} or later**. Older releases cannot "
                  "load it; for them export with `edgeformer export --attention unfused` and deploy that bundle.", ""]
    else:
        lines += ["This bundle's attention is unfused (standard MatMul/Softmax ops): any recent Triton release loads it.", ""]
    lines += ["| Triton container | onnxruntime in its backend |", "| --- | --- |"]
    lines += [f"| {c} | {v} |" for c, v in TRITON_ORT]
    lines += ["", "(from the `ort_version` in Triton's build.py at each release tag)", ""]
    lines += ["### Batching", ""]
    if mbs:
        lines += [f"`max_batch_size: {mbs}` with dynamic batching (`max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}`): "
                  "Triton joins requests that arrive within 100 µs into one run of up to "
                  f"{mbs} rows. Each request carries its own batch dimension (1 or more rows, at most {mbs}).", "",
                  "Triton batches only requests whose tensors have the same shape: a dynamic `seq` (dims -1) lets "
                  "requests of any length in, but those of different lengths run separately. Pad every request to "
                  f"one length (e.g. {pad} tokens, attention_mask 0 on the padding, which keeps it out of the results) "
                  "so that they batch. Triton's ragged batching is no way around this for "
                  "this graph: the ONNX Runtime backend hands ragged inputs over as one flat 1-D tensor, which the "
                  "graph does not take. To make Triton refuse other lengths outright, deploy with "
                  "`--fixed-shape seq=N`.", "",
                  "No `preferred_batch_size` is set (Triton's guide leaves it unset except for TensorRT "
                  "optimization profiles). Tune `max_queue_delay_microseconds` and `instance_group` with "
                  "perf_analyzer under your load; `--triton-batch` and `--instances` set them here.", ""]
    else:
        lines += ["`max_batch_size: 0`: this deployment has no batch axis leading every tensor (a fixed batch), so "
                  "Triton runs each request as it comes, with the full shapes in dims.", ""]
    lines += ["All graph inputs are required (the ONNX Runtime backend feeds every input of the graph): send "
              + ", ".join(f"`{s.name}`" for s in manifest.inputs) + ".", ""]
    lines += ["### A Python client", "", "```python",
              "import numpy as np",
              "import tritonclient.http as httpclient  # pip install 'tritonclient[http]'", ""]
    if bundle.tokenizer_path:
        lines += ["from edgeformer.runtime.tokenizer import TextTokenizer  # or any reader of tokenizer.json", "",
                  "tok = TextTokenizer.from_file(\"tokenizer.json\")",
                  f"batch = tok.encode_batch([\"first text\", \"second text\"], max_length={pad}, pad_to={pad})",
                  "feeds = batch.feeds([" + ", ".join(f"\"{s.name}\"" for s in manifest.inputs) + "]"
                  + (f", global_tokens={manifest.config.get('global_tokens') or 1})" if any(s.name == "global_attention_mask" for s in manifest.inputs) else ")")]
    else:
        feeds = []
        for s in manifest.inputs:
            shape = tuple(2 if d == "batch" else pad if isinstance(d, str) else d for d in s.shape)
            if s.name == "attention_mask":
                feeds.append(f"    \"{s.name}\": np.ones({shape}, dtype=np.{s.dtype}),  # 0 on padding")
            elif s.name == "global_attention_mask":  # at most global_tokens marks per row: the first ones
                slots = global_slots(manifest)
                feeds.append(f"    \"{s.name}\": np.broadcast_to(np.arange({shape[1]}) < {slots}, {shape}).astype(np.{s.dtype}),")
            else:
                hi = int(s.max) if s.max is not None else 1
                feeds.append(f"    \"{s.name}\": np.random.randint(0, {hi + 1}, size={shape}).astype(np.{s.dtype}),")
        lines += ["feeds = {", *feeds, "}"]
    lines += ["", "client = httpclient.InferenceServerClient(\"localhost:8000\")",
              "inputs = [" + ", ".join(f"httpclient.InferInput(\"{n}\", feeds[\"{n}\"].shape, \"{w}\")"
                                       for n, w in wire.items()) + "]",
              "for i in inputs:",
              "    i.set_data_from_numpy(feeds[i.name()])",
              f"result = client.infer(\"{name}\", inputs, outputs=["
              + ", ".join(f"httpclient.InferRequestedOutput(\"{s.name}\")" for s in manifest.outputs) + "])"]
    lines += [f"{s.name} = result.as_numpy(\"{s.name}\")  # {s.dtype} ({', '.join(str(d) for d in s.shape)})"
              for s in manifest.outputs]
    lines += ["```", "",
              "Not taken by this target: key/value-cache decoders and seq2seq bundles (per-sequence state would need "
              "Triton's sequence batcher), and TensorRT engines: `edgeformer deploy` deploys bundles, not "
              "deployments, so a `model.plan` (platform `tensorrt_plan`) repository is not written; serve this "
              "ONNX model with `--device gpu`, or give Triton's ONNX Runtime backend its TensorRT execution "
              "provider in config.pbtxt (`optimization { execution_accelerators { gpu_execution_accelerator "
              "[ { name: \"tensorrt\" } ] } }`).", ""]
    return "\n".join(lines)
