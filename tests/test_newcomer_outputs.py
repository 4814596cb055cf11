"""What a new user reads from the long verbs: `quantize --compare`'s progress and its one timing session
(with unreliable rows flagged), and the debug report's tables and plots."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from edgeformer.cli.main import cli
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
