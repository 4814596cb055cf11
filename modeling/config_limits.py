"""Bounds on every ModelConfig field.

A config.json comes with a checkpoint from elsewhere; its sizes decide what PyTorch allocates.
`check_fields` bounds every field (type and range) before anything is built, so `n_layers: 1000000`
or `vocab_size: 10**12` is one ConfigError line rather than gigabytes and a crash. The checkpoint's
weights are then checked against the config by modeling/checkpoint.py, before they are loaded.

The bounds are far above any model edgeformer targets (a phone or a board), and well below what
would exhaust a workstation while building one.
"""

from __future__ import annotations

import math
from typing import Any

from edgeformer.runtime.errors import EdgeformerError

# field -> (smallest, largest) for integers
INT_BOUNDS = {
    "vocab_size": (1, 1 << 21),
    "d_model": (1, 1 << 14),
    "n_heads": (1, 1 << 8),
    "n_layers": (1, 1 << 8),
    "d_ff": (1, 1 << 16),
    "max_len": (1, 1 << 20),
    "pad_id": (0, (1 << 21) - 1),
    "type_vocab_size": (0, 1 << 16),
    "num_labels": (0, 1 << 16),
    "image_size": (0, 1 << 13),
    "patch_size": (1, 1 << 13),
    "num_channels": (1, 64),
    "rope_original_max_len": (1, 1 << 24),
    "relative_buckets": (1, 1 << 12),
    "relative_max_distance": (1, 1 << 20),
}
# field -> (smallest, largest) for integers that may be null (null: derived from other fields)
OPTIONAL_INT_BOUNDS = {
    "kv_heads": (1, 1 << 8),
    "head_size": (1, 1 << 10),
}
# field -> (smallest, largest) for positive numbers
FLOAT_BOUNDS = {
    "rope_theta": (1.0, 1e9),
    "rope_factor": (1.0, 1e4),
    "rope_low_freq_factor": (1e-3, 1e4),
    "rope_high_freq_factor": (1e-3, 1e4),
}
BOOLS = ("embedding_norm", "pooler", "tie_embeddings", "reversible", "linear_bias", "qkv_bias", "streaming")
MAX_POSITION_TABLE = 1 << 27  # max_len x d_model floats of a sinusoidal table, max_len x head size of rotary ones (512 MiB)
MAX_PARAMETERS = 1 << 33  # 8 G parameters: 32 GiB in float32


class ConfigError(EdgeformerError):
    """A model config whose fields are of the wrong type or out of range, or that disagrees with its weights."""


def check_fields(stored: dict[str, Any]) -> None:
    """Refuse, in one line, a field of the stored config (ModelConfig.to_dict) of the wrong type or outside its
    bounds (before any other check)."""
    for name, (lo, hi) in INT_BOUNDS.items():
        value = stored.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(f"{name}={_show(value)}; expected an integer in [{lo}, {hi}]")
    for name, (lo, hi) in OPTIONAL_INT_BOUNDS.items():
        value = stored.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi):
            raise ConfigError(f"{name}={_show(value)}; expected null or an integer in [{lo}, {hi}]")
    for name, (lo, hi) in FLOAT_BOUNDS.items():
        value = stored.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
            raise ConfigError(f"{name}={_show(value)}; expected a number in [{lo:g}, {hi:g}]")
    for name in BOOLS:
        if not isinstance(stored.get(name), bool):
            raise ConfigError(f"{name}={_show(stored.get(name))}; expected true or false")
    for name, lo, hi in (("dropout", 0.0, 1.0), ("layer_norm_eps", 0.0, 1.0)):
        value = stored.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value < hi:
            raise ConfigError(f"{name}={_show(value)}; expected a number in [{lo:g}, {hi:g})")
    eps, pad_id, vocab, labels = stored["layer_norm_eps"], stored["pad_id"], stored["vocab_size"], stored["labels"]
    if eps <= 0:
        raise ConfigError(f"layer_norm_eps={eps!r}; expected a small positive number such as 1e-5")
    if pad_id >= vocab:
        raise ConfigError(f"pad_id={pad_id}; expected a token id below vocab_size {vocab}")
    if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
        raise ConfigError(f"labels={_show(labels)}; expected a list of label names (strings) or null")
    d, n_layers, max_len = stored["d_model"], stored["n_layers"], stored["max_len"]
    table = (stored["head_size"] or d // stored["n_heads"] or 1) if stored["positional"] == "rotary" else d  # per head
    if max_len * table > MAX_POSITION_TABLE:
        raise ConfigError(f"max_len x {'head size' if stored['positional'] == 'rotary' else 'd_model'} = {max_len} x {table} "
                          f"positions; expected at most {MAX_POSITION_TABLE}")
    width = stored["n_heads"] * (stored["head_size"] or d // stored["n_heads"] or 1)  # the attention's inner width
    ff_mats = 3 if stored["feed_forward"] == "gated" else 2
    estimate = n_layers * (4 * d * width + ff_mats * d * stored["d_ff"]) + vocab * d
    if estimate > MAX_PARAMETERS:
        raise ConfigError(f"the config describes about {estimate:.3g} parameters; expected at most {MAX_PARAMETERS:.3g}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
