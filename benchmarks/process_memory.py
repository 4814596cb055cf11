"""This process's memory as Linux reports it, for the benchmarks that measure one step in a fresh process.

VmHWM is the high-water resident set; writing 5 to /proc/self/clear_refs resets it, so the figure
after a step is that step's own peak (getrusage's ru_maxrss cannot be reset, and a forked child
inherits its parent's).
"""

from __future__ import annotations

from pathlib import Path


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM, ...), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> float:
    """Reset the high-water mark to the present resident set; return that resident set in MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_mb("VmRSS")
