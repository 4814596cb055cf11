"""Graph passes run on every export, one pass per module, each counted by a test."""

from .attention_3d import attention_to_3d

__all__ = ["attention_to_3d"]
