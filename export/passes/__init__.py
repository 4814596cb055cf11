"""Graph passes run on every export, one pass per module, each counted by a test."""

from .attention_3d import attention_to_3d
from .packed_attention import attention_to_contrib
from .rotary_attention import rotary_attention

__all__ = ["attention_to_3d", "attention_to_contrib", "rotary_attention"]
