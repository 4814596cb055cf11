"""ModelConfig: one plain dataclass describes every model edgeformer builds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgeformer.modeling.config_limits import ConfigError, check_fields  # noqa: F401  (ConfigError: re-exported)
from edgeformer.modeling.presets import PRESETS

ARCHS = ("encoder", "decoder", "seq2seq", "conformer")
CHOICES = {
    "arch": ARCHS,
    "activation": ("relu", "gelu", "gelu_tanh"),
    "norm": ("pre", "post"),
    "positional": ("sinusoidal", "learned", "rotary"),
    "pooling": ("mean", "cls"),
}


# What each architecture gets unless told otherwise. Decoders are GPT-style: learned positions.
# (Measured on pydoc-lm, tiny preset, 180 steps: with tied embeddings and fixed sinusoidal positions
# held-out perplexity stayed at the unigram plateau, about 370; learned positions reached 177.)
# seq2seq is the 2017 paper's encoder-decoder: sinusoidal positions, ReLU, LayerNorm after each residual add.
ARCH_DEFAULTS: dict[str, dict] = {"encoder": {}, "decoder": {"positional": "learned"},
                                  "seq2seq": {"positional": "sinusoidal", "activation": "relu", "norm": "post"}}


def check_speech_config(cfg: "ModelConfig") -> None:
    if not cfg.alphabet or len(set(cfg.alphabet)) != len(cfg.alphabet):
        raise ConfigError(f"alphabet={cfg.alphabet!r}; a conformer needs its CTC symbols, each once")
    if cfg.vocab_size != len(cfg.alphabet) + 1:
        raise ConfigError(f"vocab_size={cfg.vocab_size}; a conformer's is len(alphabet) + 1 (the blank) = {len(cfg.alphabet) + 1}")
    if cfg.conv_kernel % 2 == 0 or cfg.n_mels < 7:
        raise ConfigError(f"conv_kernel={cfg.conv_kernel}, n_mels={cfg.n_mels}; expected an odd kernel and at least 7 mel bins")
    if cfg.num_labels or cfg.image_size:
        raise ConfigError("a conformer transcribes speech; num_labels and image_size do not apply")


@dataclass
class ModelConfig:
    arch: str = "encoder"  # encoder: bidirectional; decoder: causal; seq2seq: encoder + causal decoder with cross-attention
    vocab_size: int = 1024
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 512
    activation: str = "gelu"
    norm: str = "pre"  # pre: LayerNorm before each sublayer; post: after the residual add (the 2017 paper)
    positional: str = "sinusoidal"  # sinusoidal: PE(pos, 2i) = sin(pos / 10000^(2i/d)); learned: a table
    max_len: int = 512
    dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    pad_id: int = 0
    type_vocab_size: int = 0  # > 0: token type (segment) embeddings and a token_type_ids input (BERT)
    embedding_norm: bool = False  # LayerNorm after the embeddings (BERT)
    # Heads. An encoder with num_labels > 0 classifies (pooling the tokens); a decoder predicts tokens.
    num_labels: int = 0
    labels: list[str] | None = None
    pooling: str = "mean"
    pooler: bool = False  # a dense + tanh layer on the pooled vector before the classifier (BERT)
    tie_embeddings: bool = True
    # Images (ViT): image_size > 0 makes the model read pixel_values (B, C, H, W) cut into patches,
    # with a class token first; max_len must then be (image_size / patch_size)^2 + 1.
    image_size: int = 0
    patch_size: int = 16
    num_channels: int = 3
    # Long inputs (modeling/models/attention.py): which attention every block uses, and its settings.
    attention_kind: str = "full"  # full | local | longformer | linformer | lsh
    window: int = 64  # local/longformer: keys within this distance (causal: before); lsh: chunk length
    global_tokens: int = 1  # longformer: the first N positions attend to and are attended by all
    linformer_k: int = 64  # linformer: keys and values projected along the sequence to this many rows
    lsh_buckets: int = 8  # lsh: hash buckets (random rotations give them in +- pairs, so even)
    lsh_rounds: int = 1  # lsh: hash rounds, combined by their softmax normalisers
    reversible: bool = False  # reversible residual blocks: activations recomputed in the backward pass
    # Speech (arch conformer, modeling/models/conformer.py): raw 16 kHz audio -> n_mels log-mel bins in the graph,
    # a depthwise convolution of conv_kernel frames per block, CTC over `alphabet` (id 0 is the blank).
    n_mels: int = 80
    conv_kernel: int = 15
    alphabet: str | None = None

    def __post_init__(self):
        check_fields(self)  # types and bounds of every field first (config_limits)
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not supported; expected one of: {', '.join(allowed)}")
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}; expected a positive integer")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout}; expected a value in [0, 1)")
        if self.positional == "sinusoidal" and self.d_model % 2:
            raise ConfigError(f"sinusoidal positions need an even d_model, got {self.d_model}")
        if self.labels is not None and len(self.labels) != self.num_labels:
            raise ConfigError(f"{len(self.labels)} label names for num_labels={self.num_labels}")
        if self.arch in ("decoder", "seq2seq") and self.num_labels:
            raise ConfigError(f"a {self.arch} predicts tokens; num_labels applies to encoders only")
        if self.image_size:
            if self.arch != "encoder" or self.positional != "learned":
                raise ConfigError("an image model is an encoder with learned positions")
            if self.image_size % self.patch_size:
                raise ConfigError(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
            if self.max_len != self.num_patches + 1:
                raise ConfigError(f"max_len={self.max_len}; an image model needs num_patches + 1 = {self.num_patches + 1}")
        check_long_input(self)
        if self.arch == "conformer":
            check_speech_config(self)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2 if self.image_size else 0

    @property
    def input_names(self) -> list[str]:
        if self.arch == "conformer":
            return ["waveforms", "lengths"]
        if self.image_size:
            return ["pixel_values"]
        return ["input_ids", "attention_mask"] + (["token_type_ids"] if self.type_vocab_size else [])

    @property
    def causal(self) -> bool:
        return self.arch == "decoder"

    @property
    def task(self) -> str:
        if self.arch == "decoder":
            return "causal-lm"
        if self.arch == "seq2seq":
            return "seq2seq-lm"
        if self.arch == "conformer":
            return "speech-recognition"
        return "classification" if self.num_labels else "embedding"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Build from a dict; fields missing from older files take their defaults, unknown ones are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; this edgeformer knows: {', '.join(sorted(known))}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"bad model config: {e}") from None

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "ModelConfig":
        """The preset's sizes, the architecture's defaults (ARCH_DEFAULTS), then `overrides`."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; expected one of: {', '.join(PRESETS)}")
        arch = overrides.get("arch", cls.arch)
        return cls(**{**PRESETS[name], **ARCH_DEFAULTS.get(arch, {}), **overrides})


ATTENTION_KINDS = ("full", "local", "longformer", "linformer", "lsh")


def check_long_input(cfg: ModelConfig) -> None:
    """Refuse attention settings that cannot work, naming the field and the values it allows."""
    kind = cfg.attention_kind
    if kind not in ATTENTION_KINDS:
        raise ConfigError(f"attention_kind={kind!r} is not supported; expected one of: {', '.join(ATTENTION_KINDS)}")
    for name in ("window", "global_tokens", "linformer_k", "lsh_buckets", "lsh_rounds"):
        if not isinstance(getattr(cfg, name), int) or isinstance(getattr(cfg, name), bool) or getattr(cfg, name) < 1:
            raise ConfigError(f"{name}={getattr(cfg, name)!r}; expected a positive integer")
    if (kind != "full" or cfg.reversible or cfg.positional == "rotary") and (cfg.arch == "seq2seq" or cfg.image_size):
        raise ConfigError(f"attention_kind={kind}, reversible and rotary positions apply to text encoders and decoders; "
                          f"expected attention_kind=full, reversible=false and positional sinusoidal or learned for this model")
    if kind in ("longformer", "linformer") and cfg.arch != "encoder":
        raise ConfigError(f"attention_kind={kind} is for encoders; expected full, local or lsh for a {cfg.arch}")
    if kind in ("local", "longformer", "lsh") and cfg.window > cfg.max_len:
        raise ConfigError(f"window={cfg.window} is longer than max_len={cfg.max_len}; expected 1..{cfg.max_len}")
    if kind == "longformer" and cfg.global_tokens > cfg.max_len:
        raise ConfigError(f"global_tokens={cfg.global_tokens} lies beyond max_len={cfg.max_len}; expected 1..{cfg.max_len}")
    if kind == "linformer" and cfg.linformer_k > cfg.max_len:
        raise ConfigError(f"linformer_k={cfg.linformer_k} is larger than the fixed length max_len={cfg.max_len}; "
                          f"expected 1..{cfg.max_len}")
    if kind == "lsh" and (cfg.lsh_buckets % 2 or cfg.max_len % cfg.window or cfg.lsh_buckets > 2 * cfg.max_len // cfg.window):
        raise ConfigError(f"lsh_buckets={cfg.lsh_buckets} with chunks of window={cfg.window} over max_len={cfg.max_len}; "
                          f"expected an even number of buckets up to {2 * max(1, cfg.max_len // cfg.window)} "
                          f"and a window that divides max_len")
    if cfg.positional == "rotary" and cfg.head_dim % 2:
        raise ConfigError(f"positional=rotary needs an even head dimension, got d_model/n_heads={cfg.head_dim}; "
                          f"expected sinusoidal or learned positions, or an even d_model/n_heads")
    if cfg.reversible and cfg.norm != "pre":
        raise ConfigError("reversible=true needs norm=pre (a LayerNorm after the residual add cannot be inverted); "
                          "expected norm=pre or reversible=false")
