"""What `quantize_bundle` returns (QuantizeResult) and raises when a budget cannot be met (BudgetError), for every bundle kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeformer.runtime.errors import GateFailure

from .evaluation import Fidelity
from .generation_eval import GenerationFidelity
from .recipes import QuantizeError


@dataclass
class QuantizeResult:
    path: Path | None
    recipe: str
    fidelity: Fidelity | GenerationFidelity
    kept_float: list[str] = field(default_factory=list)
    size_ratio: float = 0.0
    float_ms: float = 0.0
    quant_ms: float = 0.0
    max_drop: float | None = None
    smooth_alpha: float | None = None  # the smoothing strength used; None: not smoothed
    smoothing_trials: dict[str, float] = field(default_factory=dict)  # alpha -> calibration output cosine ("auto")

    @property
    def passed(self) -> bool:
        return self.max_drop is None or self.fidelity.drop <= self.max_drop

    def to_json(self) -> dict:
        return {"recipe": self.recipe, "fidelity": self.fidelity.to_json(), "max_drop": self.max_drop,
                "kept_float": self.kept_float, "smooth_alpha": self.smooth_alpha,
                "smoothing_trials": self.smoothing_trials, "size_ratio": self.size_ratio,
                "latency_ms": {"float32": self.float_ms, "quantized": self.quant_ms}, "passed": self.passed}


class BudgetError(QuantizeError, GateFailure):
    """The quantized graph misses its accuracy budget even with its most sensitive MatMuls in float (exit 1)."""

    def __init__(self, result: QuantizeResult):
        self.result = result
        f = result.fidelity
        super().__init__(f"the {result.recipe} bundle misses the budget: {f.metric} drop {f.drop:.4g} > {result.max_drop:g} "
                         f"even with {len(result.kept_float)} MatMuls kept in float; nothing was written")

    def report_lines(self) -> list[str]:
        r, f = self.result, self.result.fidelity
        return [f"{r.recipe}: {f.metric} {f.quant_metric:.5g} (float32 {f.float_metric:.5g}), drop {f.drop:.4g}; "
                f"kept in float: {', '.join(r.kept_float) or 'none'}"]
