"""Comparing tensors against their reference, and the budget that says when a node is over.

Errors are accumulated over every batch (per-token tensors at real tokens only): max and mean abs
error, relative error ||got - ref|| / ||ref||, the lowest cosine similarity.

Two budgets:
- "atol" (a float32 bundle against PyTorch or against another float32 graph): a node is over when
  its output's max abs error exceeds the bundle's parity tolerance (1e-4 by default).
- "relative" (a quantized graph against its float32 graph): every quantized node has some error,
  so a node is over only when it *adds* error: its output's relative error ||q - f|| / ||f|| is
  above `rel` (default 0.1, an SQNR under 20 dB) AND at least `jump` times (default 4x, 12 dB)
  the relative error of its inputs. A loss that builds up layer by layer (jump near 1x) is not a
  single node's fault and is shown in the layer curve instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

FLOAT32_ATOL = 1e-4  # the parity gate's tolerance (export/parity.py)
QUANT_REL = 0.1  # relative error above which a quantized node may be reported (SQNR 20 dB)
QUANT_JUMP = 4.0  # ... when it is also this many times its inputs' relative error (12 dB)


@dataclass
class TensorError:
    max_abs: float = 0.0
    mean_abs: float = 0.0
    rel: float = 0.0  # ||got - ref|| / ||ref|| over every compared element of every batch
    cosine: float = 1.0
    elements: int = 0
    _err2: float = 0.0
    _ref2: float = 0.0
    _abs_sum: float = 0.0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
        if r.size == 0:
            return
        d = g - r
        finite = np.isfinite(d).all()
        self.max_abs = max(self.max_abs, float(np.abs(d).max()) if finite else math.inf)
        self._abs_sum += float(np.abs(d).sum()) if finite else math.inf
        self._err2 += float(d @ d) if finite else math.inf
        self._ref2 += float(r @ r)
        self.elements += r.size
        denom = float(np.linalg.norm(r) * np.linalg.norm(g))
        cos = float(r @ g / denom) if denom > 0 and finite else (1.0 if np.array_equal(r, g) else 0.0)
        self.cosine = min(self.cosine, cos)
        self.mean_abs = self._abs_sum / self.elements
        self.rel = math.sqrt(self._err2 / self._ref2) if self._ref2 > 0 else (0.0 if self._err2 == 0 else math.inf)


def sqnr_db(rel: float) -> float:
    """Signal to quantization-noise ratio: 20 log10(||ref|| / ||got - ref||)."""
    return math.inf if rel == 0 else -20 * math.log10(rel) if math.isfinite(rel) else -math.inf


def valid_positions(feeds: Mapping[str, np.ndarray]) -> np.ndarray | None:
    mask = feeds.get("attention_mask")
    return None if mask is None else np.asarray(mask).astype(bool)


def accumulate(errors: dict[str, TensorError], refs: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray],
               valid: np.ndarray | None) -> None:
    """Add one batch: per-token tensors (batch, seq, ...) are compared at real tokens only."""
    for name, ref in refs.items():
        g = got.get(name)
        if g is None or np.shape(g) != np.shape(ref):
            continue
        ref, g = np.asarray(ref), np.asarray(g)
        if valid is not None and ref.ndim >= 2 and ref.shape[:2] == valid.shape:
            ref, g = ref[valid], g[valid]
        errors.setdefault(name, TensorError()).add(ref, g)


@dataclass
class Budget:
    kind: str = "atol"  # "atol" (float32) or "relative" (quantized)
    atol: float = FLOAT32_ATOL
    rel: float = QUANT_REL
    jump: float = QUANT_JUMP

    def over(self, e: TensorError, upstream: TensorError) -> bool:
        if self.kind == "atol":
            return e.max_abs > self.atol
        return e.rel > self.rel and e.rel > self.jump * max(upstream.rel, 1e-12)

    def describe(self) -> str:
        if self.kind == "atol":
            return f"max abs error > {self.atol:g}"
        return f"relative error > {self.rel:g} (SQNR < {sqnr_db(self.rel):.0f} dB) and > {self.jump:g}x its inputs'"

    def to_json(self) -> dict:
        return {"kind": self.kind, "atol": self.atol} if self.kind == "atol" else \
            {"kind": self.kind, "rel": self.rel, "jump": self.jump}
