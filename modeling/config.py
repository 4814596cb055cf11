"""ModelConfig: one plain dataclass describes every model edgeformer builds.

The fields every model has sit at the top; what only some models have is a part of its own:
`attention` (which attention the blocks use and its settings; every model), `vision` (a ViT's
image and patch sizes; None for the others) and `speech` (a Conformer's front end and alphabet;
None for the others). `to_dict`/`from_dict` are the stored form, one flat object whose keys have
not changed since the first checkpoint, so every config.json ever written reads the same way.

The Llama family's settings (RMSNorm, the gated SiLU feed-forward, bias-free projections,
grouped-query attention, an explicit head size, rotary theta and Llama 3's frequency scaling) came
later, as did a Conformer's `streaming` and T5's relative positions: their keys (ADDED_KEYS) are written only where a model differs from their defaults, which
reproduce every earlier model, so a config without them is stored exactly as it always was.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edgeformer.modeling.config_limits import ConfigError, check_fields  # noqa: F401  (ConfigError: re-exported)
from edgeformer.modeling.presets import PRESETS

ARCHS = ("encoder", "decoder", "seq2seq", "conformer")
CHOICES = {
    "arch": ARCHS,
    "activation": ("relu", "gelu", "gelu_tanh", "silu"),
    "norm": ("pre", "post"),
    "positional": ("sinusoidal", "learned", "rotary", "relative"),
    "pooling": ("mean", "cls"),
    "norm_type": ("layernorm", "rmsnorm"),
    "feed_forward": ("plain", "gated"),
}
ROPE_SCALINGS = ("none", "llama3")


# What each architecture gets unless told otherwise. Decoders are GPT-style: learned positions.
# (Measured on pydoc-lm, tiny preset, 180 steps: with tied embeddings and fixed sinusoidal positions
# held-out perplexity stayed at the unigram plateau, about 370; learned positions reached 177.)
# seq2seq is the 2017 paper's encoder-decoder: sinusoidal positions, ReLU, LayerNorm after each residual add.
ARCH_DEFAULTS: dict[str, dict] = {"encoder": {}, "decoder": {"positional": "learned"},
                                  "seq2seq": {"positional": "sinusoidal", "activation": "relu", "norm": "post"}}


@dataclass
class AttentionConfig:
    """Which attention every block uses, and its settings (modeling/models/attention.py, lsh.py).
    Stored as attention_kind, window, global_tokens, linformer_k, lsh_buckets and lsh_rounds."""

    kind: str = "full"  # full | local | longformer | linformer | lsh
    window: int = 64  # local/longformer: keys within this distance (causal: before); lsh: chunk length
    global_tokens: int = 1  # longformer: the first N positions attend to and are attended by all
    linformer_k: int = 64  # linformer: keys and values projected along the sequence to this many rows
    lsh_buckets: int = 8  # lsh: hash buckets (random rotations give them in +- pairs, so even)
    lsh_rounds: int = 1  # lsh: hash rounds, combined by their softmax normalisers
    # grouped-query attention and the Llama family's projections (modeling/models/transformer.py)
    kv_heads: int | None = None  # key/value heads, each shared by n_heads / kv_heads query heads; None: n_heads
    head_size: int | None = None  # per head; None: d_model / n_heads
    qkv_bias: bool = True  # biases on the query/key/value projection (Llama: none; Qwen2: yes)
    # rotary positions (positional=rotary): channel pair i turns by pos * rope_theta^(-2i/hd)
    rope_theta: float = 10000.0
    rope_scaling: str = "none"  # none | llama3: long wavelengths slowed by rope_factor, blended in between
    rope_factor: float = 8.0  # llama3 scaling's settings, as Llama 3's rope_scaling names them
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_len: int = 8192
    # relative positions (positional=relative, T5): a learned bias per head on the attention scores, from the
    # key's offset to the query binned into relative_buckets (exact up close, logarithmic up to relative_max_distance)
    relative_buckets: int = 32
    relative_max_distance: int = 128


@dataclass
class VisionConfig:
    """A ViT reads pixel_values (B, C, H, W) cut into patches, with a class token first; the model's
    max_len is then num_patches + 1. Stored as image_size, patch_size and num_channels."""

    image_size: int
    patch_size: int = 16
    num_channels: int = 3

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass
class SpeechConfig:
    """A Conformer (modeling/models/conformer.py): raw 16 kHz audio -> n_mels log-mel bins in the graph,
    a depthwise convolution of conv_kernel frames per block, CTC over `alphabet` (id 0 is the blank)."""

    alphabet: str | None = None
    n_mels: int = 80
    conv_kernel: int = 15
    # Trained to stream (`edgeformer export --streaming`): a causal depthwise convolution, and attention
    # trained on random chunked contexts as well as the whole utterance, so one model serves both.
    streaming: bool = False


# config.json keeps one flat object (every version ever written reads the same way); each part's
# fields are stored under these names, with these values when the model has no such part.
STORED_PARTS: dict[str, tuple[type, dict[str, str], dict[str, Any]]] = {
    "attention": (AttentionConfig, {"attention_kind": "kind", "window": "window", "global_tokens": "global_tokens",
                                    "linformer_k": "linformer_k", "lsh_buckets": "lsh_buckets", "lsh_rounds": "lsh_rounds",
                                    "kv_heads": "kv_heads", "head_size": "head_size", "qkv_bias": "qkv_bias",
                                    "rope_theta": "rope_theta", "rope_scaling": "rope_scaling", "rope_factor": "rope_factor",
                                    "rope_low_freq_factor": "rope_low_freq_factor",
                                    "rope_high_freq_factor": "rope_high_freq_factor",
                                    "rope_original_max_len": "rope_original_max_len",
                                    "relative_buckets": "relative_buckets", "relative_max_distance": "relative_max_distance"},
                  {}),
    "vision": (VisionConfig, {"image_size": "image_size", "patch_size": "patch_size", "num_channels": "num_channels"},
               {"image_size": 0, "patch_size": 16, "num_channels": 3}),
    "speech": (SpeechConfig, {"n_mels": "n_mels", "conv_kernel": "conv_kernel", "alphabet": "alphabet",
                              "streaming": "streaming"},
               {"n_mels": 80, "conv_kernel": 15, "alphabet": None, "streaming": False}),
}
# the stored keys in the order config.json has always had them
STORED_ORDER = ("arch", "vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "activation", "norm", "positional",
                "max_len", "dropout", "layer_norm_eps", "pad_id", "type_vocab_size", "embedding_norm", "num_labels",
                "labels", "pooling", "pooler", "tie_embeddings", "image_size", "patch_size", "num_channels",
                "attention_kind", "window", "global_tokens", "linformer_k", "lsh_buckets", "lsh_rounds", "reversible",
                "n_mels", "conv_kernel", "alphabet") + (
                "norm_type", "feed_forward", "linear_bias", "kv_heads", "head_size", "qkv_bias", "rope_theta",
                "rope_scaling", "rope_factor", "rope_low_freq_factor", "rope_high_freq_factor", "rope_original_max_len") + (
                "streaming",) + ("relative_buckets", "relative_max_distance")
# keys added with the Llama family, and the values that reproduce every earlier model: written only when they differ
ADDED_KEYS: dict[str, Any] = {"norm_type": "layernorm", "feed_forward": "plain", "linear_bias": True, "kv_heads": None,
                              "head_size": None, "qkv_bias": True, "rope_theta": 10000.0, "rope_scaling": "none",
                              "rope_factor": 8.0, "rope_low_freq_factor": 1.0, "rope_high_freq_factor": 4.0,
                              "rope_original_max_len": 8192, "streaming": False, "relative_buckets": 32,
                              "relative_max_distance": 128}


def check_speech_config(cfg: "ModelConfig") -> None:
    speech = cfg.speech
    if speech.conv_kernel % 2 == 0 or speech.n_mels < 7:
        raise ConfigError(f"conv_kernel={speech.conv_kernel}, n_mels={speech.n_mels}; expected an odd kernel and at least 7 mel bins")
    if cfg.vision:
        raise ConfigError("a conformer reads audio; image_size does not apply")
    if cfg.num_labels:  # a keyword spotter: one label per clip (its frames pooled), no CTC alphabet
        if speech.alphabet is not None or cfg.labels is None or speech.streaming:
            raise ConfigError("a conformer that labels clips (num_labels > 0) names its labels, and has no CTC "
                              "alphabet and no streaming")
        return
    if not speech.alphabet or not isinstance(speech.alphabet, str) or len(set(speech.alphabet)) != len(speech.alphabet):
        raise ConfigError(f"alphabet={speech.alphabet!r}; a conformer needs its CTC symbols, each once (or num_labels "
                          "and labels, to label clips)")
    if cfg.vocab_size != len(speech.alphabet) + 1:
        raise ConfigError(f"vocab_size={cfg.vocab_size}; a conformer's is len(alphabet) + 1 (the blank) = {len(speech.alphabet) + 1}")


def check_vision_config(cfg: "ModelConfig") -> None:
    vision = cfg.vision
    if vision.image_size < 1:
        raise ConfigError(f"image_size={vision.image_size}; a vision part needs image_size > 0 (a text model has none)")
    if cfg.arch != "encoder" or cfg.positional != "learned":
        raise ConfigError("an image model is an encoder with learned positions")
    if vision.image_size % vision.patch_size:
        raise ConfigError(f"image_size={vision.image_size} is not a multiple of patch_size={vision.patch_size}")
    if cfg.max_len != vision.num_patches + 1:
        raise ConfigError(f"max_len={cfg.max_len}; an image model needs num_patches + 1 = {vision.num_patches + 1}")


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
    reversible: bool = False  # reversible residual blocks: activations recomputed in the backward pass
    norm_type: str = "layernorm"  # layernorm | rmsnorm (x / rms(x) * weight, no mean, no bias: Llama)
    feed_forward: str = "plain"  # plain: fc2(act(fc1(x))); gated: down(act(gate(x)) * up(x)) (SwiGLU with silu)
    linear_bias: bool = True  # biases on the attention output projection and the feed-forward (Llama: none)
    # The parts: attention (every model), vision (a ViT), speech (arch conformer); None where a model has none.
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    vision: VisionConfig | None = None
    speech: SpeechConfig | None = None

    def __post_init__(self):
        for name, cls in (("attention", AttentionConfig), ("vision", VisionConfig), ("speech", SpeechConfig)):
            part = getattr(self, name)
            if not isinstance(part, cls) and not (part is None and name != "attention"):
                raise ConfigError(f"{name}={part!r}; expected a {cls.__name__}" + ("" if name == "attention" else " or None"))
        check_fields(self.stored_fields())  # types and bounds of every stored field first (config_limits)
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not supported; expected one of: {', '.join(allowed)}")
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}; expected a positive integer")
        if self.d_model % self.n_heads and self.attention.head_size is None:
            raise ConfigError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                              f"expected such a d_model or an explicit head_size")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout}; expected a value in [0, 1)")
        if self.positional == "sinusoidal" and self.d_model % 2:
            raise ConfigError(f"sinusoidal positions need an even d_model, got {self.d_model}")
        if self.labels is not None and len(self.labels) != self.num_labels:
            raise ConfigError(f"{len(self.labels)} label names for num_labels={self.num_labels}")
        if self.arch in ("decoder", "seq2seq") and self.num_labels:
            raise ConfigError(f"a {self.arch} predicts tokens; num_labels applies to encoders only")
        if self.vision is not None:
            check_vision_config(self)
        check_long_input(self)
        check_llama_settings(self)
        if (self.arch == "conformer") != (self.speech is not None):
            raise ConfigError("a conformer needs its speech part (alphabet, n_mels, conv_kernel)" if self.arch == "conformer"
                              else f"a {self.arch} has no speech part; expected arch conformer for one")
        if self.speech is not None:
            check_speech_config(self)

    @property
    def head_dim(self) -> int:
        return self.attention.head_size or self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_heads unless the attention is grouped-query."""
        return self.attention.kv_heads or self.n_heads

    @property
    def input_names(self) -> list[str]:
        if self.speech:
            return ["waveforms", "lengths"]
        if self.vision:
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
            return "audio-classification" if self.num_labels else "speech-recognition"
        return "classification" if self.num_labels else "embedding"

    def to_dict(self) -> dict[str, Any]:
        """The stored form: one flat object, each part's fields under their stored names (STORED_PARTS); the
        keys of ADDED_KEYS only where they differ from their defaults."""
        out = self.stored_fields()
        return {k: v for k, v in out.items() if k not in ADDED_KEYS or v != ADDED_KEYS[k]}

    def stored_fields(self) -> dict[str, Any]:
        """Every stored key and its value, in STORED_ORDER (what `check_fields` bounds)."""
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in STORED_PARTS}
        for name, (_, keys, absent) in STORED_PARTS.items():
            part = getattr(self, name)
            out.update({key: getattr(part, attr) for key, attr in keys.items()} if part is not None else absent)
        return {key: out[key] for key in STORED_ORDER}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Build from the stored form; fields missing from older files take their defaults, unknown ones are refused.
        A model has a vision part when image_size > 0 and a speech part when it is a conformer; the other
        parts' stored values are then those of an absent part and mean nothing."""
        unknown = sorted(set(d) - set(STORED_ORDER))
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; this edgeformer knows: {', '.join(sorted(STORED_ORDER))}")
        check_fields({**cls().stored_fields(), **d})  # every stored value is bounded, also those of an absent part
        fields = {k: v for k, v in d.items() if not any(k in keys for _, keys, _ in STORED_PARTS.values())}
        present = {"attention": True, "vision": bool(d.get("image_size")), "speech": d.get("arch", cls.arch) == "conformer"}
        for name, (part_cls, keys, _) in STORED_PARTS.items():
            if present[name]:
                fields[name] = _build(part_cls, {attr: d[key] for key, attr in keys.items() if key in d})
        return _build(cls, fields)

    def with_fields(self, **stored: Any) -> "ModelConfig":
        """A copy with some stored fields changed, named as in config.json (attention_kind="local", image_size=32)."""
        return type(self).from_dict({**self.stored_fields(), **stored})

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "ModelConfig":
        """The preset's sizes, the architecture's defaults (ARCH_DEFAULTS), then `overrides` (stored field names)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; expected one of: {', '.join(PRESETS)}")
        arch = overrides.get("arch", cls.arch)
        return cls.from_dict({**PRESETS[name], **ARCH_DEFAULTS.get(arch, {}), **overrides})


def _build(cls: type, fields: dict[str, Any]) -> Any:
    try:
        return cls(**fields)
    except TypeError as e:
        raise ConfigError(f"bad model config: {e}") from None


ATTENTION_KINDS = ("full", "local", "longformer", "linformer", "lsh")


def check_long_input(cfg: ModelConfig) -> None:
    """Refuse attention settings that cannot work, naming the field and the values it allows."""
    att = cfg.attention
    kind = att.kind
    if kind not in ATTENTION_KINDS:
        raise ConfigError(f"attention_kind={kind!r} is not supported; expected one of: {', '.join(ATTENTION_KINDS)}")
    for name in ("window", "global_tokens", "linformer_k", "lsh_buckets", "lsh_rounds"):
        value = getattr(att, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name}={value!r}; expected a positive integer")
    if (kind != "full" or cfg.reversible or cfg.positional == "rotary") and (cfg.arch == "seq2seq" or cfg.vision):
        raise ConfigError(f"attention_kind={kind}, reversible and rotary positions apply to text encoders and decoders; "
                          f"expected attention_kind=full, reversible=false and positional sinusoidal or learned for this model")
    if kind in ("longformer", "linformer") and cfg.arch != "encoder":
        raise ConfigError(f"attention_kind={kind} is for encoders; expected full, local or lsh for a {cfg.arch}")
    if kind in ("local", "longformer", "lsh") and att.window > cfg.max_len:
        raise ConfigError(f"window={att.window} is longer than max_len={cfg.max_len}; expected 1..{cfg.max_len}")
    if kind == "longformer" and att.global_tokens > cfg.max_len:
        raise ConfigError(f"global_tokens={att.global_tokens} lies beyond max_len={cfg.max_len}; expected 1..{cfg.max_len}")
    if kind == "linformer" and att.linformer_k > cfg.max_len:
        raise ConfigError(f"linformer_k={att.linformer_k} is larger than the fixed length max_len={cfg.max_len}; "
                          f"expected 1..{cfg.max_len}")
    if kind == "lsh" and (att.lsh_buckets % 2 or cfg.max_len % att.window or att.lsh_buckets > 2 * cfg.max_len // att.window):
        raise ConfigError(f"lsh_buckets={att.lsh_buckets} with chunks of window={att.window} over max_len={cfg.max_len}; "
                          f"expected an even number of buckets up to {2 * max(1, cfg.max_len // att.window)} "
                          f"and a window that divides max_len")
    if cfg.positional == "relative" and cfg.arch != "seq2seq":
        raise ConfigError(f"positional=relative (T5's bucketed bias) applies to seq2seq models; expected sinusoidal, "
                          f"learned or rotary for a {cfg.arch}")
    if cfg.positional == "relative" and (att.relative_buckets < 4 or att.relative_max_distance <= att.relative_buckets // 4):
        raise ConfigError(f"relative_buckets={att.relative_buckets}, relative_max_distance={att.relative_max_distance}; "
                          f"expected at least 4 buckets and a distance past the exact quarter ({att.relative_buckets // 4})")
    if cfg.positional == "rotary" and cfg.head_dim % 2:
        raise ConfigError(f"positional=rotary needs an even head dimension, got d_model/n_heads={cfg.head_dim}; "
                          f"expected sinusoidal or learned positions, or an even d_model/n_heads")
    if cfg.reversible and cfg.norm != "pre":
        raise ConfigError("reversible=true needs norm=pre (a LayerNorm after the residual add cannot be inverted); "
                          "expected norm=pre or reversible=false")


def check_llama_settings(cfg: ModelConfig) -> None:
    """Refuse combinations of the Llama family's settings that cannot work, naming the fields."""
    att = cfg.attention
    if att.rope_scaling not in ROPE_SCALINGS:
        raise ConfigError(f"rope_scaling={att.rope_scaling!r} is not supported; expected one of: {', '.join(ROPE_SCALINGS)}")
    changed = [k for k, v in ADDED_KEYS.items() if k in LLAMA_KEYS and cfg.stored_fields()[k] != v]
    if changed and (cfg.arch not in ("encoder", "decoder", "seq2seq") or cfg.vision):
        raise ConfigError(f"{', '.join(changed)} apply to text models; expected their defaults for this "
                          f"{'image model' if cfg.vision else cfg.arch}")
    if cfg.arch == "seq2seq" and att.kv_heads is not None:
        raise ConfigError(f"kv_heads={att.kv_heads}: grouped-query attention applies to encoders and decoders; expected "
                          f"null for a seq2seq model")
    if cfg.n_heads % cfg.kv_heads:
        raise ConfigError(f"kv_heads={cfg.kv_heads} does not divide n_heads={cfg.n_heads}; each key/value head serves "
                          f"an equal group of query heads")
    if cfg.kv_heads != cfg.n_heads and att.kind != "full":
        raise ConfigError(f"kv_heads={cfg.kv_heads} (grouped-query) needs attention_kind=full, got {att.kind}")
    if att.head_size is not None and att.kind not in ("full", "local"):
        raise ConfigError(f"head_size={att.head_size} needs attention_kind full or local, got {att.kind}")
    if att.rope_scaling == "llama3" and att.rope_high_freq_factor <= att.rope_low_freq_factor:
        raise ConfigError(f"rope_high_freq_factor={att.rope_high_freq_factor} must exceed "
                          f"rope_low_freq_factor={att.rope_low_freq_factor} for llama3 scaling")


# the settings the modules of the Llama family read; the rope ones alone are harmless elsewhere (no rotary)
LLAMA_KEYS = ("norm_type", "feed_forward", "linear_bias", "kv_heads", "head_size", "qkv_bias")
