"""T5 from Hugging Face folders: import into the seq2seq model, relative positions, export, generation, quantization.

Random small models from transformers' own T5Config: T5 1.0's shape (ReLU, tied head with the output
scaled) and Flan-T5's (gated GELU, untied head, a head size that is not d_model / num_heads), each
with a SentencePiece unigram tokenizer trained here that ends every source with </s>, as T5's does.
"""

import json
import pydoc_data.topics

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from tokenizers import SentencePieceUnigramTokenizer, processors

from edgeformer import runtime
from edgeformer.cli.main import cli
from edgeformer.export import export_bundle
from edgeformer.export.checks import op_counts
from edgeformer.modeling import ModelConfig, load
from edgeformer.modeling.config import ConfigError
from edgeformer.modeling.hf import import_hf
from edgeformer.modeling.hf_weights import ImportError_
from edgeformer.modeling.models.relative_position import relative_buckets
from edgeformer.modeling.models.seq2seq import Seq2SeqTransformer

transformers = pytest.importorskip("transformers")

VOCAB = 160
SMALL = dict(vocab_size=VOCAB, d_model=32, d_ff=48, num_layers=2, num_heads=4, decoder_start_token_id=0,
             relative_attention_num_buckets=8, relative_attention_max_distance=20, dropout_rate=0.0)
FAMILIES = {"t5": dict(d_kv=8, feed_forward_proj="relu", tie_word_embeddings=True),
            "flan-t5": dict(d_kv=12, feed_forward_proj="gated-gelu", tie_word_embeddings=False)}
ATOL = 1e-4  # float32, as every parity gate


def unigram_tokenizer():
    """A SentencePiece unigram tokenizer that appends </s> to each source (T5's post-processor)."""
    tok = SentencePieceUnigramTokenizer()
    text = pydoc_data.topics.topics["if"] + pydoc_data.topics.topics["for"]
    tok.train_from_iterator(text.split("\n"), vocab_size=VOCAB - 8, special_tokens=["<pad>", "</s>", "<unk>"],
                            unk_token="<unk>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return tok


def save_t5(name: str, path, spread: float = 0.3) -> torch.nn.Module:
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**SMALL, **FAMILIES[name])).eval()
    with torch.no_grad():
        for p in hf.parameters():  # T5's initialisation gives near-constant logits; spread them so greedy tokens vary
            p.add_(torch.randn_like(p) * (0.1 if p.dim() == 1 else spread))
        if name == "flan-t5":
            hf.lm_head.weight = torch.nn.Parameter(torch.randn_like(hf.shared.weight) * spread)  # untied, as Flan-T5 ships
            hf.config.tie_word_embeddings = False
    hf.save_pretrained(path)
    if name == "flan-t5":  # transformers 5 always writes tie_word_embeddings=true; Flan-T5's own config says false
        cfg = json.loads((path / "config.json").read_text())
        cfg.update(tie_word_embeddings=False, scale_decoder_outputs=False)
        (path / "config.json").write_text(json.dumps(cfg))
    unigram_tokenizer().save(str(path / "tokenizer.json"))
    return transformers.T5ForConditionalGeneration.from_pretrained(path).eval()


@pytest.fixture(scope="module", params=list(FAMILIES))
def imported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    hf = save_t5(request.param, root / "hf")
    import_hf(root / "hf", root / "ckpt")
    return request.param, hf, root


def padded_sources(lengths, seed=0):
    """Right-padded sources (as the seq2seq runtime pads them); one longer than relative_max_distance."""
    rng = np.random.default_rng(seed)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.from_numpy(rng.integers(3, VOCAB, size=n))
        mask[i, :n] = 1
    return ids, mask


@pytest.mark.parametrize("lengths", [[1], [7, 3], [40, 25, 9]])
def test_imported_logits_match_transformers(imported, lengths):
    name, hf, root = imported
    model = load(root / "ckpt")
    assert isinstance(model, Seq2SeqTransformer) and model.cfg.positional == "relative"
    assert model.cfg.tie_embeddings == (name == "t5") and model.cfg.head_dim == FAMILIES[name]["d_kv"]
    ids, mask = padded_sources(lengths)
    target = torch.randint(3, VOCAB, (len(lengths), 30))
    target[:, 0] = 0  # the decoder's start token
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=target).logits
        got = model(ids, mask, target)["logits"]
    # relative to the logits' size: these weights give logits up to about 25, and float32 sums in another order
    assert (got - want).abs().max() <= ATOL * want.abs().max()
    assert want.std() > 1.0  # logits that vary: a mapping error would show


def test_buckets_are_t5s_on_every_offset():
    bucket = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket
    offsets = torch.arange(-600, 600)
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (8, 20), (4, 3)):
            want = bucket(offsets, bidirectional=bidirectional, num_buckets=buckets, max_distance=distance)
            assert torch.equal(relative_buckets(offsets, bidirectional, buckets, distance), want)


def test_bundle_parity_graphs_and_greedy_tokens_match_transformers(imported):
    name, hf, root = imported
    result = export_bundle(root / "ckpt", root / "bundle")
    report = result.report
    assert report.passed and any(c.padded for c in report.cases) and sum(c.past > 0 for c in report.cases) >= 6
    assert max(o.scaled for o in report.worst.values()) <= ATOL  # atol x max(1, |logits|): export/parity.py
    decoder, encoder = (onnx.load(str(result.path / f)) for f in ("model.onnx", "encoder.onnx"))
    assert op_counts(decoder)["Attention"] == 4 and op_counts(encoder)["Attention"] == 2
    # the buckets are a table the graph gathers from: no float logarithm to disagree at a bucket's edge
    assert "Log" not in op_counts(decoder) and "Log" not in op_counts(encoder)
    cache = json.loads((result.path / "manifest.json").read_text())["model"]["cache"]
    assert cache["head_dim"] == FAMILIES[name]["d_kv"] and cache["end_ids"] == [1] and cache["start_id"] == 0

    bundle = runtime.load(result.path)
    sources = ["if the condition is true", "for each item in the sequence, the suite is executed once"]
    batch = bundle.tokenizer.encode_batch(sources, max_length=64)
    ids, mask = torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
    got = bundle.generate(sources, max_new_tokens=24)
    with torch.no_grad():
        want = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=24, do_sample=False)[:, 1:]
    for row, tokens, reason in zip(want.tolist(), got.token_ids, got.stop_reasons):
        ended = 1 in row  # transformers keeps </s> and pads after it; edgeformer's token_ids stop before it
        assert tokens == row[:row.index(1) if ended else len(row)] and reason == ("stop" if ended else "length")
    assert got.texts[0] == bundle.tokenizer.decode(got.token_ids[0])


def test_quantized_t5_generates_within_its_budget(tmp_path):
    from edgeformer.quantize import quantize_bundle
    from edgeformer.quantize.generation_eval import GenerationData

    # weights spread less than the parity tests' (0.1): a random model that far from its initialisation is chaotic,
    # and int8 noise flips its tokens (measured here: next-token agreement 0.64 at 0.3, 0.97 at 0.1)
    save_t5("t5", tmp_path / "hf", spread=0.1)
    import_hf(tmp_path / "hf", tmp_path / "ckpt")
    export_bundle(tmp_path / "ckpt", tmp_path / "bundle")
    sentences = [s for s in pydoc_data.topics.topics["while"].split("\n") if len(s.split()) > 4][:8]
    data = GenerationData(pairs=[(s, s) for s in sentences], prompts=4)
    result = quantize_bundle(tmp_path / "bundle", tmp_path / "q", "int8-dynamic", data=data, bench_seconds=0.1)
    manifest = runtime.open_bundle(tmp_path / "q").manifest
    assert manifest.parity.kind == "budget" and manifest.parity.passed
    cover = manifest.quantization.coverage
    assert cover["encoder.onnx"]["cross_attention_kv"] == "1/1" and set(cover) == {"model.onnx", "encoder.onnx"}
    # measured here: next-token agreement 0.974, greedy agreement 1.0, perplexity -0.2%
    fid = result.fidelity
    assert fid.next_token_agreement >= 0.95 and fid.greedy_agreement >= 0.9 and abs(fid.perplexity_increase) <= 0.01
    for file in ("model.onnx", "encoder.onnx"):
        assert op_counts(onnx.load(str(tmp_path / "q" / file)))["MatMulInteger"] >= 2
    got = runtime.load(tmp_path / "q").generate(sentences[:2], max_new_tokens=8)
    assert got.token_ids == runtime.load(tmp_path / "bundle").generate(sentences[:2], max_new_tokens=8).token_ids


@pytest.mark.parametrize("change, message", [
    ({"num_decoder_layers": 3}, "num_decoder_layers=3 with num_layers=2 is not supported"),
    ({"decoder_start_token_id": 5}, "decoder_start_token_id=5 is not supported; expected the pad token (0)"),
    ({"feed_forward_proj": "gated-silu"}, "feed_forward_proj 'gated-silu' is not supported"),
])
def test_unsupported_t5_variants_are_one_line_exit_2(tmp_path, change, message):
    save_t5("t5", tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(ImportError_, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_hf(tmp_path / "hf", tmp_path / "ckpt")
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "hf"), "--out", str(tmp_path / "ckpt")])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "ckpt").exists()


def test_relative_settings_are_stored_and_checked():
    cfg = ModelConfig.from_preset("tiny", arch="seq2seq", positional="relative", norm="pre", relative_buckets=16)
    stored = cfg.to_dict()
    assert stored["relative_buckets"] == 16 and "relative_max_distance" not in stored  # only where not the default
    assert ModelConfig.from_dict(stored) == cfg
    assert "relative_buckets" not in ModelConfig.from_preset("tiny", arch="seq2seq").to_dict()
    with pytest.raises(ConfigError, match="positional=relative .* applies to seq2seq models"):
        ModelConfig.from_preset("tiny", arch="decoder", positional="relative")
    with pytest.raises(ConfigError, match="relative_buckets=2"):
        ModelConfig.from_preset("tiny", arch="seq2seq", positional="relative", relative_buckets=2)
    with pytest.raises(ConfigError, match="grouped-query attention applies to encoders and decoders"):
        ModelConfig.from_preset("tiny", arch="seq2seq", kv_heads=2)
