"""Graph passes: each one counted on real exported graphs, and checked to change no number."""

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch

from edgeformer.export.checks import op_counts
from edgeformer.export.kinds import trace_onnx
from edgeformer.export.passes import attention_to_3d, attention_to_contrib, merge_sibling_matmuls, rotary_attention
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


ROTARY = dict(arch="decoder", positional="rotary", norm_type="rmsnorm", feed_forward="gated", linear_bias=False,
              qkv_bias=False, kv_heads=2, rope_theta=5e5)


def cached_feeds(cfg, batch: int, past: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    """A padded batch (row 1 left-padded by 3) with `past` cached positions of random keys and values."""
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, past + seq), dtype=np.int64)
    mask[min(1, batch - 1), :3] = 0 if batch > 1 else 1
    feeds = {"input_ids": rng.integers(0, cfg.vocab_size, (batch, seq)), "attention_mask": mask,
             "position_ids": np.clip(np.cumsum(mask, -1) - 1, 0, None)[:, past:]}
    for i in range(cfg.n_layers):
        for part in ("key", "value"):
            feeds[f"past_key_values.{i}.{part}"] = rng.standard_normal((batch, cfg.kv_heads, past, cfg.head_dim), dtype=np.float32)
    return feeds


def rotary_graphs():
    """(model, its cached graph, a second copy of it for a pass to rewrite): a tiny GQA rotary decoder."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_dict({**TINY, **ROTARY})).eval()
    return model, trace_onnx(model, "fused", kv_cache=True), trace_onnx(model, "fused", kv_cache=True)


def cached_outputs(model, before, after, cases):
    """(before's outputs, after's outputs) on each (batch, past, seq) of `cases`."""
    names = {v.name for v in after.graph.inputs}
    for batch, past, seq in cases:
        feeds = {k: v for k, v in cached_feeds(model.cfg, batch, past, seq, seed=past).items() if k in names}
        if "logits_to_keep" in names:
            feeds["logits_to_keep"] = np.array([0], dtype=np.int64)
        yield from zip(run(before, feeds), run(after, feeds))


def test_rotary_attention_takes_the_rotation_and_the_cache_into_three_standard_nodes():
    model, before, after = rotary_graphs()
    n_layers = model.cfg.n_layers
    counts_before = op_counts(ir.to_proto(before))
    assert rotary_attention(after) == n_layers
    counts = op_counts(ir.to_proto(after))
    assert counts["RotaryEmbedding"] == 2 * n_layers and counts["Attention"] == n_layers
    for op, per_layer in (("Transpose", 4), ("Neg", 2), ("Slice", 4)):  # q, k, v and the output; two rotations
        assert counts_before[op] - counts.get(op, 0) == per_layer * n_layers, op
    assert "Concat" not in counts  # the rotations' and the cache's, and the head-splitting shapes'
    assert sum(counts_before.values()) - sum(counts.values()) >= 24 * n_layers
    attention = [n for n in after.graph if n.op_type == "Attention"]
    assert [(n.attributes["q_num_heads"].value, n.attributes["kv_num_heads"].value) for n in attention] == [(4, 2)] * n_layers
    assert [o.name for o in after.graph.outputs] == [o.name for o in before.graph.outputs]  # present.* keep their names
    assert rotary_attention(after) == 0  # idempotent

    # a prompt, a padded chunk, one cached step
    for a, b in cached_outputs(model, before, after, ((1, 0, 9), (3, 5, 4), (2, 11, 1))):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_rotary_attention_leaves_learned_positions_and_odd_tables_alone():
    torch.manual_seed(0)
    learned = trace_onnx(Transformer(ModelConfig.from_dict({**TINY, "arch": "decoder"})).eval(), "fused", kv_cache=True)
    assert rotary_attention(learned) == 0
    graph = trace_onnx(Transformer(ModelConfig.from_dict({**TINY, **ROTARY})).eval(), "fused", kv_cache=True)
    gather = next(n for n in graph.graph if n.op_type == "GatherND")
    table = gather.inputs[0].const_value.numpy().copy()
    table[:, 0] += 1.0  # halves that differ: no longer one angle per channel pair
    gather.inputs[0].const_value = ir.tensor(table)
    assert rotary_attention(graph) == 0


def test_sibling_matmuls_become_one_product_and_a_split():
    model, before, after = rotary_graphs()
    n_layers = model.cfg.n_layers
    counts_before = op_counts(ir.to_proto(before))
    assert merge_sibling_matmuls(after) == n_layers  # each gated feed-forward's gate and up
    counts = op_counts(ir.to_proto(after))
    assert counts_before["MatMul"] - counts["MatMul"] == n_layers and counts["Split"] - counts_before["Split"] == n_layers
    widths = sorted(v.const_value.numpy().shape for v in after.graph.initializers.values()
                    if v.const_value is not None and v.name.endswith("_merged_weight"))
    assert widths == [(model.cfg.d_model, 2 * model.cfg.d_ff)] * n_layers
    assert merge_sibling_matmuls(after) == 0  # idempotent
    for a, b in cached_outputs(model, before, after, ((1, 0, 9), (3, 5, 4))):
        np.testing.assert_array_equal(a, b)


def test_a_shared_weight_is_not_merged():
    torch.manual_seed(0)
    graph = trace_onnx(Transformer(ModelConfig.from_dict({**TINY, **ROTARY})).eval(), "fused", kv_cache=True)
    gate = next(n for n in graph.graph if n.op_type == "MatMul" and n.inputs[1].const_value is not None
                and sum(u.node.op_type == "MatMul" for u in n.inputs[0].uses()) == 2)
    extra = ir.node("Identity", [gate.inputs[1]])  # the weight read elsewhere too (as a tied table is)
    graph.graph.append(extra)
    graph.graph.outputs.append(extra.outputs[0])
    extra.outputs[0].name = "weight_copy"
    assert merge_sibling_matmuls(graph) == TINY["n_layers"] - 1
