"""The one session factory (runtime/sessions.py), the one quiet() and the one output comparison."""

from __future__ import annotations

import logging
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeformer.runtime.compare import max_abs
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.quiet import quiet
from edgeformer.runtime.sessions import OPTIMIZATION_LEVELS, SessionError, create_session, expose_tensors


def matmul_relu(weight: np.ndarray) -> onnx.ModelProto:
    """x @ w -> hidden -> relu -> y: one intermediate tensor, `hidden`."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["hidden"]), helper.make_node("Relu", ["hidden"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_exposed_tensors_are_what_the_graph_computes(batch):
    rng = np.random.default_rng(batch)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    model = matmul_relu(w)
    exposed = expose_tensors(model, ["hidden", "y", "hidden"])
    assert [o.name for o in exposed.graph.output] == ["y", "hidden"]  # no duplicates
    assert [o.name for o in model.graph.output] == ["y"]  # the source graph is left as it was
    session, notes = create_session(exposed.SerializeToString(), optimization="none")
    assert notes == [] and session.get_session_options().graph_optimization_level == OPTIMIZATION_LEVELS["none"]
    x = rng.standard_normal((batch, 5)).astype(np.float32)
    y, hidden = session.run(["y", "hidden"], {"x": x})
    np.testing.assert_allclose(hidden, x @ w, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y, np.maximum(hidden, 0))


def test_session_options_carry_level_threads_and_fusions(tmp_path):
    path = tmp_path / "g.onnx"
    onnx.save(matmul_relu(np.eye(3, dtype=np.float32)), str(path))
    for level, value in OPTIMIZATION_LEVELS.items():
        session, _ = create_session(path, threads=1, optimization=level, disabled_optimizers=())
        options = session.get_session_options()
        assert options.graph_optimization_level == value and options.intra_op_num_threads == 1
    with pytest.raises(EdgeformerError, match="unknown graph optimization level 'fast'; expected one of: none, basic"):
        create_session(path, optimization="fast")


def test_a_graph_onnxruntime_cannot_open_raises_session_error_with_its_reason(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(SessionError, match=r"onnxruntime cannot load .*bad\.onnx: ") as caught:
        create_session(bad)
    assert caught.value.reason and "\n" not in caught.value.reason and caught.value.reason in str(caught.value)


def test_max_abs_nan_rule_and_shapes():
    assert max_abs(np.array([np.nan, 1.0]), np.array([np.nan, 1.5])) == 0.5  # NaN on both sides agrees
    assert max_abs(np.array([np.nan]), np.array([0.0])) == float("inf")  # on one side only: never within a tolerance
    assert max_abs(np.array([0.0]), np.array([np.nan])) == float("inf")
    assert max_abs(np.zeros(2), np.zeros(3)) == float("inf")
    assert max_abs(np.zeros((0, 4)), np.zeros((0, 4))) == 0.0
    a = np.random.default_rng(0).standard_normal((2, 7)).astype(np.float32)
    assert max_abs(a, a.astype(np.float64) + 1e-3) == pytest.approx(1e-3, rel=1e-3)  # in float64, whatever came in


def test_quiet_silences_logs_warnings_and_output_and_restores_them(capsys, caplog):
    tool = logging.getLogger("some.tool")
    tool.setLevel(logging.INFO)
    with quiet():
        tool.warning("progress")
        tool.info("more progress")
        warnings.warn("an optional package is missing")
        print("converting...")
        print("step 3 of 9", file=sys.stderr)
        with quiet():  # nested: the outer silence holds after the inner one ends
            pass
        tool.warning("still quiet")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "" and not caplog.records
    tool.error("after")
    assert [r.getMessage() for r in caplog.records] == ["after"]
    assert logging.root.manager.disable == logging.NOTSET


def test_quiet_lets_errors_through():
    with pytest.raises(ValueError, match="bad graph"), quiet():
        raise ValueError("bad graph")
    assert logging.root.manager.disable == logging.NOTSET
