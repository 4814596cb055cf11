"""The encoder-decoder (arch seq2seq): training on the built-in reverse task, two-graph export, generation."""

import json

import numpy as np
import onnx
import pytest
import torch

from edgeformer import runtime
from edgeformer.export import export_bundle
from edgeformer.export.checks import op_counts
from edgeformer.export.parity import FLOAT32_ATOL
from edgeformer.modeling import ModelConfig, load, save
from edgeformer.modeling.training.data import reverse_words
from edgeformer.modeling.models.seq2seq import Seq2SeqTransformer
from edgeformer.modeling.training.train import TrainConfig, train_checkpoint
from edgeformer.runtime.inputs import right_pad

from .conftest import TINY


@pytest.fixture(scope="module")
def seq2seq_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2s")
    torch.manual_seed(5)
    cfg = ModelConfig.from_dict({**TINY, "arch": "seq2seq", "positional": "sinusoidal", "norm": "post", "activation": "relu",
                         "max_len": 48})
    ckpt = save(Seq2SeqTransformer(cfg).eval(), root / "ckpt")
    return ckpt, export_bundle(ckpt, root / "bundle")


def test_config_defaults_are_the_papers():
    cfg = ModelConfig.from_preset("tiny", arch="seq2seq")
    assert (cfg.positional, cfg.norm, cfg.activation, cfg.task) == ("sinusoidal", "post", "relu", "seq2seq-lm")


def test_two_graphs_fused_attention_and_parity(seq2seq_bundle):
    _, result = seq2seq_bundle
    report = result.report
    assert report.passed and any(c.padded for c in report.cases) and sum(c.past > 0 for c in report.cases) >= 6
    for o in report.worst.values():
        assert o.max_abs <= FLOAT32_ATOL
    assert set(report.worst) >= {"cross.0.key", "cross.1.value", "logits", "present.1.key"}
    decoder = onnx.load(str(result.path / "model.onnx"))
    encoder = onnx.load(str(result.path / "encoder.onnx"))
    assert op_counts(decoder)["Attention"] == 4  # self- and cross-attention per decoder layer
    assert op_counts(encoder)["Attention"] == 2
    # Cross-attention keys/values come from the encoder graph, once per input: the decoder reads them as inputs.
    assert [o.name for o in encoder.graph.output] == ["cross.0.key", "cross.0.value", "cross.1.key", "cross.1.value"]
    assert {"cross.0.key", "cross.1.value", "past_key_values.0.key", "encoder_attention_mask"} <= \
        {i.name for i in decoder.graph.input}
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.onnx", "encoder.onnx", "vectors.json"}
    cache = manifest["model"]["cache"]
    assert cache["encoder"] == "encoder.onnx" and cache["cross"][0] == "cross.0.key" and cache["start_id"] == 0
    assert manifest["attention"]["count"] == 4 and manifest["attention"]["encoder"]["count"] == 2


@pytest.mark.parametrize("sources", [[[7]], [[5, 9, 250, 31, 7]], [[3, 4, 5, 6, 7, 8, 9], [200, 1]]])
def test_runtime_greedy_matches_pytorch(seq2seq_bundle, sources):
    ckpt, result = seq2seq_bundle
    model = load(ckpt)
    assert isinstance(model, Seq2SeqTransformer)
    ids, mask = (torch.from_numpy(a) for a in right_pad(sources, model.cfg.pad_id))
    want = model.greedy(ids, mask, 20, eos_id=None).tolist()
    bundle = runtime.load(result.path)
    got = bundle.generate(sources, max_new_tokens=20)
    assert got.token_ids == want
    assert got.token_ids == bundle.generate(sources, max_new_tokens=20, io_binding=False).token_ids
    # padding a batch's shorter sources changes nothing: each row is what its source gives alone
    assert got.token_ids == [bundle.generate([src], max_new_tokens=20).token_ids[0] for src in sources]


def test_seq2seq_overflow_and_bad_input(seq2seq_bundle):
    bundle = runtime.load(seq2seq_bundle[1].path)
    with pytest.raises(runtime.InputError, match="prompt of 49 tokens; this model's context holds at most 48"):
        bundle.generate([[1] * 49])
    with pytest.raises(runtime.InputError, match="max_new_tokens 60 exceeds this model's context of 48"):
        bundle.generate([[1] * 40], max_new_tokens=60)
    cut = bundle.generate([[1] * 40], max_new_tokens=60, on_overflow="truncate")
    assert len(cut.token_ids[0]) == 48 and "cut to 48" in cut.notes[0]


@pytest.mark.slow
def test_training_learns_to_reverse(tmp_path):
    """The built-in task separates a working model from a broken one: exact match goes from 0 to most sequences."""
    result = train_checkpoint(tmp_path / "ckpt", "seq2seq", "tiny", tc=TrainConfig(epochs=8, lr=2e-3, batch_size=64),
                              vocab_size=300, overrides={"dropout": 0.0}, progress=False)
    assert result.history[0]["eval_exact_match"] < 0.1
    assert result.history[-1]["eval_exact_match"] > 0.8
    exported = export_bundle(tmp_path / "ckpt", tmp_path / "bundle")
    assert exported.report.passed
    held_out = reverse_words().eval[:40]
    out = runtime.load(tmp_path / "bundle").generate([s for s, _ in held_out], max_new_tokens=24)
    right = sum(text.strip() == target for text, (_, target) in zip(out.texts, held_out))
    assert right >= 0.8 * len(held_out) and out.stop_reasons.count("stop") >= 0.8 * len(held_out)
