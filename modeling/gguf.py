"""Import a GGUF file (llama.cpp's format; architecture llama) into edgeformer's own modules.

The `gguf` package reads the metadata and the tensors and dequantizes their blocks (Q8_0, Q4_0,
Q4_1, the K-quants, ...) to float32. The model is the Llama family's (modeling/hf_llama.py): the
metadata becomes the config.json Hugging Face would have written and the tensors get Hugging Face
names, so both importers build the same modules from the same mapping.

    GGUF                                   Hugging Face
    llama.embedding_length, block_count,   hidden_size, num_hidden_layers, intermediate_size,
    feed_forward_length, attention.*,      num_attention_heads, num_key_value_heads, head_dim,
    rope.freq_base, context_length         rope_theta, max_position_embeddings
    token_embd, blk.N.attn_q/k/v/output,   model.embed_tokens, model.layers.N.self_attn.q/k/v/o_proj,
    ffn_gate/up/down, attn_norm, ffn_norm, mlp.gate/up/down_proj, input_/post_attention_layernorm,
    output_norm, output (absent: tied)     model.norm, lm_head

Llama 3's frequency scaling travels as a `rope_freqs` tensor (each frequency's divisor), not as its
settings; `llama3_scaling` finds the settings that give exactly those divisors (modeling/models/rotary.py
computes the same frequencies) and refuses divisors that are not Llama 3's scaling.

llama.cpp's converter stores the query and key rows of each head interleaved (pairs of rotary
channels side by side); they are put back in Hugging Face's order (first half, second half) here.
The tokenizer (byte-level BPE tokens and merges, or SentencePiece BPE pieces and scores; special tokens), the chat template, the tokens that
end a turn (eos, and eot / eom where the file names them) and the source file's block formats are
recorded with the checkpoint (source.json); export carries the template and end tokens into the bundle.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeformer.runtime.artifacts import check_output_dir, sha256_file
from edgeformer.runtime.tokenizer import TextTokenizer

from edgeformer.modeling.checkpoint import SOURCE_FILE, load_state, save
from edgeformer.modeling.hf_llama import llama_family
from edgeformer.modeling.hf_weights import ImportError_, WeightMap
from edgeformer.modeling.models.transformer import Transformer

ARCHITECTURES = ("llama",)
# tokenizer.ggml.token_type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
NORMAL_TOKEN, UNKNOWN_TOKEN, CONTROL_TOKEN = 1, 2, 3
LAYER_TENSORS = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                 "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
TOP_TENSORS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def read_gguf(path: Path):
    """The file's reader; a file gguf cannot parse (truncated, not GGUF, an unknown block type) is one line."""
    import gguf

    try:
        return gguf.GGUFReader(str(path))
    except ValueError as e:
        if "GGMLQuantizationType" in str(e):
            raise ImportError_(f"{path} holds a tensor of an unknown block type ({e}); expected a type the gguf "
                               "package knows (F32, F16, Q8_0, Q4_0, Q4_1, K-quants, ...)") from None
        raise ImportError_(f"{path} is not a readable GGUF file ({e}); it may be truncated") from None
    except Exception as e:  # the reader raises whatever numpy's memory map and struct unpacking raise
        raise ImportError_(f"{path} is not a readable GGUF file ({type(e).__name__}: {e}); it may be truncated") from None


def metadata(reader) -> dict[str, Any]:
    out = {}
    for name, field in reader.fields.items():
        try:
            out[name] = field.contents()
        except Exception:  # a value the reader cannot decode is left out; the keys used are checked below
            continue
    return out


def hf_config(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """The config.json a Hugging Face LlamaForCausalLM of this file would have."""
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise ImportError_(f"{path} has general.architecture {arch!r}; expected one of: {', '.join(ARCHITECTURES)}")

    def need(key: str):
        if f"{arch}.{key}" not in meta:
            raise ImportError_(f"{path} lacks metadata {arch}.{key}; expected by a {arch} model")
        return meta[f"{arch}.{key}"]

    tokens = meta.get("tokenizer.ggml.tokens") or []
    heads = int(need("attention.head_count"))
    hidden = int(need("embedding_length"))
    config = {"model_type": "llama", "hidden_size": hidden, "num_hidden_layers": int(need("block_count")),
              "intermediate_size": int(need("feed_forward_length")), "num_attention_heads": heads,
              "num_key_value_heads": int(meta.get(f"{arch}.attention.head_count_kv", heads)),
              "max_position_embeddings": int(need("context_length")),
              "rms_norm_eps": float(meta.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
              "rope_theta": float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
              "vocab_size": int(meta.get(f"{arch}.vocab_size", len(tokens))), "hidden_act": "silu",
              "eos_token_id": meta.get("tokenizer.ggml.eos_token_id"), "pad_token_id": meta.get("tokenizer.ggml.padding_token_id")}
    head_dim = meta.get(f"{arch}.attention.key_length")
    if head_dim is not None:
        config["head_dim"] = int(head_dim)
    if meta.get(f"{arch}.rope.scaling.type", "none") not in ("none",):
        raise ImportError_(f"{path} has rope scaling {meta[f'{arch}.rope.scaling.type']!r}; expected none")
    if meta.get(f"{arch}.expert_count"):
        raise ImportError_(f"mixture-of-experts layers ({arch}.expert_count={meta[f'{arch}.expert_count']}) are not supported")
    return config


def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's query/key row order (rotary pairs interleaved per head) back to Hugging Face's (halves)."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_tensors(reader, config: dict[str, Any], path: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Every tensor dequantized to float32 under its Hugging Face name, and how many tensors of each block type."""
    from gguf.quants import dequantize

    out, kinds = {}, Counter()
    for t in reader.tensors:
        base, _, suffix = t.name.rpartition(".")
        parts = base.split(".")
        if t.name == "rope_freqs.weight":  # Llama 3's scaling as divisors: into the config, not a weight
            config.update(llama3_scaling(np.asarray(t.data, dtype=np.float64).reshape(-1), config, path))
            kinds[t.tensor_type.name] += 1
            continue
        if parts[0] == "blk" and len(parts) == 3 and parts[2] in LAYER_TENSORS:
            name = f"model.layers.{parts[1]}.{LAYER_TENSORS[parts[2]]}.{suffix}"
        elif base in TOP_TENSORS:
            name = f"{TOP_TENSORS[base]}.{suffix}"
        else:
            raise ImportError_(f"{path} has tensor {t.name!r}, which a llama model does not have")
        try:
            w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        except (NotImplementedError, ValueError) as e:
            raise ImportError_(f"{path}: tensor {t.name!r} has block type {t.tensor_type.name}, which cannot be "
                               f"dequantized ({e})") from None
        w = w.reshape([int(n) for n in reversed(t.shape)])  # ggml lists the fastest axis first
        if parts[-1] in ("attn_q", "attn_k") and suffix == "weight":
            w = unpermute(w, config["num_attention_heads"] if parts[-1] == "attn_q" else config["num_key_value_heads"])
        out[name] = torch.from_numpy(np.array(w, dtype=np.float32, order="C"))  # a copy: the file is memory-mapped read-only
        kinds[t.tensor_type.name] += 1
    if "lm_head.weight" not in out:
        config["tie_word_embeddings"] = True  # no output.weight: the head is the token embedding
    return out, dict(kinds)


LLAMA3_DEFAULTS = (1.0, 4.0, 8192)  # low_freq_factor, high_freq_factor, original context of Llama 3.1 and 3.2


def llama3_scaling(divisors: np.ndarray, config: dict[str, Any], path: Path) -> dict[str, Any]:
    """The rope_scaling (rope_type llama3) whose frequencies are base^(-2i/hd) / divisors[i], for config.json.

    Between the wavelengths it keeps (divisor 1) and those it slows by `factor`, Llama 3 blends: 1 / divisor =
    (1 - s) / factor + s with s = (L / wavelength - low) / (high - low). That is linear in 1 / wavelength, so two
    blended frequencies give L / (high - low) and low / (high - low), which is all the scaling depends on (low
    is taken as 1). With fewer, Llama 3's own settings are tried. Either way every divisor is checked."""
    from edgeformer.modeling.models.rotary import RopeScaling, frequencies

    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    theta = config["rope_theta"]
    if divisors.shape != (head_dim // 2,) or not np.all(np.isfinite(divisors)) or divisors.min() <= 0:
        raise ImportError_(f"{path} has rope_freqs of shape {divisors.shape}; expected {head_dim // 2} positive divisors")
    factor = float(divisors.max())
    if factor <= 1.0 + 1e-6:
        return {}  # every divisor 1: no scaling
    inv_freq = theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    blend = (1.0 / divisors - 1.0 / factor) / (1.0 - 1.0 / factor)  # s of each frequency
    between = (divisors > 1.0 + 1e-6) & (divisors < factor * (1 - 1e-6))
    candidates = [LLAMA3_DEFAULTS]
    if between.sum() >= 2:
        a, minus_b = np.polyfit(inv_freq[between] / (2 * np.pi), blend[between], 1)  # s = a / wavelength - b
        if -minus_b > 0:
            candidates.insert(0, (1.0, round(1.0 + 1.0 / -minus_b, 6), a / -minus_b))
    for low, high, original in candidates:
        scaling = RopeScaling(factor, low, high, int(round(original)))
        got = inv_freq / frequencies(head_dim, theta, scaling).numpy()
        if np.allclose(got, divisors, rtol=1e-4, atol=0):
            return {"rope_scaling": {"rope_type": "llama3", "factor": factor, "low_freq_factor": low,
                                     "high_freq_factor": high, "original_max_position_embeddings": int(round(original))}}
    raise ImportError_(f"{path} has rope_freqs that are not Llama 3's frequency scaling (divisors "
                       f"{np.round(divisors, 4).tolist()}); expected 1 for short wavelengths, a factor for long ones, "
                       f"and Llama 3's blend between")


# How text is split before byte-level BPE (tokenizer.ggml.pre): the rule the merges were learned on. Another
# rule gives other tokens (Llama 3 splits numbers into runs of up to 3 digits, Qwen2 into single digits).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_TOKENIZERS = {None: "gpt2", "default": "gpt2", "gpt-2": "gpt2", "smollm": "digits", "llama-bpe": LLAMA3_SPLIT,
                  "llama3": LLAMA3_SPLIT, "llama-v3": LLAMA3_SPLIT, "smaug-bpe": LLAMA3_SPLIT, "qwen2": QWEN2_SPLIT}


def pre_tokenizer(pre: str | None, path: Path):
    """The `tokenizers` pre-tokenizer of tokenizer.ggml.pre; a rule not listed is refused by name."""
    from tokenizers import Regex, pre_tokenizers

    if pre not in PRE_TOKENIZERS:
        raise ImportError_(f"{path} has tokenizer.ggml.pre {pre!r}; expected one of: "
                           f"{', '.join(str(k) for k in PRE_TOKENIZERS if k)} (the split its merges were learned on)")
    rule = PRE_TOKENIZERS[pre]
    if rule == "gpt2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False)
    if rule == "digits":  # SmolLM's: every digit alone, then GPT-2's rule
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(rule), behavior="isolated"),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def gguf_tokenizer(meta: dict[str, Any], path: Path) -> TextTokenizer | None:
    """The file's tokenizer from tokenizer.ggml.*: byte-level BPE (model gpt2) or SentencePiece BPE (model llama:
    Llama 2, TinyLlama); None when the file has none."""
    model = meta.get("tokenizer.ggml.model")
    if model is None:
        return None
    if model not in ("gpt2", "llama"):
        raise ImportError_(f"{path} has tokenizer.ggml.model {model!r}; expected 'gpt2' (byte-level BPE) or 'llama' "
                           "(SentencePiece BPE)")
    from tokenizers import AddedToken, processors

    tokens = list(meta["tokenizer.ggml.tokens"])
    types = list(meta.get("tokenizer.ggml.token_type", []))
    tok = byte_level_bpe(meta, tokens, path) if model == "gpt2" else sentencepiece_bpe(meta, tokens, types)
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, kind in enumerate(types) if kind == CONTROL_TOKEN])
    bos = meta.get("tokenizer.ggml.bos_token_id")
    # llama.cpp adds bos to a SentencePiece vocabulary whose file does not say otherwise (Llama 2's files)
    if meta.get("tokenizer.ggml.add_bos_token", model == "llama") and bos is not None:
        tok.post_processor = processors.TemplateProcessing(single=f"{tokens[bos]}:0 $A:0", pair=f"{tokens[bos]}:0 $A:0 $B:1",
                                                           special_tokens=[(tokens[bos], int(bos))])
    return TextTokenizer(tok)


def byte_level_bpe(meta: dict[str, Any], tokens: list[str], path: Path):
    """GPT-2's kind: tokens and merges in the byte alphabet, text split by the file's rule first."""
    from tokenizers import Tokenizer, decoders, models

    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizer(meta.get("tokenizer.ggml.pre"), path)
    tok.decoder = decoders.ByteLevel()
    return tok


def sentencepiece_bpe(meta: dict[str, Any], tokens: list[str], types: list[int]):
    """SentencePiece's BPE as `tokenizers` runs it: spaces as ▁ (one before the text), pieces merged best score
    first, a character outside the vocabulary spelled as its UTF-8 bytes (the <0xNN> tokens).

    The file has no merges, only each piece's score: a piece that two other pieces spell is their merge, and
    merges apply in the order of the merged piece's score, highest first (what SentencePiece's BPE does)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    scores = list(meta.get("tokenizer.ggml.scores") or [-float(i) for i in range(len(tokens))])
    vocab = {t: i for i, t in enumerate(tokens)}
    normal = [i for i, t in enumerate(tokens) if (types[i] if i < len(types) else 1) == NORMAL_TOKEN and len(t) > 1]
    merges = sorted(((tokens[i][:k], tokens[i][k:], scores[i], i) for i in normal for k in range(1, len(tokens[i]))
                     if tokens[i][:k] in vocab and tokens[i][k:] in vocab),
                    key=lambda m: (-m[2], m[3], vocab[m[0]]))
    unk = next((tokens[i] for i, kind in enumerate(types) if kind == UNKNOWN_TOKEN), None)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(a, b) for a, b, _, _ in merges], unk_token=unk, fuse_unk=True,
                               byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    return tok


def import_gguf(path: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> Transformer:
    """Convert the GGUF file `path` (architecture llama) into an edgeformer checkpoint at `out`."""
    path = Path(path)
    if not path.is_file():
        raise ImportError_(f"{path} does not exist; expected a GGUF file")
    reader = read_gguf(path)
    meta = metadata(reader)
    config = hf_config(meta, path)
    check_output_dir(out, overwrite, sources=(path,))
    weights, kinds = hf_tensors(reader, config, path)
    tokenizer = gguf_tokenizer(meta, path)
    cfg, fill, prefix = llama_family(config, weights, None)
    model = Transformer(cfg)
    mapping = WeightMap(weights, prefix, model.state_dict())
    fill(mapping)
    load_state(model, mapping.state, path)
    special = {k: meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "eot", "eom", "padding", "unknown")}
    source = {"format": "gguf", "architecture": meta.get("general.architecture"), "name": meta.get("general.name"),
              "file": path.name, "sha256": sha256_file(path), "block_types": kinds,
              "special_tokens": {k: v for k, v in special.items() if v is not None},
              "end_ids": [int(v) for v in dict.fromkeys(special[k] for k in ("eos", "eot", "eom")) if v is not None],
              "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
              "chat_template": meta.get("tokenizer.chat_template"),
              "unused_tensors": sorted(set(weights) - mapping.used)}
    save(model.eval(), out, tokenizer=tokenizer, records={SOURCE_FILE: source}, overwrite=overwrite)
    return model.eval()
