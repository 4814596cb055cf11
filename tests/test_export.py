import json

import numpy as np
import onnx
import pytest

from edgeformer import runtime
from edgeformer.export import ParityFailure, bundle_parity, export_bundle
from edgeformer.export.checks import op_counts
from edgeformer.export.parity import FLOAT32_ATOL, check_parity, default_cases
from edgeformer.modeling import load

from .conftest import make_checkpoint


def assert_parity(result, n_layers=2):
    report = result.report
    assert report.passed
    shapes = {(c.batch, c.seq) for c in report.cases}
    assert {b for b, _ in shapes} >= {1, 2, 3, 4} and len({t for _, t in shapes}) >= 5
    assert any(c.padded for c in report.cases)
    for o in report.worst.values():
        assert o.max_abs <= FLOAT32_ATOL and o.cosine > 0.99999
    counts = op_counts(onnx.load(str(result.path / "model.onnx")))
    assert counts["Attention"] == n_layers


def test_encoder_fused_parity(encoder_bundle):
    assert_parity(encoder_bundle)
    m = encoder_bundle.manifest
    assert m.opset == 23 and (m.attention.kind, m.attention.op, m.attention.count, m.attention.layout) == ("fused", "Attention", 2, "3d")
    assert [o.name for o in m.outputs] == ["logits", "last_hidden_state"]
    assert m.outputs[1].shape == ("batch", "seq", 32)


def test_decoder_fused_parity(decoder_bundle):
    assert_parity(decoder_bundle)
    assert [o.name for o in decoder_bundle.manifest.outputs] == ["logits"]


def test_graph_has_dynamic_named_axes(encoder_bundle):
    graph = onnx.load(str(encoder_bundle.path / "model.onnx")).graph
    for inp in graph.input:
        assert [d.dim_param for d in inp.type.tensor_type.shape.dim] == ["batch", "seq"]
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_unfused_fallback(tmp_path, arch):
    ckpt, _ = make_checkpoint(tmp_path / "ckpt", arch=arch, num_labels=2 if arch == "encoder" else 0)
    result = export_bundle(ckpt, tmp_path / "bundle", attention="unfused")
    assert result.report.passed and result.manifest.opset == 18
    counts = op_counts(onnx.load(str(tmp_path / "bundle" / "model.onnx")))
    assert counts["Attention"] == 0 and counts["Softmax"] == 2
    assert result.manifest.attention.kind == "unfused"


@pytest.mark.parametrize("overrides", [
    dict(norm="post", activation="relu", positional="sinusoidal", num_labels=2, pooling="cls"),
    dict(arch="decoder", norm="post", activation="gelu", positional="learned", tie_embeddings=False, n_layers=3),
])
def test_model_variants_keep_parity(tmp_path, overrides):
    ckpt, _ = make_checkpoint(tmp_path / "ckpt", **overrides)
    assert_parity(export_bundle(ckpt, tmp_path / "bundle"), n_layers=overrides.get("n_layers", 2))


def test_failed_parity_writes_no_bundle(tmp_path, encoder_ckpt):
    out = tmp_path / "bundle"
    with pytest.raises(ParityFailure, match="failed the parity gate") as err:
        export_bundle(encoder_ckpt, out, atol=1e-12)
    assert not err.value.report.passed
    assert not out.exists() and list(tmp_path.iterdir()) == []
    # The failure names where the graph first leaves the tolerance: a node and the module it came from.
    [line] = err.value.diagnosis
    assert line.startswith("first divergence: ") and " in module " in line


def test_manifest_records_provenance(encoder_bundle):
    data = json.loads((encoder_bundle.path / "manifest.json").read_text())
    assert set(data["files"]) == {"model.onnx", "tokenizer.json", "vectors.json"}
    assert data["parity"]["passed"] and data["parity"]["atol"] == FLOAT32_ATOL
    assert {"torch", "onnx", "onnxruntime"} <= set(data["tools"])
    assert data["model"]["config"]["n_layers"] == 2 and data["model"]["task"] == "classification"
    assert len(data["model"]["checkpoint"]["sha256"]) == 64


def test_parity_against_reference_uses_fresh_inputs(encoder_bundle, encoder_ckpt):
    report = bundle_parity(encoder_bundle.path, encoder_ckpt, seed=7)
    assert report.passed and len(report.cases) == len(default_cases(64))


def test_parity_catches_a_different_model(tmp_path, encoder_bundle):
    """The gate must fail when the bundle is not the checkpoint's model (same config, other weights)."""
    other, _ = make_checkpoint(tmp_path / "other", seed=123, num_labels=3, labels=["a", "b", "c"],
                               vocab_size=encoder_bundle.manifest.config["vocab_size"])
    report = bundle_parity(encoder_bundle.path, other)
    assert not report.passed
    assert report.worst["logits"].max_abs > 1e-3


def test_parity_detects_a_perturbed_graph(encoder_bundle, encoder_ckpt):
    model = runtime.load(encoder_bundle.path)

    def nudged(feeds):
        out = model(feeds)
        out["logits"] = out["logits"] + 2e-4
        return out

    m = encoder_bundle.manifest
    report = check_parity(load(encoder_ckpt), nudged, m.inputs, m.outputs)
    assert not report.passed and report.worst["logits"].max_abs == pytest.approx(2e-4, rel=0.05)
    assert report.worst["last_hidden_state"].max_abs <= FLOAT32_ATOL


def test_per_token_outputs_compare_real_positions_only(decoder_bundle, decoder_ckpt):
    model = runtime.load(decoder_bundle.path)

    def garbage_in_padding(feeds):
        out = model(feeds)
        out["logits"] = np.where(feeds["attention_mask"][..., None] == 1, out["logits"], 1e6)
        return out

    m = decoder_bundle.manifest
    assert check_parity(load(decoder_ckpt), garbage_in_padding, m.inputs, m.outputs).passed
