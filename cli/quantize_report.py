"""How `edgeformer quantize` and `edgeformer parity` print a quantized bundle's figures."""

from __future__ import annotations

from .output import ms

COMPARE_COLUMNS = ["recipe", "size", "ms", "spread", "speed-up", "value", "drop", "mean cos", "min cos", "max abs"]


def compare_title(bundle, results) -> str:
    metric = results[0].fidelity.metric if results else "task metric"
    return (f"quantization recipes for {bundle}: batch 1, float32 and every recipe timed in one session of alternating "
            f"blocks (spread: p10-p90 range over the median); value: {metric}")


def compare_rows(results) -> list[list[str]]:
    """float32 first, then one row per recipe of `edgeformer quantize --compare` (quantize/compare.py)."""
    if not results:
        return []
    first = results[0]
    rows = [["float32", "100.0%", ms(first.float_ms), f"{first.float_spread:.0%}", "1.00x",
             f"{first.fidelity.float_metric:.5g}", "-", "-", "-", "-"]]
    return rows + [[r.recipe, f"{r.size_ratio:.1%}", ms(r.quant_ms), f"{r.quant_spread:.0%}", r.speedup_text(),
                    f"{r.fidelity.quant_metric:.5g}", f"{r.fidelity.drop:.4g}", f"{r.fidelity.mean_cosine:.5f}",
                    f"{r.fidelity.min_cosine:.5f}", f"{r.fidelity.max_abs:.3g}"] for r in results]


def compare_footer(results) -> list[str]:
    """How the timing session ended and, for each unreliable row, its ratio and why."""
    if not results:
        return []
    lines = [f"timing: {results[0].timing}"]
    unreliable = [r.why_unreliable() for r in results if not r.reliable]
    if unreliable:
        lines += [f"  {line}" for line in unreliable]
        lines.append("  an unreliable ratio was measured while the machine was busy with other work: rerun on a quiet "
                     "machine, or time one recipe against float32 with `edgeformer bench`")
    return lines


def generation_summary(r) -> str:
    """The figures users of a quantized generation bundle see, in one line."""
    f = r.fidelity
    line = (f"  teacher-forced next-token agreement {f.next_token_agreement:.3f}, perplexity {f.quant_perplexity:.4g} "
            f"(float32 {f.float_perplexity:.4g}, {f.perplexity_increase:+.2%})")
    if f.greedy_agreement is not None:
        line += f", greedy agreement {f.greedy_agreement:.3f} ({f.greedy_identical:.0%} of prompts identical)"
    if f.quant_exact_match is not None:
        line += f", exact match {f.quant_exact_match:.3f} (float32 {f.float_exact_match:.3f})"
    return line


def written_line(out: str, recipe: str, r) -> str:
    """What a written quantized bundle measured, in one line."""
    f = r.fidelity
    return (f"wrote {out}: {recipe}, {f.metric} {f.quant_metric:.5g} (float32 {f.float_metric:.5g}, drop {f.drop:.4g}), "
            f"size {r.size_ratio:.1%} of float32, {r.float_ms / r.quant_ms:.2f}x the speed at batch 1"
            + (f", smoothing alpha {r.smooth_alpha:g}" if r.smooth_alpha is not None else "")
            + (f", {len(r.kept_float)} MatMuls kept in float: {', '.join(r.kept_float)}" if r.kept_float else ""))


def budget_line(fid, limit: float, source: str = "") -> str:
    return (f"{fid.metric} {fid.quant_metric:.5g} vs PyTorch {fid.float_metric:.5g}: drop {fid.drop:.4g}, budget {limit:.4g}"
            + (f" ({source})" if source else ""))


def budget_source(manifest) -> str:
    """Where `edgeformer parity`'s budget for a quantized bundle comes from, as the gates in
    quantize.bundle.budget_parity and quantize.generation.generation_budget_parity choose it."""
    recorded = manifest.parity
    fidelity = (recorded.fidelity or {}) if recorded is not None else {}
    generation = "perplexity_increase" in fidelity or fidelity.get("metric") == "exact-match"
    if recorded is not None and recorded.max_drop is not None and fidelity.get("metric") != "exact-match":
        return "the --max-drop given when it was quantized"
    if generation:
        measured = fidelity.get("perplexity_increase", 0.0)
        return (f"no --max-drop on perplexity was given when it was quantized: the perplexity increase then measured "
                f"against the float32 bundle, {measured:.4g}, plus 10% and 1e-3")
    measured = fidelity.get("drop", 0.0)
    return (f"no --max-drop was given when it was quantized: the drop then measured against the float32 bundle, "
            f"{measured:.4g}, plus 10% (at least 1e-6)")
