"""Graph passes: each one counted on real exported graphs, and checked to change no number."""

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch

from edgeformer.export.checks import op_counts
from edgeformer.export.kinds import trace_onnx
from edgeformer.export.passes import attention_to_3d, attention_to_contrib
from edgeformer.modeling import ModelConfig, Transformer
from edgeformer.runtime.inputs import example_inputs
from edgeformer.runtime.bundle import TensorSpec

from .conftest import TINY


# an encoder classifier, a decoder and a ViT: every attention the passes rewrite
MODELS = [dict(num_labels=3), dict(arch="decoder", n_layers=3),
          dict(image_size=16, patch_size=8, positional="learned", max_len=5, num_labels=2)]


def feeds_for(cfg, batch: int, seq: int, seed: int):
    if cfg.vision:
        specs = [TensorSpec("pixel_values", "float32", ("batch", 3, 16, 16))]
    else:
        specs = [TensorSpec("input_ids", "int64", ("batch", "seq"), 0, cfg.vocab_size - 1),
                 TensorSpec("attention_mask", "int64", ("batch", "seq"), 0, 1)]
    return example_inputs(specs, {"batch": batch, "seq": seq}, np.random.default_rng(seed), padded=True)


def run(model: ir.Model, feeds):
    return ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("overrides", MODELS)
def test_attention_to_3d_removes_eight_nodes_per_layer(overrides):
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_dict({**TINY, **overrides})).eval()
    n_layers = model.cfg.n_layers
    before = trace_onnx(model, "fused")
    counts_before = op_counts(ir.to_proto(before))
    after = trace_onnx(model, "fused")
    assert attention_to_3d(after) == n_layers
    counts_after = op_counts(ir.to_proto(after))
    assert counts_before["Transpose"] - counts_after["Transpose"] == 4 * n_layers
    assert counts_before["Reshape"] - counts_after["Reshape"] == 4 * n_layers
    assert counts_after["Attention"] == n_layers
    heads = [n.attributes["q_num_heads"].value for n in after.graph if n.op_type == "Attention"]
    assert heads == [model.cfg.n_heads] * n_layers
    assert attention_to_3d(after) == 0  # idempotent: nothing left to rewrite

    feeds = feeds_for(model.cfg, 3, 21, 0)
    for a, b in zip(run(before, feeds), run(after, feeds)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_unmatched_attention_is_left_alone():
    torch.manual_seed(0)
    graph = trace_onnx(Transformer(ModelConfig.from_dict(TINY)).eval(), "fused")
    node = next(n for n in graph.graph if n.op_type == "Attention")
    node.attributes["q_num_heads"] = ir.AttrInt64("q_num_heads", 4)  # already 3-D: not ours to touch
    assert attention_to_3d(graph) == TINY["n_layers"] - 1


@pytest.mark.parametrize("overrides", [
    dict(attention_kind="local", window=8),
    dict(attention_kind="longformer", window=8, global_tokens=2),
])
def test_attention_to_3d_rebuilds_merged_block_reshapes(overrides):
    """Local blocks reach the head split as Reshape((B, n*W, C) -> (B*n, W, H, d)), the exporter having
    merged two Reshapes: the pass must feed the node (B*n, W, C), not the (B, n*W, C) it started from."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_dict({**TINY, "max_len": 64, **overrides})).eval()
    before, after = trace_onnx(model, "fused"), trace_onnx(model, "fused")
    per_layer = 2 if overrides["attention_kind"] == "longformer" else 1
    assert attention_to_3d(after) == per_layer * model.cfg.n_layers
    counts = op_counts(ir.to_proto(after))
    assert counts["Transpose"] == 0 and counts["Attention"] == per_layer * model.cfg.n_layers
    specs = [TensorSpec("input_ids", "int64", ("batch", "seq"), 0, model.cfg.vocab_size - 1),
             TensorSpec("attention_mask", "int64", ("batch", "seq"), 0, 1)]
    if per_layer == 2:  # Longformer: which tokens are global, up to global_tokens per row
        specs.append(TensorSpec("global_attention_mask", "int64", ("batch", "seq"), 0, 1))
    for seq in (5, 21, 64):  # within one block, between multiples of the window, the maximum
        feeds = example_inputs(specs, {"batch": 3, "seq": seq}, np.random.default_rng(seq), padded=True, global_tokens=2)
        for a, b in zip(run(before, feeds), run(after, feeds)):
            np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("overrides", MODELS)
def test_attention_to_contrib_packs_projection_split_and_attention_into_one_node(overrides):
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_dict({**TINY, **overrides})).eval()
    n_layers, cfg = model.cfg.n_layers, model.cfg
    before = trace_onnx(model, "fused")
    attention_to_3d(before)
    counts_before = op_counts(ir.to_proto(before))
    after = ir.from_proto(ir.to_proto(before))
    assert attention_to_contrib(after) == n_layers
    counts_after = op_counts(ir.to_proto(after))
    assert counts_after["com.microsoft.Attention"] == n_layers and counts_after["Attention"] == 0
    for op in ("Split", "MatMul", "Add"):  # the QKV projection, its bias and the split: one each per layer
        assert counts_before[op] - counts_after[op] == n_layers, op
    masked = 0 if cfg.vision else 1  # one (B, T, T) int32 mask, shared by every layer
    assert counts_after["Cast"] - counts_before["Cast"] == masked and counts_after["Squeeze"] - counts_before["Squeeze"] == masked
    nodes = [n for n in after.graph if n.domain == "com.microsoft"]
    assert [n.attributes["num_heads"].value for n in nodes] == [cfg.n_heads] * n_layers
    causal = [n.attributes["is_causal"].value if "is_causal" in n.attributes else 0 for n in before.graph if n.op_type == "Attention"]
    assert [n.attributes["unidirectional"].value for n in nodes] == causal  # a decoder's causal mask is in the mask itself
    assert attention_to_contrib(after) == 0  # idempotent
    for batch, seq, seed in ((3, 21, 0), (2, 7, 1), (1, 1, 2)):  # padded rows included: the mask is the same mask
        feeds = feeds_for(cfg, batch, seq, seed)
        for a, b in zip(run(before, feeds), run(after, feeds)):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_attention_to_contrib_leaves_grouped_query_and_cached_attention_alone():
    torch.manual_seed(0)
    grouped = Transformer(ModelConfig.from_dict({**TINY, "arch": "decoder", "kv_heads": 2})).eval()
    graph = trace_onnx(grouped, "fused")
    attention_to_3d(graph)
    assert attention_to_contrib(graph) == 0 and op_counts(ir.to_proto(graph))["Attention"] == TINY["n_layers"]
    cached = trace_onnx(Transformer(ModelConfig.from_dict({**TINY, "arch": "decoder"})).eval(), "fused", kv_cache=True)
    attention_to_3d(cached)
    assert attention_to_contrib(cached) == 0
