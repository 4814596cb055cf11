"""T5 from Hugging Face folders (model_type t5 and mt5) into edgeformer's seq2seq model.

T5 is the 2017 encoder-decoder with RMSNorm before each sublayer, no biases, a plain ReLU
feed-forward (T5 1.0) or a gated GELU one (T5 1.1, Flan-T5, mT5), one token embedding shared by both
stacks, and positions as a learned bias on each stack's self-attention scores
(modeling/models/relative_position.py). It imports into `Seq2SeqTransformer` with these settings:

    Hugging Face                                  edgeformer
    d_kv                                          head_size (when not d_model / num_heads)
    relative_attention_num_buckets, _max_distance relative_buckets, relative_max_distance
    feed_forward_proj relu | gated-gelu           feed_forward plain | gated, activation relu | gelu_tanh
    SelfAttention q/k/v, o                        attn.qkv (queries scaled, below), attn.proj
    EncDecAttention q, k/v, o                     cross.q (scaled), cross.kv, cross.proj
    block.0's relative_attention_bias             enc_bias.bias, dec_bias.bias
    final_layer_norm                              enc_norm, dec_norm (scaled, below)

Two constants are folded into weights, so the model runs edgeformer's ordinary attention:
- T5 does not divide the scores by sqrt(head size); the query projections are multiplied by it
  instead (exactly, for the usual head size 64);
- a tied T5 (1.0) scales the decoder's output by d_model^-0.5 before the shared head; the decoder's
  final norm weight carries that factor.

Refused by name: encoder and decoder stacks of different depths, a decoder that starts from a token
other than the pad token, activations other than relu and gelu.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from edgeformer.modeling.config import AttentionConfig, ModelConfig
from edgeformer.modeling.hf_weights import ImportError_, WeightMap

FEED_FORWARDS = {"relu": ("plain", "relu"), "gated-gelu": ("gated", "gelu_tanh"), "gated-relu": ("gated", "relu"),
                 "gelu": ("plain", "gelu_tanh")}
T5_MAX_LEN = 512  # T5 has no position table; its inputs were 512 tokens in pre-training


def t5_config(hf: dict[str, Any], max_len: int | None = None) -> ModelConfig:
    """The ModelConfig of a t5 or mt5 config.json."""
    layers, decoder_layers = hf["num_layers"], hf.get("num_decoder_layers") or hf["num_layers"]
    if decoder_layers != layers:
        raise ImportError_(f"num_decoder_layers={decoder_layers} with num_layers={layers} is not supported; expected "
                           f"encoder and decoder stacks of the same depth")
    pad = hf.get("pad_token_id", 0) or 0
    start = hf.get("decoder_start_token_id", pad)
    if start != pad:
        raise ImportError_(f"decoder_start_token_id={start} is not supported; expected the pad token ({pad}), "
                           f"which edgeformer's seq2seq decoder starts from")
    proj = hf.get("feed_forward_proj", "relu")
    if proj not in FEED_FORWARDS:
        raise ImportError_(f"feed_forward_proj {proj!r} is not supported; expected one of: {', '.join(FEED_FORWARDS)}")
    feed_forward, activation = FEED_FORWARDS[proj]
    d, H, head = hf["d_model"], hf["num_heads"], hf["d_kv"]
    attention = AttentionConfig(head_size=head if head * H != d else None, qkv_bias=False,
                                relative_buckets=hf.get("relative_attention_num_buckets", 32),
                                relative_max_distance=hf.get("relative_attention_max_distance", 128))
    return ModelConfig(
        arch="seq2seq", vocab_size=hf["vocab_size"], d_model=d, n_heads=H, n_layers=layers, d_ff=hf["d_ff"],
        activation=activation, norm="pre", positional="relative", max_len=max_len or hf.get("n_positions") or T5_MAX_LEN,
        dropout=0.0, layer_norm_eps=hf.get("layer_norm_epsilon", 1e-6), pad_id=pad, norm_type="rmsnorm",
        feed_forward=feed_forward, linear_bias=False, attention=attention)


def scales_decoder_output(hf: dict[str, Any]) -> bool:
    """T5 1.0 (tied) scales the decoder output by d_model^-0.5; transformers 5 names this scale_decoder_outputs,
    earlier configs say it through tie_word_embeddings."""
    return bool(hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False))


def t5_family(hf: dict[str, Any], weights: dict[str, torch.Tensor],
              max_len: int | None) -> tuple[ModelConfig, Callable[[WeightMap], None], str]:
    """(config, the weight mapping, the weights' name prefix) of a t5 or mt5 folder."""
    untied = "lm_head.weight" in weights and not torch.equal(weights["lm_head.weight"], weights["shared.weight"])
    cfg = t5_config(hf, max_len).with_fields(tie_embeddings=not untied)
    query_scale = math.sqrt(cfg.head_dim)  # T5's scores are q.k, edgeformer's q.k / sqrt(hd)
    output_scale = cfg.d_model ** -0.5 if scales_decoder_output(hf) else 1.0
    gated = cfg.feed_forward == "gated"

    def feed_forward(m: WeightMap, o: str, h: str) -> None:
        if gated:
            m.linear(o + "ff.gate", h + "DenseReluDense.wi_0", bias=False)
            m.linear(o + "ff.up", h + "DenseReluDense.wi_1", bias=False)
            m.linear(o + "ff.down", h + "DenseReluDense.wo", bias=False)
        else:
            m.linear(o + "ff.fc1", h + "DenseReluDense.wi", bias=False)
            m.linear(o + "ff.fc2", h + "DenseReluDense.wo", bias=False)

    def self_attention(m: WeightMap, o: str, a: str) -> None:
        m.put(o + "attn.qkv.weight", a + "q.weight", a + "k.weight", a + "v.weight",
              transform=lambda q, k, v: torch.cat([q * query_scale, k, v], dim=0))
        m.linear(o + "attn.proj", a + "o", bias=False)

    def fill(m: WeightMap) -> None:
        m.put("embed.tok.weight", "shared.weight")
        for stack, bias in (("encoder", "enc_bias"), ("decoder", "dec_bias")):
            m.put(f"{bias}.bias.weight", f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
            for i in range(cfg.n_layers):
                h, o = f"{stack}.block.{i}.layer.", f"{stack}.{i}."
                self_attention(m, o, h + "0.SelfAttention.")
                m.put(o + "ln1.weight", h + "0.layer_norm.weight")
                if stack == "decoder":
                    c = h + "1.EncDecAttention."
                    m.put(o + "cross.q.weight", c + "q.weight", transform=lambda q: q * query_scale)
                    m.put(o + "cross.kv.weight", c + "k.weight", c + "v.weight", transform=lambda k, v: torch.cat([k, v]))
                    m.linear(o + "cross.proj", c + "o", bias=False)
                    m.put(o + "ln2.weight", h + "1.layer_norm.weight")
                f = "2." if stack == "decoder" else "1."
                feed_forward(m, o, h + f)
                m.put(o + ("ln3" if stack == "decoder" else "ln2") + ".weight", h + f + "layer_norm.weight")
        m.put("enc_norm.weight", "encoder.final_layer_norm.weight")
        m.put("dec_norm.weight", "decoder.final_layer_norm.weight", transform=lambda w: w * output_scale)
        if untied:
            m.put("lm_head.weight", "lm_head.weight")
        for tied_copy in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
            if tied_copy in m.hf:  # the shared embedding saved again under each stack's (and the head's) name
                m.used.add(tied_copy)

    return cfg, fill, ""


def turn_tokens(hf: dict[str, Any]) -> dict[str, Any]:
    """The end-of-sequence token, for the checkpoint's source.json (export carries it into the cache record)."""
    eos = hf.get("eos_token_id", 1)
    eos = eos[0] if isinstance(eos, list) and eos else eos
    return {"special_tokens": {"eos": eos}, "end_ids": [eos]} if isinstance(eos, int) else {}


T5_FAMILY = {"t5": t5_family, "mt5": t5_family}
