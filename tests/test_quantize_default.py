"""int8-dynamic's default float budget (quantize/sensitive.py) on tiny encoders: which MatMuls stay float,
what the graph then holds, and that the default meets its budget on the calibration texts."""

import json

import numpy as np
import onnx
import pytest
import torch

from edgeformer.export import export_bundle
from edgeformer.modeling import ModelConfig, Transformer, save
from edgeformer.modeling.training.tokenizer import train_tokenizer
from edgeformer.quantize import QuantizeError, RecipeOptions, default_calibration_texts, default_eval_texts, quantize_bundle
from edgeformer.quantize.recipes import activation_fed_matmuls, quantizable_matmuls

TINY = dict(d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=128, dropout=0.0)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(default_eval_texts(64).texts, vocab_size=400)


def encoder(root, tok, outlier_layer=None):
    """A tiny random encoder; with `outlier_layer`, two of that layer's FFN hidden units are 50x larger
    (their GELU outputs then dwarf the rest) and its output projection 8x, so its int8 input scale costs the most."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_dict({**TINY, "vocab_size": tok.vocab_size})).eval()
    if outlier_layer is not None:
        with torch.no_grad():
            ff = model.blocks[outlier_layer].ff
            ff.fc1.weight[:2] *= 50
            ff.fc1.bias[:2] *= 50
            ff.fc2.weight *= 8
    save(model, root / "ckpt", tokenizer=tok)
    return export_bundle(root / "ckpt", root / "bundle").path


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, tok):
    """None (no outliers), 0 and 1 (outliers in that layer's FFN) -> an exported bundle."""
    return {layer: encoder(tmp_path_factory.mktemp(f"enc{layer}"), tok, layer) for layer in (None, 0, 1)}


def weight_matmul_kinds(path):
    """(names of the float MatMuls that multiply by a weight, number of MatMulInteger nodes)."""
    graph = onnx.load(str(path)).graph
    return quantizable_matmuls(onnx.load(str(path))), sum(n.op_type == "MatMulInteger" for n in graph.node)


def test_default_keeps_nothing_when_int8_is_within_budget(tmp_path, bundles):
    bundle = bundles[None]
    lines = []
    r = quantize_bundle(bundle, tmp_path / "q", "int8-dynamic", bench_seconds=0.05, progress=lines.append)
    # Measured on the calibration texts: drop 5.2e-06 with every MatMul int8, under the default 0.005.
    assert any(line.startswith("calibration texts: embedding cosine drop") for line in lines)
    assert not any("ranking" in line for line in lines)
    assert r.kept_float == [] and r.fidelity.drop <= RecipeOptions().sensitive_drop
    float_matmuls, integer = weight_matmul_kinds(tmp_path / "q" / "model.onnx")
    assert float_matmuls == [] and integer == 8  # 4 weight MatMuls per layer, all int8
    assert json.loads((tmp_path / "q" / "manifest.json").read_text())["quantization"]["kept_float"] == []


@pytest.mark.parametrize("layer", [0, 1])
def test_most_sensitive_ffn_output_stays_float(tmp_path, bundles, layer):
    bundle = bundles[layer]
    ffn_out = activation_fed_matmuls(onnx.load(str(bundle / "model.onnx")))
    assert len(ffn_out) == 2
    # A budget of 0 is never met: the cap decides how many stay float, the ranking which.
    one = quantize_bundle(bundle, tmp_path / "one", "int8-dynamic", bench_seconds=0.05,
                          options=RecipeOptions(sensitive_float=1, sensitive_drop=0.0))
    assert one.kept_float == [ffn_out[layer]]
    float_matmuls, integer = weight_matmul_kinds(tmp_path / "one" / "model.onnx")
    assert float_matmuls == [ffn_out[layer]] and integer == 7
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert manifest["quantization"]["kept_float"] == [ffn_out[layer]]
    both = quantize_bundle(bundle, tmp_path / "both", "int8-dynamic", bench_seconds=0.05,
                           options=RecipeOptions(sensitive_float=2, sensitive_drop=0.0))
    assert both.kept_float == [ffn_out[layer], ffn_out[1 - layer]]
    assert weight_matmul_kinds(tmp_path / "both" / "model.onnx") == (ffn_out, 6)
    none = quantize_bundle(bundle, tmp_path / "none", "int8-dynamic", bench_seconds=0.05,
                           options=RecipeOptions(sensitive_float=0))
    assert none.kept_float == [] and weight_matmul_kinds(tmp_path / "none" / "model.onnx") == ([], 8)
    # Keeping the outlier layer's projection in float buys back accuracy on the held-out evaluation texts.
    assert one.fidelity.drop < none.fidelity.drop


def test_kept_float_meets_the_budget_on_the_calibration_texts(tmp_path, bundles):
    from edgeformer import runtime
    from edgeformer.quantize import EvalSet, evaluate

    bundle = bundles[0]
    none = quantize_bundle(bundle, tmp_path / "none", "int8-dynamic", bench_seconds=0.05,
                           options=RecipeOptions(sensitive_float=0))
    calib = EvalSet(default_calibration_texts())
    ref = runtime.load(bundle)

    def calibration_drop(path):
        q = runtime.load(path)
        return evaluate(ref, lambda feeds: q.run(None, dict(feeds)), calib).drop

    all_int8 = calibration_drop(tmp_path / "none")
    # A budget just under the all-int8 drop: one MatMul in float is enough, and the result keeps it.
    budget = all_int8 * 0.9
    r = quantize_bundle(bundle, tmp_path / "q", "int8-dynamic", bench_seconds=0.05,
                        options=RecipeOptions(sensitive_drop=budget))
    assert none.kept_float == [] and len(r.kept_float) == 1
    assert calibration_drop(tmp_path / "q") <= budget < all_int8


def test_default_applies_to_int8_dynamic_only(tmp_path, bundles):
    bundle = bundles[0]
    r = quantize_bundle(bundle, tmp_path / "q4", "int4", bench_seconds=0.05,
                        options=RecipeOptions(sensitive_drop=0.0))
    assert r.kept_float == []


@pytest.mark.parametrize("options, message", [
    (RecipeOptions(sensitive_float=-1), "sensitive_float -1: expected a count of MatMuls, 0 or more"),
    (RecipeOptions(sensitive_float=True), "sensitive_float True: expected a count of MatMuls, 0 or more"),
    (RecipeOptions(sensitive_drop=float("nan")), "sensitive_drop nan: expected a finite drop, 0 or more"),
    (RecipeOptions(sensitive_drop=-0.1), "sensitive_drop -0.1: expected a finite drop, 0 or more"),
])
def test_bad_default_budget_options(tmp_path, bundles, options, message):
    bundle = bundles[None]
    with pytest.raises(QuantizeError, match=f"^{message}$"):
        quantize_bundle(bundle, tmp_path / "q", "int8-dynamic", options=options)
    assert not (tmp_path / "q").exists()


def test_calibration_texts_from_a_file_decide(tmp_path, bundles):
    # The budget is measured on the texts given; an .npz of model inputs holds none, so every MatMul stays int8.
    (tmp_path / "calib.txt").write_text("\n".join(default_calibration_texts()[:16]))
    lines = []
    r = quantize_bundle(bundles[0], tmp_path / "q", "int8-dynamic", bench_seconds=0.05, calib_data=tmp_path / "calib.txt",
                        options=RecipeOptions(sensitive_float=1, sensitive_drop=0.0), progress=lines.append)
    assert len(r.kept_float) == 1 and any(line.startswith("calibration texts:") for line in lines)
    from edgeformer import runtime

    model = runtime.load(bundles[0])
    feeds = model.tokenizer.encode_batch(default_calibration_texts()[:16], 64, truncation=True).feeds([s.name for s in model.inputs])
    np.savez(tmp_path / "calib.npz", **feeds)
    lines = []
    r = quantize_bundle(bundles[0], tmp_path / "npz", "int8-dynamic", bench_seconds=0.05, calib_data=tmp_path / "calib.npz",
                        options=RecipeOptions(sensitive_float=1, sensitive_drop=0.0), progress=lines.append)
    assert r.kept_float == [] and any(line.startswith("no calibration texts") for line in lines)
    with pytest.raises(QuantizeError, match="^calibration file .*missing.txt does not exist$"):
        quantize_bundle(bundles[0], tmp_path / "x", "int8-dynamic", calib_data=tmp_path / "missing.txt", smooth_alpha=None)
    assert not (tmp_path / "x").exists()


def test_cli_keep_float_sets_the_default_budgets_cap(tmp_path, bundles):
    from .test_cli import assert_bad_input, cli

    cli("quantize", bundles[0], "--out", tmp_path / "all-int8", "--keep-float", "0")
    assert weight_matmul_kinds(tmp_path / "all-int8" / "model.onnx") == ([], 8)
    assert json.loads((tmp_path / "all-int8" / "manifest.json").read_text())["quantization"]["kept_float"] == []
    assert_bad_input(cli("quantize", bundles[0], "--out", tmp_path / "bad", "--keep-float", "-1", ok=False),
                     "--keep-float")
    assert not (tmp_path / "bad").exists()
