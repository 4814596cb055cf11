"""`export --attention packed`: onnxruntime's packed-QKV Attention behind the same parity gate, where it may go."""

import json

import numpy as np
import pytest

from edgeformer import runtime
from edgeformer.deploy import deploy
from edgeformer.export import export_bundle
from edgeformer.export.onnx import ExportError
from edgeformer.runtime.errors import EdgeformerError


@pytest.fixture(scope="module")
def packed_pair(tmp_path_factory, encoder_ckpt, encoder_bundle):
    out = tmp_path_factory.mktemp("packed") / "bundle"
    return export_bundle(encoder_ckpt, out, attention="packed"), encoder_bundle


def test_packed_bundle_records_its_graph_and_answers_like_the_portable_one(packed_pair):
    packed, portable = packed_pair
    record = json.loads((packed.path / "manifest.json").read_text())["attention"]
    assert record["kind"] == "packed" and record["op"] == "com.microsoft.Attention" and record["count"] == 2
    assert packed.report.passed and max(o.max_abs for o in packed.report.worst.values()) < 1e-4
    a, b = runtime.load(packed.path), runtime.load(portable.path)
    texts = ["the quick brown fox", "edge devices run small transformers over the lazy dog", "dog"]
    for batch in (texts, texts[:1]):  # padded rows and a single row
        np.testing.assert_allclose(a.classify(batch).probabilities, b.classify(batch).probabilities, atol=1e-5)


def test_packed_graph_goes_only_to_targets_that_run_its_kernel(packed_pair, tmp_path):
    packed, _ = packed_pair
    for target in ("web", "android", "tensorrt"):
        with pytest.raises(EdgeformerError, match=f"packed attention graph .* the {target} target does not; export the "
                                                  "checkpoint with --attention fused"):
            deploy(packed.path, target, tmp_path / target)
        assert not (tmp_path / target).exists()


def test_packed_export_of_a_cached_decoder_is_refused_in_one_line(decoder_ckpt, tmp_path):
    with pytest.raises(ExportError, match="rewrote 0 of 2 attention layers; .* export this model with --attention fused"):
        export_bundle(decoder_ckpt, tmp_path / "b", attention="packed", kv_cache=True)
    assert not (tmp_path / "b").exists()


def test_packed_bundle_deploys_to_triton_and_its_checks_run_the_graph(packed_pair, tmp_path):
    packed, _ = packed_pair
    result = deploy(packed.path, "triton", tmp_path / "triton")
    assert result.deployment.checks and all(c.passed for c in result.deployment.checks)
    assert any("onnxruntime run" in c.line() for c in result.deployment.checks)


def test_quantize_refuses_the_packed_graph_in_one_line(packed_pair, tmp_path):
    from edgeformer.quantize import QuantizeError, quantize_bundle

    packed, _ = packed_pair
    with pytest.raises(QuantizeError, match="packed attention graph, whose QKV projections the recipes cannot reach; "
                                            "quantize a bundle exported with --attention fused"):
        quantize_bundle(packed.path, tmp_path / "q", "int8-dynamic")
    assert not (tmp_path / "q").exists()
