"""Which module each architecture builds, and building it: the one place that maps `arch` to a class.

    encoder, decoder   Transformer (modeling/models/transformer.py; a ViT is an encoder with image_size > 0)
    seq2seq            Seq2SeqTransformer (modeling/models/seq2seq.py)
    conformer          Conformer (modeling/models/conformer.py)

A new architecture is one class and one entry in ARCHITECTURES.

Loading a checkpoint builds its model once, on PyTorch's meta device (`build_model(cfg, meta=True)`:
shapes, no memory, no random initialisation), checks the weights' header against it, then
`materialize` gives it real storage for the weights to be copied into. Tensors derived from the
config rather than stored (position tables, the log-mel front end) are computed again there by
their module's `derive_buffers`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgeformer.modeling.models.conformer import Conformer
from edgeformer.modeling.config import ModelConfig
from edgeformer.modeling.models.transformer import Transformer
from edgeformer.modeling.models.seq2seq import Seq2SeqTransformer

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "encoder": Transformer,
    "decoder": Transformer,
    "seq2seq": Seq2SeqTransformer,
    "conformer": Conformer,
}


def model_class(cfg: ModelConfig) -> type[nn.Module]:
    return ARCHITECTURES[cfg.arch]  # cfg.arch was checked against config.ARCHS when the config was made


def build_model(cfg: ModelConfig, meta: bool = False) -> nn.Module:
    """The module `cfg` describes, randomly initialised; with `meta`, its shapes only (see materialize)."""
    if not meta:
        return model_class(cfg)(cfg)
    with torch.device("meta"):
        return model_class(cfg)(cfg)


def materialize(model: nn.Module) -> nn.Module:
    """Give a model built with `meta=True` uninitialised CPU storage for its weights (tied weights
    stay tied) and compute its derived, unsaved buffers again; the caller copies the weights in."""
    places: dict[int, list[tuple[nn.Module, str]]] = {}  # each parameter's owners: more than one where tied
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            places.setdefault(id(p), []).append((m, name))
    model.to_empty(device="cpu")  # gives every owner a storage of its own
    for (first, first_name), *others in places.values():
        for m, name in others:
            setattr(m, name, getattr(first, first_name))
    # held, not only their ids: a tensor freed when derive_buffers replaces it could hand its id to the new one
    emptied = {id(b): b for m in model.modules() for name, b in m.named_buffers(recurse=False)
               if name in m._non_persistent_buffers_set}
    for m in list(model.modules()):
        if hasattr(m, "derive_buffers"):
            m.derive_buffers()
    for m in model.modules():  # a derived buffer nothing computed again would hold whatever memory held
        for name, b in m.named_buffers(recurse=False):
            if id(b) in emptied:
                raise TypeError(f"{type(m).__name__}.{name} is an unsaved buffer that {type(m).__name__} does not "
                                "compute again; give it a derive_buffers() method")
    return model
