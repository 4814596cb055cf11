"""What CPU this is, in the terms that decide onnxruntime's kernels: its model name and int8 class.

onnxruntime picks its int8 matrix kernels by instruction set. x86 CPUs with AVX2 but no VNNI run
u8s8 products through a 16-bit intermediate that saturates; VNNI (AVX-512 or AVX) and ARM's dotprod
do not. A fidelity measured on one class is a claim about that class only, so manifests record it.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

INT8_CLASSES = {
    "x86-vnni": "x86-64 with VNNI (AVX-512 VNNI or AVX-VNNI): int8 products summed in 32 bits",
    "x86-avx2": "x86-64 with AVX2 and no VNNI: u8s8 products pass through a saturating 16-bit sum",
    "x86-sse": "x86-64 without AVX2",
    "arm64-dotprod": "aarch64 with the dot-product extension (sdot/udot)",
    "arm64": "aarch64 without the dot-product extension",
    "other": "another architecture",
}


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


@lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's model name, e.g. 'Intel(R) Xeon(R) Processor' or 'AMD EPYC 7B13'."""
    info = _cpuinfo()
    for key in ("model name", "cpu model", "hardware", "processor"):
        if info.get(key) and not info[key].isdigit():
            return info[key]
    return platform.processor() or platform.machine() or "unknown"


@lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("features") or "").split())


def int8_class(machine: str | None = None, flags: frozenset[str] | None = None) -> str:
    """This CPU's int8 class (a key of INT8_CLASSES)."""
    machine = (machine or platform.machine()).lower()
    flags = cpu_flags() if flags is None else flags
    if machine in ("x86_64", "amd64"):
        if {"avx512_vnni", "avx_vnni", "avx512vnni"} & flags:
            return "x86-vnni"
        return "x86-avx2" if "avx2" in flags else "x86-sse"
    if machine in ("aarch64", "arm64"):
        return "arm64-dotprod" if "asimddp" in flags else "arm64"
    return "other"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them ('unknown' where the OS has none)."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "unknown"


def describe() -> dict[str, str]:
    """{"machine", "cpu", "int8_class"} of this host, for manifests and reports."""
    return {"machine": platform.machine(), "cpu": cpu_model(), "int8_class": int8_class()}
