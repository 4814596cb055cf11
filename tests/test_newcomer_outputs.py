"""What a new user reads from the long verbs: `quantize --compare`'s progress and its one timing session
(with unreliable rows flagged), and the debug report's tables and plots."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from edgeformer.cli.main import cli
from edgeformer.debug import Budget, DebugReport, LayerRow, NodeRow, plot_error_curve
from edgeformer.debug.plot import curve_points, label_lanes
from edgeformer.debug.report import around_table
from edgeformer.cli.quantize_report import COMPARE_COLUMNS, compare_footer, compare_rows
from edgeformer.quantize import Fidelity, QuantizeResult, RECIPES
from edgeformer.quantize.compare import FLOAT, session_rows, time_left, timing_rule
from edgeformer.runtime.bench import Settled, judge


# ------------------------------------------------------------------------------ quantize --compare

def test_compare_times_every_row_in_one_session_and_counts_recipes(encoder_bundle, tmp_path):
    out = tmp_path / "compare.json"
    result = CliRunner().invoke(cli, ["quantize", str(encoder_bundle.path), "--compare", "--smooth-alpha", "0.5",
                                      "--json", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    counter = [line for line in lines if re.match(r"recipe \d+ of \d+: ", line)]
    assert [c.split(":")[0] for c in counter] == [f"recipe {i} of {len(RECIPES)}" for i in range(1, len(RECIPES) + 1)]
    assert counter[0].endswith("(estimate after the first)")
    assert all(c.endswith(" s left)") and "about " in c for c in counter[1:])
    assert any(line.startswith(f"timing {FLOAT} and {len(RECIPES)} recipes") for line in lines)
    rows = json.loads(out.read_text())
    assert [r["recipe"] for r in rows] == list(RECIPES)
    # One session: every row carries the same float32 figure and the same verdict of that session.
    assert len({r["latency_ms"]["float32"] for r in rows}) == 1
    assert len({r["timing"]["session"] for r in rows}) == 1
    assert all(r["latency_ms"]["quantized"] > 0 and r["timing"]["spread_p10_p90_over_median"]["quantized"] >= 0
               for r in rows)
    cells = [line.split("│")[1].strip() for line in lines if line.startswith("│ ")]
    assert cells[0] == "float32" and cells[1:] == list(RECIPES)  # the reference row first, one row each
    assert any(line.startswith("timing: ") and " rounds in " in line for line in lines)


def _result(recipe: str) -> QuantizeResult:
    return QuantizeResult(None, recipe, Fidelity("accuracy", 0.9, 0.89, 0.01, 0.99, 0.95, 0.1), size_ratio=0.3)


def _block(ms: float, wobble: float = 0.0) -> list[float]:
    """Ten calls around `ms`; `wobble` spreads them evenly over +-wobble * ms."""
    return [ms * (1 + wobble * (2 * i / 9 - 1)) for i in range(10)]


def test_an_unsettled_recipe_is_flagged_and_the_others_keep_their_ratio():
    rule = timing_rule(1.0, 3)
    # Three rounds: float32 and int8-dynamic steady; int4's calls spread over +-60% (a busy machine).
    rounds = [{FLOAT: _block(30.0), "int8-dynamic": _block(15.0), "int4": _block(40.0, wobble=0.6)} for _ in range(3)]
    settled = Settled(judge(rounds, rule), 4.2)
    assert not settled.reliable
    rows = session_rows([_result("int8-dynamic"), _result("int4")], settled, rule)
    assert [r.float_ms for r in rows] == [30.0, 30.0]
    assert rows[0].reliable and rows[0].speedup_text() == "2.00x"
    assert not rows[1].reliable and rows[1].speedup_text() == "unreliable"
    assert rows[1].why_unreliable() == "int4: 0.75x is unreliable (int4 spread 96% > 50%)"
    cells = compare_rows(rows)
    assert [c[0] for c in cells] == ["float32", "int8-dynamic", "int4"] and len(cells[0]) == len(COMPARE_COLUMNS)
    assert cells[1][COMPARE_COLUMNS.index("speed-up")] == "2.00x"
    assert cells[2][COMPARE_COLUMNS.index("speed-up")] == "unreliable"
    assert cells[2][COMPARE_COLUMNS.index("spread")] == "96%"
    footer = compare_footer(rows)
    assert footer[0].startswith("timing: not settled after 3 rounds in 4.2 s") and footer[1] == f"  {rows[1].why_unreliable()}"
    assert len(footer) == 3
    assert json.loads(json.dumps(rows[1].to_json()))["timing"]["reliable"] is False


def test_a_float32_side_that_drifts_flags_every_row():
    rule = timing_rule(1.0, 2)
    rounds = [{FLOAT: _block(ms), "fp16": _block(20.0)} for ms in (28.0, 40.0, 61.0)]
    rows = session_rows([_result("fp16")], Settled(judge(rounds, rule), 3.0), rule)
    assert rows[0].speedup_text() == "unreliable" and rows[0].failures[0].startswith("float32 drift")


def test_too_few_rounds_is_unreliable():
    rule = timing_rule(1.0, 2)
    rows = session_rows([_result("fp16")], Settled(judge([{FLOAT: _block(30.0), "fp16": _block(20.0)}], rule), 9.0),
                        rule)
    assert not rows[0].reliable and rows[0].why_unreliable() == "fp16: 1.50x is unreliable (too few rounds)"


@pytest.mark.parametrize("elapsed, done, total, timing, text", [
    (0.0, 0, 4, 12.0, "estimate after the first"),
    (60.0, 1, 4, 12.0, "about 3 min 12 s left"),
    (30.0, 3, 4, 12.0, "about 22 s left"),
])
def test_time_left(elapsed, done, total, timing, text):
    assert time_left(elapsed, done, total, timing) == text


# ------------------------------------------------------------------------------ debug tables and plots

def _row(index: int, op: str, rel: float, input_rel: float) -> NodeRow:
    return NodeRow(index, f"node_{index}", op, f"t{index}", "blocks.0", "Block", "", max_abs=rel, mean_abs=rel, rel=rel,
                   cosine=1.0, input_max_abs=input_rel, input_rel=input_rel, over=False)


def _report(rows: list[NodeRow], worst: NodeRow) -> DebugReport:
    return DebugReport("float graph", Budget(kind="relative"), rows, [], None, worst)


def test_around_the_node_leaves_out_exact_outputs_and_never_prints_infx():
    rows = [_row(0, "Gather", 0.0, 0.0), _row(1, "Cast", 0.0, 0.0), _row(2, "Slice", 0.0, 0.0),
            _row(3, "MatMul", 0.02, 0.01), _row(4, "Cast", 0.0, 0.0), _row(5, "DequantizeLinear", 0.0104, 0.0),
            _row(6, "Slice", 0.0, 0.0), _row(7, "Mul", 0.0104, 0.0104), _row(8, "Add", 0.0085, 0.0104),
            _row(9, "Add", 0.009, 0.0085)]
    report = _report(rows, worst=rows[5])
    assert [r.index for r in report.around()] == [3, 5, 7, 8]
    assert report.exact_left_out() == 2  # the Cast at 4 and the Slice at 6
    which, columns, cells = around_table(report)
    assert which == "around the node that adds the most error; 2 outputs equal to the reference left out"
    jumps = [c[columns.index("jump")] for c in cells]
    assert jumps == ["2x", "inputs exact", "1x", "0.817x"] and not any("inf" in j for j in jumps)
    assert columns[5] == "rel error" and cells[1][5] == "0.0104"
    assert rows[1].jump_cell() == "-"  # exact output of exact inputs


def test_exact_zeros_are_drawn_apart_and_break_the_line():
    values = [0.0, 0.012, 0.0, 0.011, float("inf"), 0.02]
    ys, zeros, broken, bottom, top = curve_points(values)
    assert ys == [None, 0.012, None, 0.011, None, 0.02]  # no invented 1e-12 between the int8 points
    assert zeros == [0, 2] and broken == [4]
    assert bottom == pytest.approx(10 ** -2.5, rel=1e-12) and top == pytest.approx(0.2, rel=1e-12)
    assert curve_points([0.0, 0.0])[3] == 1e-8  # nothing positive: a floor under any budget


def test_stage_labels_take_separate_lanes_when_they_would_overlap():
    # Four names 40 px wide: the second starts before the first ends, the third after it.
    assert label_lanes([0, 30, 50, 60], [40, 40, 40, 40]) == [0, 1, 0, 2]


def test_debug_plot_draws_the_report(tmp_path):
    rows = [_row(i, "MatMul", rel, rel / 2) for i, rel in enumerate([0.0, 0.01, 0.0, 0.012, 0.03])]
    report = DebugReport("float graph", Budget(kind="relative"), rows,
                         [LayerRow(f"blocks.{i}", f"t{i}", 0.01, 0.01, 1.0) for i in range(5)], None, rows[4])
    path = plot_error_curve(report, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
