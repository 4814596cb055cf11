"""The built-in image task `digits`: scikit-learn's 8x8 handwritten digits as uint8 images; no PyTorch.

`digits` is scikit-learn's copy of the UCI optical handwritten digits (1,797 real 8x8 grayscale
scans, 10 classes, 0-16 intensity) that ships inside the scikit-learn wheel: no download. Images
become uint8 0-255 like any picture; a fixed 80/20 split per class holds out 359 of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .text import DataError


@dataclass
class ImageData:
    labels: list[str]
    train_images: np.ndarray  # (N, C, H, W) uint8
    train_labels: np.ndarray  # (N,) int64
    eval_images: np.ndarray
    eval_labels: np.ndarray


def digits(eval_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """scikit-learn's 8x8 handwritten digits as uint8 images, split per class with a fixed seed."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits task needs scikit-learn (pip install scikit-learn, or edgeformer[torch])") from None
    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    labels = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        held[rng.permutation(idx)[: round(len(idx) * eval_fraction)]] = True
    return ImageData([str(c) for c in range(10)], images[~held], labels[~held], images[held], labels[held])


IMAGE_TASKS = {"digits": digits}
