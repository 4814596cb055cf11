"""PyTorch eager inference on numpy feeds: the reference side of parity and benchmarks."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from edgeformer.modeling.models.transformer import Transformer


def eager_runner(model: Transformer, feeds: Mapping[str, np.ndarray]) -> Callable[[], dict[str, torch.Tensor]]:
    """A no-argument callable running `model` on `feeds`, converted to tensors once, up front."""
    model = model.eval()
    kwargs = {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in feeds.items()}

    def run() -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            return model(**kwargs)

    return run


def teacher_forced_logits(model) -> Callable[[object], np.ndarray]:
    """PyTorch's (B, T, V) logits for a generation bundle's teacher-forced batch (quantize.generation_eval).

    A batch holds the decoder graph's feeds (`decoder`) and, for seq2seq, the encoder's (`source`);
    the model reads them as it would in training: the whole sequence at once, no cache.
    """
    model = model.eval()
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731

    def run(batch) -> np.ndarray:
        with torch.inference_mode():
            if batch.source is not None:
                out = model(tensor(batch.source["input_ids"]), tensor(batch.source["attention_mask"]),
                            tensor(batch.decoder["input_ids"]))
            else:
                d = batch.decoder
                out = model(tensor(d["input_ids"]), tensor(d["attention_mask"]), position_ids=tensor(d["position_ids"]))
        return out["logits"].float().numpy()

    return run
