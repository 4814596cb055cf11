"""Graph passes run on every export, one pass per module, each counted by a test."""

from .attention_3d import attention_to_3d
from .packed_attention import attention_to_contrib
from .rotary_attention import rotary_attention
from .sibling_matmuls import merge_sibling_matmuls

__all__ = ["attention_to_3d", "attention_to_contrib", "merge_sibling_matmuls", "rotary_attention"]
