"""Turning raw outputs into answers: probabilities from logits."""

from __future__ import annotations

import numpy as np


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))  # shifted: no overflow for large logits
    return e / e.sum(axis=axis, keepdims=True)
