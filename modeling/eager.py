"""PyTorch eager inference on numpy feeds: the reference side of parity and benchmarks."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from .model import Transformer


def eager_runner(model: Transformer, feeds: Mapping[str, np.ndarray]) -> Callable[[], dict[str, torch.Tensor]]:
    """A no-argument callable running `model` on `feeds`, converted to tensors once, up front."""
    model = model.eval()
    kwargs = {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in feeds.items()}

    def run() -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            return model(**kwargs)

    return run
