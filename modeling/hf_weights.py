"""Hugging Face weights into edgeformer's state dict: the name and shape mapping every imported family shares."""

from __future__ import annotations

from typing import Any, Callable

import torch

from edgeformer.runtime.errors import EdgeformerError


class ImportError_(EdgeformerError):
    pass


class WeightMap:
    """Collects edgeformer tensors from Hugging Face ones, checking each shape against the config."""

    def __init__(self, hf: dict[str, torch.Tensor], prefix: str, expected: dict[str, torch.Tensor]):
        self.hf, self.prefix, self.expected = hf, prefix, expected
        self.state: dict[str, torch.Tensor] = {}
        self.used: set[str] = set()

    def get(self, name: str) -> torch.Tensor:
        full = self.prefix + name
        if full not in self.hf:
            raise ImportError_(f"the weights lack tensor {full!r}; expected by config.json")
        self.used.add(full)
        return self.hf[full]

    def put(self, ours: str, *names: str, transform: Callable[..., torch.Tensor] = lambda t: t) -> None:
        tensors = [self.get(n) for n in names]
        value = transform(*tensors)
        want = tuple(self.expected[ours].shape)
        if tuple(value.shape) != want:
            shapes = ", ".join(f"{self.prefix + n} {tuple(t.shape)}" for n, t in zip(names, tensors))
            raise ImportError_(f"tensor {shapes} does not fit: config.json implies {want} for it")
        self.state[ours] = value.contiguous()

    def linear(self, ours: str, hf: str, conv1d: bool = False, bias: bool = True) -> None:
        """A Linear layer; GPT-2's Conv1D stores the weight transposed, (in, out)."""
        self.put(f"{ours}.weight", f"{hf}.weight", transform=(lambda w: w.t()) if conv1d else (lambda w: w))
        if bias:
            self.put(f"{ours}.bias", f"{hf}.bias")

    def norm(self, ours: str, hf: str) -> None:
        self.put(f"{ours}.weight", f"{hf}.weight")
        self.put(f"{ours}.bias", f"{hf}.bias")

    def qkv(self, ours: str, q: str, k: str, v: str, bias: bool = True) -> None:
        """Separate query, key and value projections as one (queries first; fewer key/value rows when grouped)."""
        cat = lambda a, b, c: torch.cat([a, b, c], dim=0)  # noqa: E731
        self.put(f"{ours}.weight", f"{q}.weight", f"{k}.weight", f"{v}.weight", transform=cat)
        if bias:
            self.put(f"{ours}.bias", f"{q}.bias", f"{k}.bias", f"{v}.bias", transform=cat)


def pad_id_from(hf: dict[str, Any]) -> int:
    """A model without a pad token (GPT-2, Llama) pads with its end-of-text token, as transformers does,
    when it is in the vocabulary (a cut-down model may keep GPT-2's 50256 with a smaller vocabulary);
    else with 0. Padded positions are masked, so the choice never changes an output."""
    for key in ("pad_token_id", "eos_token_id"):
        value = hf.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < hf["vocab_size"]:
            return value
    return 0
