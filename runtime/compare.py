"""How far apart two runs' outputs are: the one comparison the deploy checks use.

NaN rule: a NaN on both sides at the same place agrees (the same graph computed the same thing);
a NaN on one side only, or outputs of different shapes, are infinitely far apart, so no tolerance
passes them. Checks against recorded expectations (test vectors, the browser's answers) pass
`nan_equal=False`: an expected value is never NaN, so a NaN anywhere is a failure.
"""

from __future__ import annotations

import numpy as np


def max_abs(a: np.ndarray, b: np.ndarray, nan_equal: bool = True) -> float:
    """max |a - b| in float64, under the module's NaN rule; 0.0 for empty outputs."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    both = np.isnan(a) & np.isnan(b) if nan_equal else np.zeros(a.shape, dtype=bool)
    d = np.abs(np.where(both, 0.0, a - b))
    d = np.where(np.isnan(d), np.inf, d)
    return float(d.max()) if d.size else 0.0
