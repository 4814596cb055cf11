"""Where a graph's time goes, per operator type, and how far its matrix products are from this CPU's floor.

`profile_ops` runs a graph in an onnxruntime session with its profiler on and sums the kernel time of
each operator type over the timed runs (the profile's "Node" events), with the multiply-adds each
node did, read from the shapes the profiler records. `matmul_floor` times a float32 matrix product
of a transformer's size with numpy (its BLAS) in the same process run: the rate a well-tuned
float32 kernel reaches on this CPU now. `print_profiles` sets the graphs side by side, so the next
gap is visible: which operator costs what, and how many times the floor each graph's matrix
products take.

    from op_profile import matmul_floor, print_profiles, profile_ops   (from a script in benchmarks/)
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgeformer.runtime.sessions import CPU, DISABLED_OPTIMIZERS, create_session

# Operators that are matrix products (their multiply-adds: output elements x the first input's last axis).
MATRIX_OPS = frozenset({"MatMul", "FusedMatMul", "Gemm", "MatMulInteger", "MatMulIntegerToFloat",
                        "DynamicQuantizeMatMul", "QGemm", "QLinearMatMul", "MatMulNBits", "MatMulBnb4"})
# Operators that compute attention scores and their weighted sum (and, for the packed contrib form, the projections).
ATTENTION_OPS = frozenset({"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention"})


@dataclass
class OpTime:
    ms: float = 0.0  # per run
    nodes: float = 0.0  # node executions per run
    gflop: float = 0.0  # per run, 2 x multiply-adds (matrix products and attention only)


@dataclass
class OpProfile:
    """Per-run totals by operator type, over `runs` profiled runs after warm-up."""

    runs: int
    run_ms: float  # median of the profiled runs (the profiler's own overhead included)
    ops: dict[str, OpTime] = field(default_factory=dict)

    @property
    def kernel_ms(self) -> float:
        return sum(o.ms for o in self.ops.values())

    def matrix_ms(self) -> float:
        """Kernel time of matrix products and attention, per run."""
        return sum(o.ms for name, o in self.ops.items() if name in MATRIX_OPS | ATTENTION_OPS)

    def matrix_gflop(self) -> float:
        return sum(o.gflop for o in self.ops.values())

    def to_json(self) -> dict:
        return {"runs": self.runs, "run_ms": self.run_ms, "kernel_ms": self.kernel_ms,
                "matrix_ms": self.matrix_ms(), "matrix_gflop": self.matrix_gflop(),
                "ops": {name: vars(o) for name, o in sorted(self.ops.items(), key=lambda kv: -kv[1].ms)}}


def _dims(entry: Mapping[str, list[int]]) -> list[int]:
    return next(iter(entry.values()))


def node_gflop(op: str, inputs: Sequence[Mapping[str, list[int]]], outputs: Sequence[Mapping[str, list[int]]]) -> float:
    """2 x multiply-adds of one node, from the shapes the profiler recorded (0 for other operators).

    The profiler leaves out constant inputs that a kernel packed in advance (weights), so only the
    first input (activations) and the output are read. Attention with separate query, key and value
    inputs (a float second input of rank 3 or 4): scores and weighted sum, 2 x 2 x batch x heads x
    queries x keys x head size. onnxruntime's packed contrib Attention (one input, its weights or bias
    second, an integer mask after): the query/key/value projection as well.
    """
    if not inputs or not outputs:
        return 0.0
    first, out = _dims(inputs[0]), _dims(outputs[0])
    if op in MATRIX_OPS:
        return 2.0 * float(np.prod(out)) * first[-1] / 1e9
    if op not in ATTENTION_OPS:
        return 0.0
    second = inputs[1] if len(inputs) > 1 else {}
    if second and next(iter(second)).startswith(("float", "bfloat")) and len(_dims(second)) >= 3:
        q, k = first, _dims(second)  # query, key (value) given apart: (B, S, H*D) or (B, H, S, D)
        queries, keys = (q[1], k[1]) if len(q) == 3 else (q[2], k[2])
        width = q[2] if len(q) == 3 else q[1] * q[3]
        return 4.0 * q[0] * queries * keys * width / 1e9
    batch, seq, width_in = first
    width = out[-1]
    return (2.0 * batch * seq * width_in * 3 * width + 4.0 * batch * seq * seq * width) / 1e9


def read_profile(path: str | os.PathLike, skip_runs: int) -> OpProfile:
    """Sum the kernel events of a profile file by operator type, leaving out the first `skip_runs` runs."""
    events = json.loads(Path(path).read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[skip_runs:]
    if not runs:
        raise ValueError(f"{path} holds no model_run after the first {skip_runs}")
    ops: dict[str, OpTime] = {}
    starts = np.array([r[0] for r in runs])
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        i = int(np.searchsorted(starts, e["ts"], side="right")) - 1
        if i < 0 or e["ts"] > runs[i][1]:  # a warm-up run's node
            continue
        args = e.get("args", {})
        op = ops.setdefault(args.get("op_name", "?"), OpTime())
        op.ms += e["dur"] / 1e3
        op.nodes += 1
        op.gflop += node_gflop(args.get("op_name", ""), args.get("input_type_shape", []), args.get("output_type_shape", []))
    for op in ops.values():
        op.ms, op.nodes, op.gflop = op.ms / len(runs), op.nodes / len(runs), op.gflop / len(runs)
    return OpProfile(len(runs), float(np.median([(b - a) / 1e3 for a, b in runs])), ops)


def profile_ops(graph: str | os.PathLike, feeds: Mapping[str, np.ndarray], runs: int = 20, warmup: int = 3,
                threads: int | None = None, disabled_optimizers: Sequence[str] = DISABLED_OPTIMIZERS) -> OpProfile:
    """Run `graph` on `feeds` `warmup` + `runs` times with onnxruntime's profiler, spinning off, on the CPU.

    `disabled_optimizers` as the engine being explained runs it: edgeformer's runtime leaves
    DISABLED_OPTIMIZERS off; pass () for onnxruntime's defaults (what another tool's session gets).
    """
    with tempfile.TemporaryDirectory() as tmp:
        session, _ = create_session(graph, [CPU], threads=threads, disabled_optimizers=disabled_optimizers,
                                    profile_prefix=str(Path(tmp) / "profile"))
        names = {i.name for i in session.get_inputs()}
        feeds = {k: v for k, v in feeds.items() if k in names}
        for _ in range(warmup + runs):
            session.run(None, feeds)
        return read_profile(session.end_profiling(), warmup)


@dataclass
class Floor:
    """numpy's float32 matrix product of (m x k) @ (k x n) on this CPU, in this process run."""

    m: int
    k: int
    n: int
    threads: int
    all_threads_gflops: float  # BLAS on `threads` threads, at its 10th-percentile call
    one_thread_gflops: float  # BLAS on one thread, at its 10th-percentile call
    blas: str  # numpy's BLAS library, where threadpoolctl can tell

    @property
    def gflops(self) -> float:
        """The floor's rate: the better of `threads` threads and one thread's rate times `threads` (perfect scaling).
        A multi-threaded BLAS on cores that other processes share can lose most of its speed waiting for
        its own threads; one thread scaled up stays an honest bound on what the cores can do."""
        return max(self.all_threads_gflops, self.one_thread_gflops * self.threads)

    def ms_for(self, gflop: float) -> float:
        """Milliseconds that `gflop` of float32 matrix products take at the floor's rate."""
        return gflop / self.gflops * 1e3

    def to_json(self) -> dict:
        return {**vars(self), "gflops": self.gflops}


def matmul_floor(m: int = 128, k: int = 384, n: int = 1536, threads: int | None = None, seconds: float = 1.0,
                 rounds: int = 3) -> Floor:
    """Time a float32 (m x k) @ (k x n) with numpy on `threads` threads (default: BLAS's own) and on one,
    in `rounds` alternating blocks of `seconds / rounds / 2` each (at least 30 calls); each side's best
    block at its 10th-percentile call (the CPU's rate when the machine's other work lets it run)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    c = np.empty((m, n), np.float32)

    def rate() -> float:
        for _ in range(10):
            np.matmul(a, b, out=c)
        times, start = [], time.perf_counter()
        while len(times) < 30 or time.perf_counter() - start < seconds / rounds / 2:
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            times.append(time.perf_counter() - t0)
        return 2.0 * m * k * n / float(np.percentile(times, 10)) / 1e9

    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:  # numpy's BLAS threads cannot be set: its own count only
        best = max(rate() for _ in range(rounds))
        return Floor(m, k, n, threads or 1, best, best / (threads or 1), "unknown")
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    threads = threads or (blas[0]["num_threads"] if blas else 1)
    all_threads, one_thread = 0.0, 0.0
    for _ in range(rounds):
        with threadpool_limits(threads, "blas"):
            all_threads = max(all_threads, rate())
        with threadpool_limits(1, "blas"):
            one_thread = max(one_thread, rate())
    return Floor(m, k, n, threads, all_threads, one_thread, ", ".join(i.get("internal_api", "?") for i in blas) or "unknown")


def print_profiles(profiles: Mapping[str, OpProfile], floor: Floor, top: int = 10) -> None:
    """The `top` operator types by time (ms per run, each graph a column), then matrix products against the floor."""
    names = list(profiles)
    width = max(9, *(len(n) for n in names))
    ranked = sorted({op for p in profiles.values() for op in p.ops},
                    key=lambda op: -max(p.ops.get(op, OpTime()).ms for p in profiles.values()))
    print(f"  per-operator kernel time, ms per run ({next(iter(profiles.values())).runs} profiled runs, spinning off):")
    print("  " + f"{'operator':<24}" + "".join(f"{n:>{width + 2}}" for n in names))
    for op in ranked[:top]:
        cells = [profiles[n].ops.get(op) for n in names]
        print("  " + f"{op:<24}" + "".join(f"{c.ms:>{width + 2}.2f}" if c else f"{'-':>{width + 2}}" for c in cells))
    rest = ranked[top:]
    if rest:
        print("  " + f"{'other (' + str(len(rest)) + ' types)':<24}" + "".join(
            f"{sum(profiles[n].ops[op].ms for op in rest if op in profiles[n].ops):>{width + 2}.2f}" for n in names))
    rows = [("kernels, all", lambda p: f"{p.kernel_ms:.2f}"),
            ("run (profiled)", lambda p: f"{p.run_ms:.2f}"),
            ("matrix+attention ms", lambda p: f"{p.matrix_ms():.2f}"),
            ("their GFLOP", lambda p: f"{p.matrix_gflop():.3f}"),
            ("their GFLOP/s", lambda p: f"{p.matrix_gflop() / p.matrix_ms() * 1e3:.0f}" if p.matrix_ms() else "-"),
            ("x the numpy floor", lambda p: f"{p.matrix_ms() / floor.ms_for(p.matrix_gflop()):.2f}x"
                                            if p.matrix_gflop() else "-")]
    for label, cell in rows:
        print("  " + f"{label:<24}" + "".join(f"{cell(profiles[n]):>{width + 2}}" for n in names))
    print(f"  numpy float32 floor: ({floor.m} x {floor.k}) @ ({floor.k} x {floor.n}) at {floor.gflops:.0f} GFLOP/s "
          f"({floor.blas} on {floor.threads} threads: {floor.all_threads_gflops:.0f}; on one: {floor.one_thread_gflops:.0f}); "
          "int8 kernels are held to the same float32 rate")
