"""benchmarks/op_profile.py: per-operator time and multiply-adds from onnxruntime's real profiler, on small graphs."""

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from op_profile import matmul_floor, print_profiles, profile_ops  # noqa: E402

RNG = np.random.default_rng(0)


def save(tmp_path, nodes, inputs, outputs, weights=(), opsets=(("", 23),)):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(w, n) for n, w in weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 10
    onnx.checker.check_model(model)
    path = tmp_path / "g.onnx"
    onnx.save(model, path)
    return path


def value(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def test_matmul_time_nodes_and_flops_per_run_leave_the_warm_up_out(tmp_path):
    # x (2, 16, 32) @ w (32, 48) -> relu: one MatMul per run, 2 x 2*16*48*32 flops
    w = RNG.standard_normal((32, 48)).astype(np.float32)
    path = save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                [value("x", [2, 16, 32])], [value("y", [2, 16, 48])], [("w", w)])
    p = profile_ops(path, {"x": RNG.standard_normal((2, 16, 32)).astype(np.float32)}, runs=4, warmup=3)
    assert p.runs == 4
    assert p.ops["MatMul"].nodes == 1 and p.ops["Relu"].nodes == 1
    assert p.ops["MatMul"].gflop == pytest.approx(2 * 2 * 16 * 48 * 32 / 1e9, rel=1e-12)
    assert p.ops["Relu"].gflop == 0
    assert p.matrix_gflop() == p.ops["MatMul"].gflop and p.matrix_ms() == p.ops["MatMul"].ms > 0
    assert p.kernel_ms == pytest.approx(p.ops["MatMul"].ms + p.ops["Relu"].ms, rel=1e-12)


def test_standard_attention_counts_scores_and_weighted_sum(tmp_path):
    # opset-23 Attention on (B, H, S, D) = (2, 4, 16, 8): 2 x 2 x B*H*S*S*D
    q = value("q", [2, 4, 16, 8])
    path = save(tmp_path, [helper.make_node("Attention", ["q", "k", "v"], ["y"])],
                [q, value("k", [2, 4, 16, 8]), value("v", [2, 4, 16, 8])], [value("y", [2, 4, 16, 8])])
    feeds = {n: RNG.standard_normal((2, 4, 16, 8)).astype(np.float32) for n in "qkv"}
    p = profile_ops(path, feeds, runs=2, warmup=1)
    assert p.ops["Attention"].gflop == pytest.approx(4 * 2 * 4 * 16 * 16 * 8 / 1e9, rel=1e-12)


def test_packed_contrib_attention_counts_its_projection_too(tmp_path):
    # com.microsoft Attention: input (1, 16, 32), weights (32, 96) packed, 4 heads, an int32 (B, S, S) mask
    # (as `export --attention packed` writes it): projection + attention
    w, b = RNG.standard_normal((32, 96)).astype(np.float32), np.zeros(96, np.float32)
    node = helper.make_node("Attention", ["x", "w", "b", "mask"], ["y"], domain="com.microsoft", num_heads=4)
    path = save(tmp_path, [node], [value("x", [1, 16, 32]), value("mask", [1, 16, 16], TensorProto.INT32)],
                [value("y", [1, 16, 32])], [("w", w), ("b", b)], opsets=(("", 23), ("com.microsoft", 1)))
    p = profile_ops(path, {"x": RNG.standard_normal((1, 16, 32)).astype(np.float32),
                           "mask": np.ones((1, 16, 16), np.int32)}, runs=2, warmup=1)
    assert p.ops["Attention"].gflop == pytest.approx((2 * 16 * 32 * 96 + 4 * 16 * 16 * 32) / 1e9, rel=1e-12)


def test_floor_is_a_rate_and_the_table_names_every_graph(tmp_path, capsys):
    w = RNG.standard_normal((32, 48)).astype(np.float32)
    path = save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"])], [value("x", [4, 32])], [value("y", [4, 48])],
                [("w", w)])
    floor = matmul_floor(16, 32, 48, threads=2, seconds=0.05)
    assert floor.threads == 2 and floor.all_threads_gflops > 0 and floor.one_thread_gflops > 0
    assert floor.gflops == max(floor.all_threads_gflops, 2 * floor.one_thread_gflops)
    assert floor.ms_for(floor.gflops) == pytest.approx(1e3)
    p = profile_ops(path, {"x": RNG.standard_normal((4, 32)).astype(np.float32)}, runs=2)
    print_profiles({"first graph": p, "second graph": p}, floor)
    out = capsys.readouterr().out
    assert "first graph" in out and "second graph" in out and "MatMul" in out and "x the numpy floor" in out
