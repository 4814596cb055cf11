"""Import Hugging Face checkpoints (BERT and BERT-shaped encoders, GPT-2, ViT, the Llama family: llama,
qwen2, mistral, in modeling/hf_llama.py; and T5: t5, mt5, in modeling/hf_t5.py) into edgeformer's own modules.

The result is an edgeformer checkpoint whose model is edgeformer's own (`Transformer`, `Seq2SeqTransformer`): no
`transformers` code is needed to load, train, export or run it. Weights are read from safetensors
only; a pickle (`pytorch_model.bin`) is refused with the command that converts it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from edgeformer.runtime.artifacts import check_output_dir, read_json_object, sha256_file
from edgeformer.runtime.tokenizer import TextTokenizer

from edgeformer.modeling.checkpoint import SOURCE_FILE, load_state, save
from edgeformer.modeling.config import ModelConfig, VisionConfig
from edgeformer.modeling.gguf import import_gguf
from edgeformer.modeling import hf_llama, hf_t5
from edgeformer.modeling.build import build_model
from edgeformer.modeling.hf_llama import LLAMA_FAMILY
from edgeformer.modeling.hf_t5 import T5_FAMILY
from edgeformer.modeling.hf_weights import ImportError_, WeightMap, pad_id_from

CONVERT_HINT = ("convert it with: python -c \"from transformers import AutoModel; "
                "AutoModel.from_pretrained('DIR').save_pretrained('DIR', safe_serialization=True)\"")
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
               "relu": "relu"}


def _labels(hf: dict[str, Any], n: int) -> list[str]:
    id2label = hf.get("id2label") or {}
    return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n)]


def _prefix(weights: dict[str, torch.Tensor], base: str, marker: str) -> str:
    return f"{base}." if any(k.startswith(f"{base}.{marker}") for k in weights) else ""


def _bert(hf: dict[str, Any], weights: dict[str, torch.Tensor], max_len: int | None) -> tuple[ModelConfig, Callable[[WeightMap], None], str]:
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ImportError_(f"position_embedding_type {hf['position_embedding_type']!r} is not supported; expected 'absolute'")
    p = _prefix(weights, "bert", "embeddings")
    classifier = "classifier.weight" in weights
    n_labels = weights["classifier.weight"].shape[0] if classifier else 0
    cfg = ModelConfig(
        arch="encoder", vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_heads=hf["num_attention_heads"],
        n_layers=hf["num_hidden_layers"], d_ff=hf["intermediate_size"], activation=_activation(hf.get("hidden_act", "gelu")),
        norm="post", positional="learned", max_len=min(hf["max_position_embeddings"], max_len or 1 << 30),
        dropout=hf.get("hidden_dropout_prob", 0.1),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12), pad_id=hf.get("pad_token_id") or 0,
        type_vocab_size=hf.get("type_vocab_size", 0), embedding_norm=True, num_labels=n_labels,
        labels=_labels(hf, n_labels) if classifier else None, pooling="cls" if classifier else "mean", pooler=classifier,
    )

    def fill(m: WeightMap) -> None:
        m.put("embed.tok.weight", "embeddings.word_embeddings.weight")
        m.put("embed.pos.weight", "embeddings.position_embeddings.weight", transform=lambda t: t[: cfg.max_len])
        if cfg.type_vocab_size:
            m.put("embed.segment.weight", "embeddings.token_type_embeddings.weight")
        m.norm("embed.norm", "embeddings.LayerNorm")
        for i in range(cfg.n_layers):
            h, o = f"encoder.layer.{i}.", f"blocks.{i}."
            m.qkv(o + "attn.qkv", h + "attention.self.query", h + "attention.self.key", h + "attention.self.value")
            m.linear(o + "attn.proj", h + "attention.output.dense")
            m.norm(o + "ln1", h + "attention.output.LayerNorm")
            m.linear(o + "ff.fc1", h + "intermediate.dense")
            m.linear(o + "ff.fc2", h + "output.dense")
            m.norm(o + "ln2", h + "output.LayerNorm")
        if classifier:
            m.linear("pooler.0", "pooler.dense")
            m.prefix = ""
            m.linear("classifier", "classifier")

    return cfg, fill, p


def _gpt2(hf: dict[str, Any], weights: dict[str, torch.Tensor], max_len: int | None) -> tuple[ModelConfig, Callable[[WeightMap], None], str]:
    p = _prefix(weights, "transformer", "wte")
    d = hf["n_embd"]
    cfg = ModelConfig(
        arch="decoder", vocab_size=hf["vocab_size"], d_model=d, n_heads=hf["n_head"], n_layers=hf["n_layer"],
        d_ff=hf.get("n_inner") or 4 * d, activation=_activation(hf.get("activation_function", "gelu_new")), norm="pre",
        positional="learned", max_len=hf["n_positions"], dropout=hf.get("resid_pdrop", 0.1),
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5), pad_id=pad_id_from(hf),
        tie_embeddings=hf.get("tie_word_embeddings", True),
    )
    if hf.get("scale_attn_by_inverse_layer_idx"):
        raise ImportError_("scale_attn_by_inverse_layer_idx=true is not supported; expected the standard GPT-2 attention")

    def fill(m: WeightMap) -> None:
        m.put("embed.tok.weight", "wte.weight")
        m.put("embed.pos.weight", "wpe.weight")
        for i in range(cfg.n_layers):
            h, o = f"h.{i}.", f"blocks.{i}."
            m.norm(o + "ln1", h + "ln_1")
            m.linear(o + "attn.qkv", h + "attn.c_attn", conv1d=True)
            m.linear(o + "attn.proj", h + "attn.c_proj", conv1d=True)
            m.norm(o + "ln2", h + "ln_2")
            m.linear(o + "ff.fc1", h + "mlp.c_fc", conv1d=True)
            m.linear(o + "ff.fc2", h + "mlp.c_proj", conv1d=True)
        m.norm("ln_f", "ln_f")
        if not cfg.tie_embeddings:
            m.prefix = ""
            m.put("lm_head.weight", "lm_head.weight")

    return cfg, fill, p


def _vit(hf: dict[str, Any], weights: dict[str, torch.Tensor], max_len: int | None) -> tuple[ModelConfig, Callable[[WeightMap], None], str]:
    p = _prefix(weights, "vit", "embeddings")
    classifier = "classifier.weight" in weights
    n_labels = weights["classifier.weight"].shape[0] if classifier else 0
    image, patch = hf.get("image_size", 224), hf.get("patch_size", 16)
    cfg = ModelConfig(
        arch="encoder", vocab_size=1, d_model=hf["hidden_size"], n_heads=hf["num_attention_heads"],
        n_layers=hf["num_hidden_layers"], d_ff=hf["intermediate_size"], activation=_activation(hf.get("hidden_act", "gelu")),
        norm="pre", positional="learned", max_len=(image // patch) ** 2 + 1, dropout=hf.get("hidden_dropout_prob", 0.0),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12), num_labels=n_labels,
        labels=_labels(hf, n_labels) if classifier else None, pooling="cls",
        vision=VisionConfig(image_size=image, patch_size=patch, num_channels=hf.get("num_channels", 3)),
    )
    if not hf.get("qkv_bias", True):
        raise ImportError_("qkv_bias=false is not supported; expected ViT's default biased query/key/value")

    def fill(m: WeightMap) -> None:
        m.put("embed.cls", "embeddings.cls_token")
        m.put("embed.pos.weight", "embeddings.position_embeddings", transform=lambda t: t[0])
        m.put("embed.patch.weight", "embeddings.patch_embeddings.projection.weight")
        m.put("embed.patch.bias", "embeddings.patch_embeddings.projection.bias")
        for i in range(cfg.n_layers):
            h, o = f"encoder.layer.{i}.", f"blocks.{i}."
            m.norm(o + "ln1", h + "layernorm_before")
            m.qkv(o + "attn.qkv", h + "attention.attention.query", h + "attention.attention.key", h + "attention.attention.value")
            m.linear(o + "attn.proj", h + "attention.output.dense")
            m.norm(o + "ln2", h + "layernorm_after")
            m.linear(o + "ff.fc1", h + "intermediate.dense")
            m.linear(o + "ff.fc2", h + "output.dense")
        m.norm("ln_f", "layernorm")
        if classifier:
            m.prefix = ""
            m.linear("classifier", "classifier")

    return cfg, fill, p


FAMILIES = {"bert": _bert, "gpt2": _gpt2, "vit": _vit, **LLAMA_FAMILY, **T5_FAMILY}


def _activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ImportError_(f"activation {name!r} is not supported; expected one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def read_weights(hf_dir: Path) -> tuple[dict[str, torch.Tensor], list[Path]]:
    """All tensors from model.safetensors, or from the shards its index names."""
    single, index = hf_dir / "model.safetensors", hf_dir / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        files = [hf_dir / s for s in shards]
    else:
        pickles = sorted(p.name for p in hf_dir.glob("*.bin")) + sorted(p.name for p in hf_dir.glob("*.pt"))
        if pickles:
            raise ImportError_(f"{hf_dir / pickles[0]} is a pickle and is never loaded; {CONVERT_HINT}")
        raise ImportError_(f"{hf_dir} has no model.safetensors; expected a Hugging Face model directory")
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            weights.update(load_file(str(f)))
        except (SafetensorError, OSError) as e:
            raise ImportError_(f"{f} is not a readable safetensors file ({e}); it may be truncated") from None
    return weights, files


def sentence_transformers_max_length(hf_dir: Path) -> int | None:
    """The length a sentence-transformers model was tuned to (sentence_bert_config.json), if any.

    The imported model keeps only that many positions, so that the bundle, the runtime's input
    checks and its truncation all agree with sentence-transformers.
    """
    path = hf_dir / "sentence_bert_config.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get("max_seq_length")
    except (OSError, json.JSONDecodeError, AttributeError):
        raise ImportError_(f"{path} is not a valid JSON object") from None
    return int(value) if value else None


def import_hf(hf_dir: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> torch.nn.Module:
    """Convert the Hugging Face model directory `hf_dir` (or a GGUF file: modeling/gguf.py) into an edgeformer
    checkpoint at `out`."""
    hf_dir = Path(hf_dir)
    if hf_dir.suffix.lower() == ".gguf" and not hf_dir.is_dir():
        return import_gguf(hf_dir, out, overwrite=overwrite)
    hf = read_json_object(hf_dir, "config.json", ImportError_, "Hugging Face model", "save_pretrained")
    model_type = hf.get("model_type")
    if model_type not in FAMILIES:
        raise ImportError_(f"model_type {model_type!r} is not supported; expected one of: {', '.join(FAMILIES)}")
    check_output_dir(out, overwrite, sources=(hf_dir,))
    weights, files = read_weights(hf_dir)
    try:
        cfg, fill, prefix = FAMILIES[model_type](hf, weights, sentence_transformers_max_length(hf_dir))
    except KeyError as e:
        raise ImportError_(f"{hf_dir / 'config.json'} lacks {e} for model_type {model_type!r}") from None
    model = build_model(cfg)
    mapping = WeightMap(weights, prefix, model.state_dict())
    fill(mapping)
    load_state(model, mapping.state, hf_dir)
    tok_path = hf_dir / "tokenizer.json"
    tokenizer = TextTokenizer.from_file(tok_path) if tok_path.is_file() else None
    source = {"format": "huggingface", "model_type": model_type, "architectures": hf.get("architectures"),
              "name_or_path": hf.get("_name_or_path"), "weights": {f.name: sha256_file(f) for f in files},
              "unused_tensors": sorted(set(weights) - mapping.used)}
    if model_type in LLAMA_FAMILY:  # the tokens that end a turn, the bos and the chat template, for generation and chat
        source.update(hf_llama.turn_tokens(hf_dir, hf, tokenizer))
    elif model_type in T5_FAMILY:  # the token that ends the decoder's output
        source.update(hf_t5.turn_tokens(hf))
    save(model.eval(), out, tokenizer=tokenizer, records={SOURCE_FILE: source}, overwrite=overwrite)
    return model.eval()
