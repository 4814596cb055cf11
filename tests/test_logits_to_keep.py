"""A cached decoder's `logits_to_keep` input (bundle format 3): the graph computes the logits of the last
k positions only (0: all), the runtime asks for one row when generating and for all when evaluating,
and bundles of format 1 and 2, whose graphs return every row, still generate as before."""

import json
import shutil

import numpy as np
import onnx
import pytest

from edgeformer import runtime
from edgeformer.export import export_bundle
from edgeformer.runtime.bundle import FORMAT_VERSION, LOGITS_TO_KEEP
from edgeformer.runtime.errors import BundleError
from edgeformer.runtime.generate import CachedDecoder
from edgeformer.runtime.inputs import left_pad, next_positions

from .conftest import make_checkpoint

ATOL = 1e-5  # the same graph run twice, its head on fewer rows: float32 rounding of one MatMul's rows
LLAMA = dict(positional="rotary", norm_type="rmsnorm", feed_forward="gated", activation="silu", norm="pre",
             linear_bias=False, kv_heads=2, tie_embeddings=False)


@pytest.fixture(scope="module", params=["gpt", "llama"])
def bundle(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"keep-{request.param}")
    extra = LLAMA if request.param == "llama" else dict(positional="learned")
    ckpt, _ = make_checkpoint(root / "ckpt", seed=5, arch="decoder", **extra)
    result = export_bundle(ckpt, root / "bundle", kv_cache=True)
    return runtime.load(result.path), result


def prompt_feeds(model, batch: int, seq: int, padded: bool, rng, past: int = 0) -> dict:
    """A left-padded prompt (rows after the first shortened when `padded`) after `past` cached random tokens."""
    cache, V = model.manifest.cache, model.manifest.config["vocab_size"]
    lengths = [seq] + ([int(n) for n in rng.integers(1, seq + 1, size=batch - 1)] if padded else [seq] * (batch - 1))
    ids, mask = left_pad([rng.integers(1, V, size=n).tolist() for n in lengths], cache.pad_id)
    mask = np.concatenate([np.ones((batch, past), np.int64), mask], axis=1)
    feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": next_positions(mask, seq)}
    feeds.update({n: rng.standard_normal((batch, cache.heads, past, cache.head_dim)).astype(np.float32)
                  for n in cache.past})
    return feeds


@pytest.mark.parametrize("batch, seq, padded, past", [(1, 9, False, 0), (3, 17, True, 0), (2, 6, True, 4)])
def test_the_graph_returns_the_last_rows_it_is_asked_for(bundle, batch, seq, padded, past):
    model, _ = bundle
    V = model.manifest.config["vocab_size"]
    feeds = prompt_feeds(model, batch, seq, padded, np.random.default_rng(seq), past)
    full = model({**feeds, LOGITS_TO_KEEP: np.array([0])})
    assert full["logits"].shape == (batch, seq, V)
    for k in (1, 3, seq + 5):  # more than the input's positions: every one, as transformers slices
        got = model({**feeds, LOGITS_TO_KEEP: np.array([k])})
        assert got["logits"].shape == (batch, min(k, seq), V)
        np.testing.assert_allclose(got["logits"], full["logits"][:, -min(k, seq):], atol=ATOL, rtol=0)
        for name in model.manifest.cache.present:  # the cache is every position's, whatever k
            np.testing.assert_array_equal(got[name], full[name])


def test_the_graph_slices_before_the_head_and_the_manifest_names_the_input(bundle):
    model, result = bundle
    m = model.manifest
    assert m.format_version == FORMAT_VERSION >= 3 and m.cache.logits_to_keep == LOGITS_TO_KEEP
    spec = next(s for s in m.inputs if s.name == LOGITS_TO_KEEP)
    assert (spec.dtype, spec.shape, spec.min, spec.max) == ("int64", (1,), 0, m.cache.max_len)
    assert m.outputs[0].shape == ("batch", "kept", m.config["vocab_size"])
    graph = onnx.load(str(result.path / "model.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    head = producers["logits"]
    while head.op_type != "MatMul":  # the lm_head's product, past any Reshape the exporter adds
        head = producers[head.input[0]]
    upstream, seen = [head.input[0]], set()
    while upstream:  # a Slice fed by logits_to_keep lies between the blocks and the head
        node = producers.get(upstream.pop())
        if node is None or node.name in seen or node.op_type == "MatMul":
            continue
        seen.add(node.name)
        if node.op_type == "Slice":
            break
        upstream += list(node.input)
    assert node is not None and node.op_type == "Slice"
    assert m.parity.passed and {"logits", "logits[-1:]"} <= set(m.parity.worst)  # the gate asked for both


def test_a_long_prompt_s_prefill_returns_one_row_of_logits(tmp_path):
    """512 prompt tokens: generation's prefill gets (1, 1, V) from the graph, not the (1, 512, V) a format 2
    graph returned; the first token is the one the full logits' last row picks."""
    ckpt, _ = make_checkpoint(tmp_path / "ckpt", seed=7, arch="decoder", positional="learned", max_len=600,
                              n_layers=1)
    model = runtime.load(export_bundle(ckpt, tmp_path / "bundle", kv_cache=True).path)
    V = model.manifest.config["vocab_size"]
    prompt = np.random.default_rng(0).integers(1, V, size=512).tolist()

    class Recording:  # the real session; what it returned is kept
        def __init__(self, session):
            self.session, self.logits = session, []

        def run(self, names, feeds):
            out = self.session.run(names, feeds)
            self.logits.append(out[0].shape)
            return out

    decoder = CachedDecoder(model, io_binding=False)
    decoder.session = recording = Recording(model.session)
    first = decoder.start([prompt])
    assert recording.logits == [(1, 1, V)]  # 4 * V bytes, not 512 * 4 * V
    ids, mask = left_pad([prompt], 0)
    full = model({"input_ids": ids, "attention_mask": mask, "position_ids": next_positions(mask, 512),
                  **dict(zip(model.manifest.cache.past, decoder.empty_past(1))), LOGITS_TO_KEEP: np.array([0])})
    assert full["logits"].shape == (1, 512, V)
    np.testing.assert_allclose(first, full["logits"][:, -1], atol=ATOL, rtol=0)
    assert model.generate([prompt], max_new_tokens=4).token_ids[0][0] == int(full["logits"][0, -1].argmax())


def test_a_manifest_naming_no_such_input_or_at_format_2_is_refused(bundle, tmp_path):
    _, result = bundle

    def edited(name, edit):
        dst = shutil.copytree(result.path, tmp_path / name)
        data = json.loads((dst / "manifest.json").read_text())
        edit(data)
        (dst / "manifest.json").write_text(json.dumps(data))
        return dst

    missing = edited("missing", lambda d: d["model"]["cache"].update(logits_to_keep="keep_rows"))
    with pytest.raises(BundleError, match="logits_to_keep names 'keep_rows', which is not a graph input") as err:
        runtime.load(missing, verify=False)
    assert "\n" not in str(err.value)
    older = edited("older", lambda d: d.update(format_version=2))
    with pytest.raises(BundleError, match="has model.cache.logits_to_keep at format_version 2"):
        runtime.load(older, verify=False)


def test_a_negative_count_is_refused_in_one_line(bundle):
    model, _ = bundle
    feeds = prompt_feeds(model, 1, 4, False, np.random.default_rng(1))
    with pytest.raises(runtime.InputError, match="logits_to_keep has value -1") as err:
        model({**feeds, LOGITS_TO_KEEP: np.array([-1])})
    assert "\n" not in str(err.value)


def test_pytorch_keeps_the_last_rows_with_and_without_a_cache(tmp_path):
    import torch

    from edgeformer.modeling.config import ConfigError

    _, model = make_checkpoint(tmp_path / "ckpt", seed=8, arch="decoder", positional="learned")
    ids = torch.randint(1, 300, (2, 6))
    with torch.no_grad():
        full = model(ids)["logits"]
        assert torch.allclose(model(ids, logits_to_keep=2)["logits"], full[:, -2:], atol=ATOL)
        cached = model(ids, cache=model.empty_cache(2), logits_to_keep=torch.tensor([1]))["logits"]
        assert cached.shape == (2, 1, 300) and torch.allclose(cached, full[:, -1:], atol=ATOL)
        with pytest.raises(ConfigError, match="logits_to_keep=-1; expected 0"):
            model(ids, logits_to_keep=-1)
