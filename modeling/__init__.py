"""edgeformer.modeling: transformer definitions, checkpoints and training (PyTorch)."""

from .checkpoint import load, save
from .config import ModelConfig
from .model import Transformer
from .presets import PRESETS

__all__ = ["ModelConfig", "PRESETS", "Transformer", "load", "save"]
