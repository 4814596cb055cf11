"""The Llama family (llama, qwen2, mistral) from Hugging Face folders: import, parity with transformers, export,
quantization."""

import collections
import json
import os

import numpy as np
import onnx
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never reach for a hub

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,  # noqa: E402
                          Qwen2Config, Qwen2ForCausalLM)

from edgeformer import runtime  # noqa: E402
from edgeformer.export import export_bundle  # noqa: E402
from edgeformer.modeling import ModelConfig, load  # noqa: E402
from edgeformer.modeling.config import ConfigError  # noqa: E402
from edgeformer.modeling.hf import ImportError_, import_hf  # noqa: E402
from edgeformer.modeling.models.transformer import Transformer  # noqa: E402

VOCAB = 300
ATOL = 1e-4  # float32 logits against transformers
TEXTS = ["the quick brown fox jumps over the lazy dog", "small language models run on phones and boards"] * 40
SMALL = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=None)


SPECIALS = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2


def byte_level_tokenizer(specials=SPECIALS) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TEXTS, trainer=trainer)
    return tok


FAMILIES = {
    # grouped-query attention (4 query heads share 2 key/value heads), untied head, rope theta 10000
    "llama": lambda: LlamaForCausalLM(LlamaConfig(**SMALL, num_key_value_heads=2)),
    # Qwen2: biased query/key/value, one key/value head, tied head, another theta
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**SMALL, num_key_value_heads=1, tie_word_embeddings=True,
                                                  rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
    # Llama 3: its frequency scaling (an original context shorter than the model's so every band is used),
    # an explicit head size wider than hidden_size / heads, tied head
    "llama3": lambda: LlamaForCausalLM(LlamaConfig(**{**SMALL, "max_position_embeddings": 256}, num_key_value_heads=2,
                                                   head_dim=24, tie_word_embeddings=True,
                                                   rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0,
                                                                    "factor": 8.0, "low_freq_factor": 1.0,
                                                                    "high_freq_factor": 4.0,
                                                                    "original_max_position_embeddings": 64})),
    "mistral": lambda: MistralForCausalLM(MistralConfig(**SMALL, num_key_value_heads=2, sliding_window=None)),
}


def save_family(name: str, path) -> torch.nn.Module:
    torch.manual_seed(0)
    hf = FAMILIES[name]().eval()
    for p in hf.parameters():  # biases and norms away from their initial 0 and 1, so a mapping error shows
        if p.dim() == 1:
            p.data.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(path)
    byte_level_tokenizer().save(str(path / "tokenizer.json"))
    return hf


@pytest.fixture(scope="module", params=list(FAMILIES))
def imported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    hf = save_family(request.param, root / "hf")
    import_hf(root / "hf", root / "ckpt")
    return request.param, hf, root


def padded_batch(rng, lengths):
    T = max(lengths)
    ids = torch.from_numpy(rng.integers(3, VOCAB, size=(len(lengths), T)))
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, T - n:] = 1  # left padding, as generation pads
    return ids, mask


def test_imported_logits_match_transformers(imported):
    name, hf, root = imported
    ours = load(root / "ckpt")
    cfg = ours.cfg
    assert (cfg.norm_type, cfg.feed_forward, cfg.positional) == ("rmsnorm", "gated", "rotary")
    head_dim = getattr(hf.config, "head_dim", None) or hf.config.hidden_size // hf.config.num_attention_heads
    assert cfg.kv_heads == hf.config.num_key_value_heads and cfg.head_dim == head_dim
    rng = np.random.default_rng(0)
    for lengths in ((1,), (17,), (9, 30, 4), (100, 60)):
        ids, mask = padded_batch(rng, lengths)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            want = hf(input_ids=ids, attention_mask=mask, position_ids=positions).logits
            got = ours(ids, mask, position_ids=positions)["logits"]
        real = mask.bool()
        assert want.std() > 0.05 and (want - got)[real].abs().max().item() <= ATOL, name
    if name == "llama3":  # the scaling is exercised: without it the same weights give other logits
        unscaled = Transformer(cfg.with_fields(rope_scaling="none")).eval()
        unscaled.load_state_dict(ours.state_dict())
        with torch.no_grad():
            assert (unscaled(ids, mask, position_ids=positions)["logits"] - got)[real].abs().max().item() > 10 * ATOL


def test_greedy_tokens_match_transformers_generate(imported):
    name, hf, root = imported
    ours = load(root / "ckpt")
    prompt = torch.tensor([[5, 17, 42, 7, 99]])
    hf.generation_config.eos_token_id = None  # 24 tokens each side, whatever a random model says
    want = hf.generate(prompt, max_new_tokens=24, do_sample=False, pad_token_id=0)[0, 5:].tolist()
    cache = ours.empty_cache(1)
    ids, got = prompt, []
    mask = torch.ones_like(prompt)
    with torch.no_grad():
        for _ in range(24):
            logits = ours(ids, mask, cache=cache)["logits"]
            ids = logits[:, -1:].argmax(-1)
            mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
            got.append(int(ids))
    assert got == want, name


def test_config_stores_the_llama_settings_and_nothing_for_older_models(imported):
    _, _, root = imported
    stored = json.loads((root / "ckpt" / "config.json").read_text())
    assert stored["norm_type"] == "rmsnorm" and stored["feed_forward"] == "gated"
    assert "norm_type" not in ModelConfig(arch="decoder").to_dict()  # a model without them stores what it always did


def test_impossible_llama_settings_are_one_line_config_errors():
    base = dict(arch="decoder", vocab_size=50, d_model=32, n_heads=4, n_layers=1, d_ff=64, max_len=16)
    for bad, message in ((dict(kv_heads=3), "kv_heads=3 does not divide n_heads=4"),
                         (dict(kv_heads=2, attention_kind="local", window=4), "kv_heads=2 \\(grouped-query\\) needs attention_kind=full"),
                         (dict(kv_heads=0), "kv_heads=0; expected null or an integer in \\[1, 256\\]"),
                         (dict(rope_scaling="yarn"), "rope_scaling='yarn' is not supported"),
                         (dict(rope_theta=float("nan")), "rope_theta=nan; expected a number"),
                         (dict(norm_type="batch"), "norm_type='batch' is not supported"),
                         (dict(arch="encoder", image_size=32, patch_size=16, max_len=5, positional="learned",
                               norm_type="rmsnorm"), "norm_type apply to text models; expected their defaults for this image model"),
                         (dict(arch="seq2seq", positional="sinusoidal", kv_heads=2),
                          "grouped-query attention applies to encoders and decoders"),
                         (dict(d_model=30), "d_model=30 is not divisible by n_heads=4; expected such a d_model or an explicit head_size")):
        with pytest.raises(ConfigError, match=message):
            ModelConfig.from_dict({**base, **bad})
    cfg = ModelConfig.from_dict({**base, "d_model": 30, "head_size": 8, "kv_heads": 2})
    assert sum(p.numel() for p in Transformer(cfg).blocks[0].attn.qkv.parameters()) == 30 * (32 + 16 + 16) + 64


def test_unsupported_llama_variants_are_refused_by_name(tmp_path):
    save_family("mistral", tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    for change, message in (({"sliding_window": 32}, "sliding-window attention \\(sliding_window=32\\) is not supported"),
                            ({"num_local_experts": 8}, "mixture-of-experts layers \\(num_local_experts=8\\) are not supported"),
                            ({"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported for mistral; expected 'silu'"),
                            ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}},
                             "rope_type 'yarn' is not supported")):
        (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ImportError_, match=message):
            import_hf(tmp_path / "hf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def hf_greedy(hf, prompt: list[int], n: int) -> list[int]:
    hf.generation_config.eos_token_id = None  # n tokens each side, whatever a random model says
    out = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                      max_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def test_cached_bundle_keeps_key_value_heads_and_generates_transformers_tokens(imported):
    name, hf, root = imported
    result = export_bundle(root / "ckpt", root / "cached", kv_cache=True)
    cache = result.manifest.cache
    assert result.report.passed and result.manifest.attention.count == 2 and result.manifest.attention.op == "Attention"
    assert (cache.heads, cache.head_dim) == (hf.config.num_key_value_heads, load(root / "ckpt").cfg.head_dim)
    model = runtime.load(root / "cached")
    prompts = [[5, 17, 42, 7, 99, 12, 8], [33, 4, 250]]  # one padded batch: rows of different lengths
    got = model.generate(prompts, max_new_tokens=16).token_ids
    assert got == [hf_greedy(hf, p, 16) for p in prompts], name


# two families cover grouped-query attention, biased and unbiased projections, untied and tied heads
TWO_FAMILIES = pytest.mark.parametrize("imported", ["llama", "qwen2"], indirect=True)


@TWO_FAMILIES
@pytest.mark.parametrize("attention", ["fused", "unfused"])
def test_plain_bundle_matches_transformers_on_padded_batches(imported, attention):
    name, hf, root = imported
    result = export_bundle(root / "ckpt", root / f"plain-{attention}", attention=attention)
    assert result.report.passed and result.manifest.attention.kind == attention
    ids, mask = padded_batch(np.random.default_rng(1), (12, 5, 9))
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits.numpy()
    got = runtime.load(root / f"plain-{attention}")({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})["logits"]
    real = mask.numpy().astype(bool)
    assert np.abs(got - want)[real].max() <= ATOL


@TWO_FAMILIES
@pytest.mark.parametrize("recipe", ["int4", "int8-dynamic"])
def test_quantized_cached_bundle_loads_generates_and_is_measured_against_its_budget(imported, tmp_path, recipe):
    from edgeformer.quantize import quantize_bundle
    from edgeformer.quantize.evaluate import default_eval_texts
    from edgeformer.quantize.generation_eval import GenerationData

    name, _, root = imported
    cached = root / "cached"
    if not cached.exists():
        export_bundle(root / "ckpt", cached, kv_cache=True)
    data = GenerationData(texts=default_eval_texts(12).texts, prompts=4, greedy_tokens=16)
    # random weights: int4 moved perplexity by -0.5% and int8 by -0.02% on llama (a trained model: benchmarks/smollm2.py)
    result = quantize_bundle(cached, tmp_path / recipe, recipe, max_drop=0.05, data=data, bench_seconds=0.1)
    manifest = runtime.open_bundle(tmp_path / recipe).manifest
    assert manifest.cache == runtime.open_bundle(cached).manifest.cache and manifest.cache.heads == 2 - (name == "qwen2")
    assert manifest.parity.kind == "budget" and manifest.parity.max_drop == 0.05 and manifest.parity.passed
    fid = result.fidelity
    assert fid.perplexity_increase <= 0.05 and fid.next_token_agreement >= (0.75 if recipe == "int4" else 0.95)
    cover = manifest.quantization.coverage["model.onnx"]
    assert cover["weight_matmuls"] == "9/9" and cover["lm_head"] == recipe  # 4 per layer (qkv, o, gate and up, down) + head
    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / recipe / "model.onnx")).graph.node)
    assert ops["MatMulNBits" if recipe == "int4" else "MatMulInteger"] >= 8
    got = runtime.load(tmp_path / recipe).generate([[5, 17, 42, 7, 99], [33, 4, 250]], max_new_tokens=12)
    assert [len(t) for t in got.token_ids] == [12, 12] and got.stop_reasons == ["length", "length"]


def test_a_folder_brings_its_end_of_turn_tokens_and_chat_template(tmp_path):
    """generation_config.json's eos ids (Llama 3 lists several), tokenizer_config.json's eos_token and its chat
    template reach the cached bundle, and generation stops at the first of them it meets."""
    hf = save_family("llama", tmp_path / "hf")
    want = hf_greedy(hf, [5, 6, 7], 12)
    cut = next(i for i in range(2, 12) if want[i] not in want[:i])  # a token greedy decoding meets first at step `cut`
    template = "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}"
    (tmp_path / "hf" / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": [want[cut], 2]}))
    (tmp_path / "hf" / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>", "chat_template": template}))
    import_hf(tmp_path / "hf", tmp_path / "ckpt")
    source = json.loads((tmp_path / "ckpt" / "source.json").read_text())
    assert source["end_ids"] == list(dict.fromkeys([want[cut], 2])) and source["chat_template"] == template
    export_bundle(tmp_path / "ckpt", tmp_path / "bundle", kv_cache=True)
    model = runtime.load(tmp_path / "bundle")
    assert model.manifest.cache.end_ids == source["end_ids"] and model.manifest.cache.bos_id == 1
    out = model.generate([[5, 6, 7]], max_new_tokens=12)
    assert out.token_ids[0] == want[:cut] and out.stop_reasons == ["stop"]
