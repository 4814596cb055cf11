"""How much of the machine a loaded model may ask for: threads, rows per call, and memory per call.

    threads      1 .. the machine's cores (a million threads hangs ONNX Runtime's pool start)
    max_batch    rows per call: the manifest's batch axis maximum, the `max_batch` load option, and
                 what fits the memory budget at the model's longest input, whichever is smallest
    budget       bytes one call may take: half the memory available when the model was loaded
                 (or the `memory_budget` load option); a call's estimate is its inputs and outputs,
                 plus one layer's attention scores and feed-forward activations

A call past a limit is refused with one InputError line before anything is allocated for it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import EdgeformerError, InputError


def machine_cores() -> int:
    return os.cpu_count() or 1


def check_threads(threads: Any) -> int | None:
    """None (ONNX Runtime's default: every core) or an integer in [1, cores]."""
    if threads is None:
        return None
    cores = machine_cores()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= cores:
        raise EdgeformerError(f"threads={threads!r}; this machine has {cores} cores: expected an integer from 1 to {cores}")
    return int(threads)


def available_memory() -> int:
    """Bytes of memory available to new allocations now: MemAvailable on Linux, and no more than what the
    process's address-space limit (`ulimit -v`) or its cgroup's memory limit (a container's cap) leaves."""
    free = _meminfo_available()
    for room in (_address_space_room(), _cgroup_room()):
        if room is not None:
            free = min(free, room)
    return free


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 32


def _address_space_room() -> int | None:
    """RLIMIT_AS less the address space in use (VmSize), or None where there is no such limit."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status") as f:
            used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        return max(0, soft - used)
    except (ImportError, OSError, ValueError, StopIteration):
        return None


def _cgroup_room() -> int | None:
    """cgroup v2's memory.max less memory.current, or None where no limit is set."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((root / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def _positive_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise EdgeformerError(f"{name}={value!r}; expected a positive integer")
    return int(value)


@dataclass(frozen=True)
class Limits:
    max_batch: int  # rows per call
    budget: int  # bytes per call

    def check(self, manifest, sizes: Mapping[str, int]) -> None:
        """Refuse a call of these axis sizes (batch, seq, ...) past the row limit or the memory budget."""
        batch = sizes.get("batch", 1)
        if batch > self.max_batch:
            raise InputError(f"batch of {batch} rows; this model takes at most {self.max_batch} per call "
                             "(split the batch, or raise max_batch when loading)")
        need = estimate_bytes(manifest, sizes)
        if need > self.budget:
            raise InputError(f"a call of {', '.join(f'{k}={v}' for k, v in sizes.items())} needs about "
                             f"{need / 2**20:.0f} MiB; this model's budget is {self.budget / 2**20:.0f} MiB per call "
                             "(use a smaller batch, or raise memory_budget when loading)")


def limits_for(manifest, max_batch: Any = None, memory_budget: Any = None) -> Limits:
    """The limits of a model loaded with these options (see the module docstring)."""
    max_batch, memory_budget = _positive_int("max_batch", max_batch), _positive_int("memory_budget", memory_budget)
    budget = memory_budget or available_memory() // 2
    longest = {axis: int(lim["max"]) for axis, lim in manifest.axes.items() if lim.get("max") is not None}
    per_row = estimate_bytes(manifest, {**longest, "batch": 1})
    rows = [budget // max(per_row, 1)]
    if manifest.axes.get("batch", {}).get("max") is not None:
        rows.append(int(manifest.axes["batch"]["max"]))
    if max_batch is not None:
        rows.append(max_batch)
    return Limits(max(1, min(rows)), budget)


def estimate_bytes(manifest, sizes: Mapping[str, int]) -> int:
    """Bytes a call of these axis sizes holds at once: inputs, outputs, and one layer's activations."""
    sizes = dict(sizes)
    if "total" in manifest.axes and "total" not in sizes:
        sizes["total"] = sizes.get("past", 0) + sizes.get("seq", 1)

    def size(dim):
        return dim if isinstance(dim, int) else sizes.get(dim, 1)

    total = 0
    for spec in list(manifest.inputs) + list(manifest.outputs):
        total += math.prod(size(d) for d in spec.shape) * np.dtype(spec.dtype).itemsize
    config = manifest.model.config
    heads, d_ff = int(config.get("n_heads", 1) or 1), int(config.get("d_ff", 0) or 0)
    rows, seq = sizes.get("batch", 1), sizes.get("seq", 1)
    keys = sizes.get("total", sizes.get("src", seq))
    total += 4 * rows * (heads * seq * keys + seq * d_ff)  # float32 scores and feed-forward activations
    return total


def call_sizes(specs, arrays: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Axis name -> size in a validated call."""
    sizes: dict[str, int] = {}
    for spec in specs:
        for dim, n in zip(spec.shape, arrays[spec.name].shape):
            if isinstance(dim, str):
                sizes.setdefault(dim, int(n))
    return sizes
