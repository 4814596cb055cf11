"""The Llama family from Hugging Face folders: model_type llama, qwen2 and mistral.

All three are the same decoder: RMSNorm before attention and feed-forward, grouped-query attention
with rotary positions, a gated SiLU feed-forward, no biases (Qwen2: biases on the query, key and
value projections), an untied or tied output head. They import into edgeformer's own Transformer
(modeling/models/transformer.py) with these settings:

    Hugging Face                         edgeformer
    num_key_value_heads                  kv_heads
    head_dim                             head_size (when not hidden_size / num_attention_heads)
    rope_theta, rope_scaling llama3      rope_theta, rope_scaling=llama3 and its factors
    rms_norm_eps                         layer_norm_eps, norm_type=rmsnorm
    q/k/v_proj                           attn.qkv (one projection: queries, keys, values)
    gate/up/down_proj                    ff.gate, ff.up, ff.down

Refused by name: sliding-window attention (Mistral's sliding_window, Qwen2's use_sliding_window),
mixture-of-experts layers, activations other than SiLU, rope types other than default and llama3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from edgeformer.modeling.config import AttentionConfig, ModelConfig
from edgeformer.modeling.hf_weights import ImportError_, WeightMap, pad_id_from

EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_intermediate_size")


def rope_settings(hf: dict[str, Any]) -> dict[str, Any]:
    """AttentionConfig's rope fields from rope_parameters (transformers 5) or rope_theta + rope_scaling (earlier)."""
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return {"rope_theta": theta}
    if kind != "llama3":
        raise ImportError_(f"rope_type {kind!r} is not supported; expected 'default' or 'llama3'")
    try:
        return {"rope_theta": theta, "rope_scaling": "llama3", "rope_factor": float(params["factor"]),
                "rope_low_freq_factor": float(params["low_freq_factor"]),
                "rope_high_freq_factor": float(params["high_freq_factor"]),
                "rope_original_max_len": int(params["original_max_position_embeddings"])}
    except KeyError as e:
        raise ImportError_(f"rope_type llama3 lacks {e}; expected factor, low_freq_factor, high_freq_factor and "
                           f"original_max_position_embeddings") from None


def refuse_unsupported(hf: dict[str, Any]) -> None:
    """One line naming the first variant edgeformer's modules do not build."""
    model_type = hf.get("model_type")
    for key in EXPERT_KEYS:
        if hf.get(key):
            raise ImportError_(f"mixture-of-experts layers ({key}={hf[key]}) are not supported; expected a dense {model_type}")
    window = hf.get("sliding_window")
    if hf.get("use_sliding_window") or "sliding_attention" in (hf.get("layer_types") or []) or (
            model_type == "mistral" and window is not None and window < hf.get("max_position_embeddings", 0)):
        raise ImportError_(f"sliding-window attention (sliding_window={window}) is not supported; expected a {model_type} "
                           f"whose layers all attend to the whole context")
    if hf.get("hidden_act", "silu") != "silu":
        raise ImportError_(f"hidden_act {hf['hidden_act']!r} is not supported for {model_type}; expected 'silu'")
    if bool(hf.get("attention_bias", False)) != bool(hf.get("mlp_bias", False)):
        raise ImportError_(f"attention_bias={hf.get('attention_bias')} with mlp_bias={hf.get('mlp_bias')} is not supported; "
                           "expected both true or both false")


def llama_config(hf: dict[str, Any], max_len: int | None = None) -> ModelConfig:
    """The ModelConfig of a llama, qwen2 or mistral config.json."""
    refuse_unsupported(hf)
    d, H = hf["hidden_size"], hf["num_attention_heads"]
    kv = hf.get("num_key_value_heads") or H
    head = hf.get("head_dim") or d // H
    biased = bool(hf.get("attention_bias", False))  # llama: every projection, or none
    qwen2 = hf.get("model_type") == "qwen2"  # biased query/key/value, nothing else
    attention = AttentionConfig(kv_heads=kv if kv != H else None, head_size=head if head * H != d else None,
                                qkv_bias=biased or qwen2, **rope_settings(hf))
    return ModelConfig(
        arch="decoder", vocab_size=hf["vocab_size"], d_model=d, n_heads=H, n_layers=hf["num_hidden_layers"],
        d_ff=hf["intermediate_size"], activation="silu", norm="pre", positional="rotary",
        max_len=min(hf["max_position_embeddings"], max_len or 1 << 30), dropout=0.0,
        layer_norm_eps=hf.get("rms_norm_eps", 1e-6), pad_id=pad_id_from(hf), tie_embeddings=hf.get("tie_word_embeddings", False),
        norm_type="rmsnorm", feed_forward="gated", linear_bias=biased, attention=attention)


def llama_family(hf: dict[str, Any], weights: dict[str, torch.Tensor],
                 max_len: int | None) -> tuple[ModelConfig, Callable[[WeightMap], None], str]:
    """(config, the weight mapping, the weights' name prefix) of a llama, qwen2 or mistral folder."""
    cfg = llama_config(hf, max_len)
    qkv_bias, bias = cfg.attention.qkv_bias, cfg.linear_bias

    def fill(m: WeightMap) -> None:
        m.put("embed.tok.weight", "embed_tokens.weight")
        for i in range(cfg.n_layers):
            h, o = f"layers.{i}.", f"blocks.{i}."
            m.put(o + "ln1.weight", h + "input_layernorm.weight")
            a = h + "self_attn."
            m.qkv(o + "attn.qkv", a + "q_proj", a + "k_proj", a + "v_proj", bias=qkv_bias)
            m.linear(o + "attn.proj", a + "o_proj", bias=bias)
            m.put(o + "ln2.weight", h + "post_attention_layernorm.weight")
            for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
                m.linear(o + "ff." + ours, h + "mlp." + theirs, bias=bias)
        m.put("ln_f.weight", "norm.weight")
        if not cfg.tie_embeddings:
            m.prefix = ""
            m.put("lm_head.weight", "lm_head.weight")

    prefix = "model." if any(k.startswith("model.embed_tokens") for k in weights) else ""
    return cfg, fill, prefix


LLAMA_FAMILY = {"llama": llama_family, "qwen2": llama_family, "mistral": llama_family}


def turn_tokens(hf_dir: Path, hf: dict[str, Any], tokenizer) -> dict[str, Any]:
    """What a chat needs from a Hugging Face folder, for the checkpoint's source.json: the bos token, the
    tokens that end a turn (eos_token_id of config.json and generation_config.json, tokenizer_config.json's
    eos_token; Llama 3 lists several) and the chat template (tokenizer_config.json, chat_template.jinja or
    chat_template.json). Export carries them into the bundle's cache record."""
    generation, tok_config = _json(hf_dir / "generation_config.json"), _json(hf_dir / "tokenizer_config.json")
    ends: list[int] = []
    for source in (generation, hf):
        value = source.get("eos_token_id")
        ends += [int(v) for v in (value if isinstance(value, list) else [value]) if isinstance(v, int)]
    eos = tok_config.get("eos_token")
    eos = eos.get("content") if isinstance(eos, dict) else eos
    if isinstance(eos, str) and tokenizer is not None and tokenizer.tok.token_to_id(eos) is not None:
        ends.append(tokenizer.tok.token_to_id(eos))
    bos = generation.get("bos_token_id", hf.get("bos_token_id"))
    out: dict[str, Any] = {"special_tokens": {"bos": bos} if isinstance(bos, int) else {},
                           "end_ids": list(dict.fromkeys(ends)), "chat_template": chat_template(hf_dir, tok_config)}
    if ends:
        out["special_tokens"]["eos"] = ends[0]
    return out


def chat_template(hf_dir: Path, tok_config: dict[str, Any]) -> str | None:
    """The folder's default chat template: chat_template.jinja (transformers 5 saves it there),
    chat_template.json, or tokenizer_config.json's (a string, or a list of named templates)."""
    if (hf_dir / "chat_template.jinja").is_file():
        return (hf_dir / "chat_template.jinja").read_text()
    template = _json(hf_dir / "chat_template.json").get("chat_template") or tok_config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else None


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ImportError_(f"{path} is not a valid JSON object") from None
    return data if isinstance(data, dict) else {}
