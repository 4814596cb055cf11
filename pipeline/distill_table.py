"""A distillation report (edgeformer.export.distill_report) as table columns and rows, for the CLI and the benchmarks."""

from __future__ import annotations


def report_rows(report: dict) -> tuple[list[str], list[list]]:
    """The report as table columns and rows: teacher, student, and their ratios."""
    t, s = report["models"]["teacher"], report["models"]["student"]
    metric, batches = report["metric"], list(t["latency_ms"])
    columns = ["model", "params", "bundle MB"] + [f"batch {b} ms" for b in batches] + [metric]
    rows = [[name, f"{m['parameters'] / 1e6:.2f}M", f"{m['bundle_mb']:.1f}",
             *(f"{m['latency_ms'][b]:.2f}" for b in batches), f"{m[metric]:.4g}"] for name, m in (("teacher", t), ("student", s))]
    rows.append(["student / teacher", f"{s['parameters'] / t['parameters']:.2f}x", f"{s['bundle_mb'] / t['bundle_mb']:.2f}x",
                 *(f"{t['latency_ms'][b] / s['latency_ms'][b]:.2f}x faster" for b in batches),
                 f"retention {report['retention']:.3f}"])
    return columns, rows
