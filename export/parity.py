"""The parity gate: the same inputs through PyTorch and through the bundle, compared output by output.

Inputs are random token ids over the whole vocabulary in several batch sizes and lengths, with
the rows after the first right-padded to random lengths. Per-token outputs are compared at real
(unpadded) positions only: what a padded position computes is not part of the model's contract.

An output passes when its largest difference is within atol x max(1, its largest |PyTorch value|):
float32 rounding grows with the values summed, and a real model's logits reach tens (SmolLM2's
cache tensors and a T5's logits miss a bare 1e-4 by rounding alone), while outputs within +-1
(every tiny test model's) are held to atol itself. The deploy checks scale their tolerances the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch

from edgeformer.modeling.models.transformer import Transformer
from edgeformer.runtime.bundle import TensorSpec
from edgeformer.runtime.errors import EdgeformerError, GateFailure
from edgeformer.runtime.inputs import MASK, example_inputs

FLOAT32_ATOL = 1e-4


@dataclass
class OutputParity:
    name: str
    max_abs: float
    mean_abs: float
    cosine: float
    scale: float = 1.0  # max(1, largest |PyTorch value|): the tolerance is atol x scale
    scaled: float | None = None  # max_abs / scale (over cases: the largest); what is held to atol

    def __post_init__(self):
        if self.scaled is None:
            self.scaled = self.max_abs / self.scale

    def verdict(self, atol: float) -> str:
        if self.scaled <= atol:
            return "pass"
        return f"FAIL (> {atol:g})" if self.scale == 1.0 else f"FAIL (> {atol:g} x {self.scale:.3g})"


@dataclass
class CaseParity:
    batch: int
    seq: int
    padded: bool
    outputs: list[OutputParity]
    past: int = 0  # cached tokens before this input (decoders exported with a key/value cache)


@dataclass
class ParityReport:
    atol: float
    cases: list[CaseParity] = field(default_factory=list)
    hash_agreement: float | None = None  # LSH: share of hash decisions the bundle and PyTorch share (export.lsh_parity)
    hash_required: float | None = None

    @property
    def worst(self) -> dict[str, OutputParity]:
        """Per output: the largest max/mean error and the smallest cosine over all cases."""
        out: dict[str, OutputParity] = {}
        for case in self.cases:
            for o in case.outputs:
                w = out.get(o.name)
                out[o.name] = o if w is None else OutputParity(
                    o.name, max(w.max_abs, o.max_abs), max(w.mean_abs, o.mean_abs), min(w.cosine, o.cosine),
                    max(w.scale, o.scale), max(w.scaled, o.scaled))
        return out

    @property
    def hashes_agree(self) -> bool:
        return self.hash_agreement is None or self.hash_agreement >= self.hash_required

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(o.scaled <= self.atol for o in self.worst.values()) and self.hashes_agree

    def to_json(self) -> dict:
        out = {"passed": self.passed, "atol": self.atol,
               "worst": {k: asdict(v) for k, v in self.worst.items()},
               "cases": [asdict(c) for c in self.cases]}
        if self.hash_agreement is not None:
            out.update(hash_agreement=self.hash_agreement, hash_required=self.hash_required)
        return out

    def columns(self) -> list[str]:
        """The header of `rows`."""
        return ["output", "max abs", "mean abs", "min cosine", "max(1, |torch|)", f"verdict (atol {self.atol:g} x that)"]

    def rows(self) -> list[list[str]]:
        """Table rows: output, max abs, mean abs, min cosine, largest |value|, verdict."""
        rows = [[o.name, f"{o.max_abs:.3g}", f"{o.mean_abs:.3g}", f"{o.cosine:.8f}", f"{o.scale:.3g}", o.verdict(self.atol)]
                for o in self.worst.values()]
        if self.hash_agreement is not None:  # LSH: the outputs above are under the bundle's hash decisions
            rows.append(["LSH hash agreement", f"{self.hash_agreement:.4%}", "", "", "",
                         "pass" if self.hashes_agree else f"FAIL (< {self.hash_required:.1%})"])
        return rows


# The seed of export's parity gate. `edgeformer parity` draws from --seed (default 0), so a bundle is
# checked again on inputs its gate never saw.
GATE_SEED = 1_000_003


class ParityFailure(GateFailure):
    def __init__(self, report: ParityReport, where: str):
        self.report = report
        worst = max(report.worst.values(), key=lambda o: o.scaled, default=None)
        detail = "no cases ran"
        if worst is not None:
            limit = f"{report.atol:g}" if worst.scale == 1.0 else \
                f"{report.atol:g} x {worst.scale:.3g} (max(1, the output's largest |value|))"
            detail = f"{worst.name} max abs error {worst.max_abs:.3g} > {limit}"
        if worst is not None and worst.scaled <= report.atol and not report.hashes_agree:
            detail = (f"its LSH hash agrees with PyTorch's on {report.hash_agreement:.4%} of tokens; "
                      f"expected at least {report.hash_required:.1%}")
        super().__init__(f"{where} failed the parity gate: {detail}")

    def report_table(self):
        return ("parity report", self.report.columns(), self.report.rows())


def default_cases(max_len: int) -> list[tuple[int, int]]:
    """(batch, seq): one token, short and odd lengths, a long padded batch, and the maximum length."""
    lengths = [1, 16, 7, 33, min(128, max_len), max_len]
    batches = [1, 1, 2, 4, 3, 2]
    return [(b, min(t, max_len)) for b, t in zip(batches, lengths)]


def compare(name: str, ref: np.ndarray, got: np.ndarray, valid: np.ndarray | None) -> OutputParity:
    if ref.shape != got.shape:
        raise EdgeformerError(f"output {name} has shape {got.shape} in the bundle but {ref.shape} in PyTorch")
    if valid is not None:  # (B, T, ...) outputs: keep real positions only
        ref, got = ref[valid], got[valid]
    r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    diff = np.abs(r - g)
    denom = np.linalg.norm(r) * np.linalg.norm(g)
    cosine = float(r @ g / denom) if denom > 0 else float(np.array_equal(r, g))
    scale = max(1.0, float(np.abs(r[np.isfinite(r)]).max(initial=0.0)))
    return OutputParity(name, float(diff.max(initial=0.0)), float(diff.mean()) if diff.size else 0.0, cosine, scale)


def check_parity(
    model: Transformer,
    run: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    cases: list[tuple[int, int]] | None = None,
    atol: float = FLOAT32_ATOL,
    seed: int = 0,
) -> ParityReport:
    """Run every case through `model` (PyTorch) and `run` (the bundle) and compare."""
    model = model.eval()
    rng = np.random.default_rng(seed)
    report = ParityReport(atol)
    if cases is None:
        cases = default_cases(model.cfg.max_len)
        if model.cfg.vision:  # images have no sequence axis: one case per batch size
            cases = [(b, model.cfg.max_len) for b in sorted({b for b, _ in cases})]
    for batch, seq in cases:
        feeds = example_inputs(inputs, {"batch": batch, "seq": seq}, rng, padded=True, global_tokens=model.cfg.attention.global_tokens)
        with torch.no_grad():
            ref = model(**{name: torch.from_numpy(value) for name, value in feeds.items()})
        report.cases.append(case_parity(batch, seq, feeds, outputs, ref, run(feeds)))
    return report


def case_parity(batch: int, seq: int, feeds: Mapping[str, np.ndarray], outputs: list[TensorSpec],
                ref: Mapping[str, torch.Tensor], got: Mapping[str, np.ndarray]) -> CaseParity:
    """Every output of PyTorch (`ref`) against the bundle (`got`); (batch, seq, ...) outputs at real positions only."""
    valid = feeds[MASK].astype(bool) if MASK in feeds else None
    results = []
    for spec in outputs:
        per_token = len(spec.shape) >= 2 and spec.shape[:2] == ("batch", "seq")
        results.append(compare(spec.name, ref[spec.name].numpy(), np.asarray(got[spec.name]), valid if per_token else None))
    return CaseParity(batch, seq, valid is not None and batch > 1, results)
