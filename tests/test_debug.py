"""`edgeformer debug`: faults injected into one layer of a graph are found at that layer's node and module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeformer.debug import GraphIndex, metadata_scope
from edgeformer.runtime.bundle import MODEL_FILE, read_manifest, write_manifest

EDGEFORMER = str(Path(sys.executable).with_name("edgeformer"))
TEXTS = ["the quick brown fox jumps over the lazy dog", "edge devices run small transformers",
         "a small model runs on a phone", "the lazy dog sleeps"] * 3


def matmul_of(model: onnx.ModelProto, module: str) -> onnx.NodeProto:
    """The float graph's MatMul that the exporter attributes to `module` (e.g. blocks.1.attn.proj)."""
    found = [n for n in model.graph.node if n.op_type == "MatMul" and (metadata_scope(n) or None)
             and metadata_scope(n).module == module]
    assert len(found) == 1, [n.name for n in found]
    return found[0]


def rewrite(bundle: Path, change) -> None:
    """Edit model.onnx in place with `change(model)`, then re-hash the bundle's files."""
    model = onnx.load(str(bundle / MODEL_FILE))
    change(model)
    onnx.save(model, str(bundle / MODEL_FILE))
    write_manifest(bundle, read_manifest(bundle))


def scale_initializer(model: onnx.ModelProto, name: str, fn) -> None:
    init = next(i for i in model.graph.initializer if i.name == name)
    init.CopyFrom(numpy_helper.from_array(fn(numpy_helper.to_array(init).copy()), name))


@pytest.fixture(scope="module")
def float_graph(encoder_bundle):
    return onnx.load(str(encoder_bundle.path / MODEL_FILE))


def test_exporter_metadata_names_every_module(float_graph):
    index = GraphIndex(float_graph)
    modules = {s.module for s in index.scopes}
    for m in ("embed", "blocks.0.attn.qkv", "blocks.1.attn.proj", "blocks.1.ff.fc1", "blocks.1.ff.fc2", "ln_f", "classifier"):
        assert m in modules
    # The attention_to_3d pass's Split nodes carry no metadata: their module comes from their neighbours.
    split = [k for k, n in enumerate(index.nodes) if n.op_type == "Split"]
    assert split and all(index.scopes[k].module.endswith(".attn") and index.scopes[k].source == "neighbours" for k in split)
    _, outs = index.module_boundaries()["blocks.1.attn.proj"]
    assert len(outs) == 1 and index.nodes[index.producer[outs[0]]].op_type == "Add"  # MatMul then bias Add


def test_clean_float_bundle_has_no_divergence(encoder_bundle, encoder_ckpt):
    from edgeformer.export.debug import debug_checkpoint

    report = debug_checkpoint(encoder_bundle.path, encoder_ckpt)
    assert report.passed and report.finding is None
    assert max(r.max_abs for r in report.rows) < 1e-4
    labels = [r.label for r in report.layers]
    assert labels[:3] == ["embed", "blocks.0", "blocks.1"]
    assert len(report.rows) >= 20  # module outputs and leaf-module inputs, not only the graph outputs


@pytest.mark.parametrize("module", ["blocks.1.attn.proj", "blocks.0.ff.fc1"])
def test_perturbed_weight_is_found_at_its_node(encoder_bundle, encoder_ckpt, float_graph, tmp_path, module):
    from edgeformer.export.debug import debug_checkpoint, explain_parity_failure

    target = matmul_of(float_graph, module)
    bad = tmp_path / "bad"
    shutil.copytree(encoder_bundle.path, bad)

    def perturb(w):
        w[3, 5] += 0.05
        return w

    rewrite(bad, lambda m: scale_initializer(m, target.input[1], perturb))
    report = debug_checkpoint(bad, encoder_ckpt)
    f = report.finding
    assert f is not None and not report.passed
    assert (f.node, f.op_type, f.module, f.module_class) == (target.name, "MatMul", module, "Linear")
    assert target.input[1] in f.cause and f"{module}.weight" in f.cause
    # Everything before that Linear is within budget; its output is the first tensor over it.
    first = next(r for r in report.rows if r.over)
    assert first is f.row and first.module == module and first.input_max_abs < 1e-4
    from edgeformer.modeling import load

    line = explain_parity_failure(bad, load(encoder_ckpt))[0]
    assert line.startswith("first divergence:") and target.name in line and module in line


@pytest.fixture(scope="module")
def quantized(encoder_bundle, tmp_path_factory):
    from edgeformer.quantize import EvalSet, quantize_bundle

    out = tmp_path_factory.mktemp("dbgq") / "int8"
    quantize_bundle(encoder_bundle.path, out, "int8-dynamic", data=EvalSet(TEXTS), bench_seconds=0.1, smooth_alpha=None)
    return out


def test_clean_quantized_bundle_has_no_node_over_budget(quantized, encoder_bundle):
    from edgeformer.quantize.debug import debug_quantized

    report = debug_quantized(quantized, encoder_bundle.path, texts=TEXTS)
    assert report.passed, report.line()
    # Quantized MatMuls are compared with the float MatMuls whose output names they keep.
    q = [r for r in report.rows if r.float_node and r.float_node.startswith("node_MatMul")]
    assert len(q) >= 8 and all(0 < r.rel < 0.1 for r in q)
    assert all(r.module for r in q)  # mapped to modules although the quantizer's nodes carry no metadata
    assert report.worst is not None


@pytest.mark.parametrize("module,fault", [("blocks.1.attn.proj", "scale"), ("blocks.0.ff.fc2", "garbage")])
def test_badly_quantized_layer_is_found(quantized, encoder_bundle, float_graph, tmp_path, module, fault):
    from edgeformer.quantize.debug import debug_quantized, explain_budget_failure

    target = matmul_of(float_graph, module)
    weight = target.input[1]
    bad = tmp_path / "bad"
    shutil.copytree(quantized, bad)
    rng = np.random.default_rng(0)
    if fault == "scale":  # one weight's per-channel scales 50x too large
        rewrite(bad, lambda m: scale_initializer(m, f"{weight}_scale", lambda s: s * 50))
    else:  # one MatMul's int8 weights replaced by noise of the same range
        rewrite(bad, lambda m: scale_initializer(m, f"{weight}_quantized",
                                                 lambda w: rng.integers(-64, 65, size=w.shape).astype(w.dtype)))
    report = debug_quantized(bad, encoder_bundle.path, texts=TEXTS)
    f = report.finding
    assert f is not None
    assert f.float_node == target.name and f.module == module and f.op_type == "MatMulInteger"
    assert f.row.jump > 4 and sum(r.over for r in report.rows) == 1
    line = explain_budget_failure(bad / MODEL_FILE, encoder_bundle.path)[0]
    assert target.name in line and module in line


def test_cli_reports_finding_json_and_plot(encoder_bundle, encoder_ckpt, float_graph, quantized, tmp_path):
    target = matmul_of(float_graph, "blocks.1.ff.fc1")
    bad = tmp_path / "bad"
    shutil.copytree(encoder_bundle.path, bad)
    rewrite(bad, lambda m: scale_initializer(m, target.input[1], lambda w: w * 1.5))
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([EDGEFORMER, "debug", bad, "--reference", encoder_ckpt, "--json", tmp_path / "r.json",
                           "--plot", tmp_path / "curve.png"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "first divergence: MatMul " + target.name in proc.stdout and "blocks.1.ff.fc1 (Linear)" in proc.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["passed"] is False and data["finding"]["node"] == target.name
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    # A clean quantized bundle against its float32 bundle (no torch in that process): exit 0, JSON on stdout.
    ok = subprocess.run([EDGEFORMER, "debug", quantized, "--reference", encoder_bundle.path, "--json", "-"]
                        + [a for t in TEXTS[:4] for a in ("--text", t)], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["passed"] is True and data["budget"] == {"kind": "relative", "rel": 0.1, "jump": 4.0}
    wrong = subprocess.run([EDGEFORMER, "debug", encoder_bundle.path, "--reference", tmp_path], capture_output=True,
                           text=True, env=env)
    assert wrong.returncode == 2 and "expected a checkpoint directory" in wrong.stderr and "Traceback" not in wrong.stderr


def test_debug_core_and_quantize_side_never_import_torch():
    code = "import sys, edgeformer.debug, edgeformer.quantize.debug; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
