"""Decoder export with a key/value cache: one graph for the prompt and each new token, fused attention."""

import numpy as np
import onnx
import pytest
import torch

from edgeformer import runtime
from edgeformer.export import ExportError, bundle_parity, export_bundle
from edgeformer.export.cache_parity import LONG_PROMPT, check_cache_parity
from edgeformer.export.checks import op_counts
from edgeformer.export.parity import FLOAT32_ATOL
from edgeformer.modeling import load
from edgeformer.modeling.models.transformer import attention_keep_mask, cached_keep_mask

from .conftest import make_checkpoint


def assert_cache_parity(report, n_layers=2):
    assert report.passed
    assert {c.seq for c in report.cases if c.past == 0} >= {1, 16}  # prompts of one token and many
    assert any(c.padded for c in report.cases)  # left-padded batches
    assert sum(c.past > 0 and c.seq == 1 for c in report.cases) >= 8  # decode steps past the prompt
    names = set(report.worst)
    presents = {f"present.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")}
    assert names == {"logits", "logits[-1:]"} | presents  # logits[-1:]: the prompt asked for its last row only
    for o in report.worst.values():
        assert o.max_abs <= FLOAT32_ATOL and o.cosine > 0.99999


def test_cached_decoder_graph_manifest_and_parity(cached_decoder):
    _, result = cached_decoder
    assert_cache_parity(result.report)
    graph = onnx.load(str(result.path / "model.onnx"))
    assert op_counts(graph)["Attention"] == 2  # still one fused node per layer
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(graph.graph.input) + list(graph.graph.output)}
    assert dims["input_ids"] == dims["position_ids"] == ["batch", "seq"]
    assert dims["attention_mask"] == ["batch", "total"]
    assert dims["past_key_values.1.value"] == ["batch", 4, "past", 8]
    assert dims["present.0.key"] == ["batch", 4, "total", 8] and dims["logits"] == ["batch", "kept", 300]
    m = result.manifest
    assert m.opset == 23 and m.attention.count == 2 and m.attention.kind == "fused"
    cache = m.cache
    assert (cache.layers, cache.heads, cache.head_dim, cache.max_len) == (2, 4, 8, 128)
    assert cache.past == ["past_key_values.0.key", "past_key_values.0.value", "past_key_values.1.key",
                             "past_key_values.1.value"]
    assert cache.present[3] == "present.1.value"
    assert m.axes["past"] == {"min": 0, "max": 127} and m.parity.passed


@pytest.mark.parametrize("overrides", [
    dict(positional="sinusoidal", norm="post", activation="relu", tie_embeddings=False, n_layers=3),
])
def test_cache_export_variants_keep_parity(tmp_path, overrides):
    ckpt, _ = make_checkpoint(tmp_path / "ckpt", seed=4, arch="decoder", **overrides)
    result = export_bundle(ckpt, tmp_path / "bundle", kv_cache=True)
    assert_cache_parity(result.report, n_layers=3)
    assert op_counts(onnx.load(str(tmp_path / "bundle" / "model.onnx")))["Attention"] == 3


def test_cache_parity_catches_positions_counted_from_the_padding(cached_decoder):
    """Left padding must not shift positions: a bundle fed start-aligned position ids fails the gate."""
    ckpt, result = cached_decoder
    model = runtime.load(result.path)

    def start_aligned(feeds):
        feeds = dict(feeds)
        B, T = feeds["input_ids"].shape
        S = feeds["attention_mask"].shape[1]
        feeds["position_ids"] = np.broadcast_to(np.arange(S - T, S), (B, T)).copy()
        return model(feeds)

    report = check_cache_parity(load(ckpt), start_aligned, seed=3)
    assert not report.passed and report.worst["logits"].max_abs > 1e-3
    assert bundle_parity(result.path, ckpt, seed=3).passed  # the same cases, fed correctly


def test_the_context_end_is_checked_after_a_long_past(tmp_path):
    """A long context reaches its last positions after a repeated past, not a prompt of max_len - 3 tokens
    (four full prefills on both sides: minutes for an 8192-token model); a graph wrong only there fails."""
    ckpt, _ = make_checkpoint(tmp_path / "ckpt", seed=2, arch="decoder", positional="rotary", max_len=1024)
    result = export_bundle(ckpt, tmp_path / "bundle", kv_cache=True)
    report = result.report
    assert report.passed and max(c.seq for c in report.cases if c.past == 0) == LONG_PROMPT
    far = [c for c in report.cases if c.past >= 1024 - 7]
    assert [(c.seq, c.past) for c in far] == [(4, 1017), (1, 1021), (1, 1022), (1, 1023)] and far[0].padded
    model = runtime.load(result.path)

    def rotary_cut_at_512(feeds):
        return model({**feeds, "position_ids": np.minimum(feeds["position_ids"], 511)})

    cut = check_cache_parity(load(ckpt), rotary_cut_at_512, seed=1)
    assert not cut.passed and [c.past >= 1017 for c in cut.cases if c.outputs[0].scaled > FLOAT32_ATOL][0]


def test_cached_mask_is_aligned_to_the_end_of_the_keys():
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    keep = cached_keep_mask(mask, 2)[:, 0].int()  # (B, T, S): 2 new queries after 3 cached keys
    assert keep[1].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert keep[0].tolist() == [[0, 1, 1, 1, 0], [0, 1, 1, 1, 1]]  # the padded key stays hidden
    full = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert torch.equal(cached_keep_mask(full, 4), attention_keep_mask(full, causal=True))  # no past: the usual mask


def test_kv_cache_is_refused_for_an_encoder(tmp_path, encoder_ckpt):
    with pytest.raises(ExportError, match="cache is for decoders"):
        export_bundle(encoder_ckpt, tmp_path / "bundle", kv_cache=True)
    assert not (tmp_path / "bundle").exists()


def test_cached_bundle_checks_that_the_mask_covers_past_and_new_tokens(cached_decoder):
    model = runtime.load(cached_decoder[1].path)
    past = {n: np.zeros((1, 4, 2, 8), np.float32) for n in model.manifest.cache.past}
    with pytest.raises(runtime.InputError, match="past \\+ new tokens = 2 \\+ 1"):
        model(input_ids=[[5]], attention_mask=[[1, 1]], position_ids=[[2]], logits_to_keep=[1], **past)
    out = model(input_ids=[[5]], attention_mask=[[1, 1, 1]], position_ids=[[2]], logits_to_keep=[1], **past)
    assert out["present.0.key"].shape == (1, 4, 3, 8)
