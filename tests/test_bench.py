"""The speed-up's settle rule (runtime.bench): alternating blocks until both sides settle, or unreliable.

No wall clock here: the callables advance a fake clock by the times each test prescribes, so every
decision is exact and the tests take milliseconds.
"""

import itertools
import math

import pytest

from edgeformer.runtime.bench import BenchResult, SettleRule, judge, stats, time_until_settled

RULE = SettleRule(block_seconds=0.1, min_rounds=3, window=3, max_drift=0.10, max_spread=0.50, max_seconds=5.0)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def side(self, ms_of_call):
        """A callable whose n-th call (warm-up included) takes ms_of_call(n, now) milliseconds."""
        counter = itertools.count()

        def call():
            self.now += ms_of_call(next(counter), self.now) / 1e3
        return call


def settle(clock, fns, rule=RULE):
    return time_until_settled(fns, rule, warmup=1, min_runs=5, clock=clock)


def test_steady_sides_settle_after_the_minimum_rounds():
    clock = FakeClock()
    s = settle(clock, {"runtime": clock.side(lambda n, t: 2.0 + 0.01 * (n % 3)), "eager": clock.side(lambda n, t: 3.0)})
    assert s.reliable and s.verdict.rounds == RULE.min_rounds
    assert s.verdict.stats["eager"].median_ms / s.verdict.stats["runtime"].median_ms == pytest.approx(1.5, rel=0.01)
    assert s.reason.startswith("settled after 3 rounds")


def test_a_burst_of_contention_makes_the_ratio_unreliable():
    """The reported failure: eager's calls land in a burst (fast min, slow median), all through the time limit."""
    clock = FakeClock()
    bursty = clock.side(lambda n, t: 310.0 if n % 3 else 9.3)  # two calls in three are slowed by another job
    s = settle(clock, {"runtime": clock.side(lambda n, t: 4.4), "eager": bursty})
    assert not s.reliable and s.seconds >= RULE.max_seconds
    assert "eager spread" in s.reason and "runtime" not in s.reason.split(":", 1)[1]
    result = BenchResult(1, 128, ["CPUExecutionProvider"], s.verdict.stats["runtime"], s.verdict.stats["eager"],
                         s.reliable, s.reason, s.verdict, s.seconds)
    assert result.speedup > 50  # the number exists, but is never printed as a result
    assert result.speedup_text().startswith("unreliable (eager spread")
    assert result.to_json()["reliable"] is False and result.to_json()["spread_p10_p90_over_median"]["eager"] > 0.5


def test_a_burst_that_passes_is_waited_out_and_left_out_of_the_result():
    """Early rounds under contention, then a quiet machine: timing goes on until the last rounds agree."""
    clock = FakeClock()
    busy_until = 1.0  # seconds on the fake clock
    s = settle(clock, {"runtime": clock.side(lambda n, t: 2.0 * (5 if t < busy_until else 1)),
                       "eager": clock.side(lambda n, t: 3.0 * (20 if t < busy_until and n % 2 else 1))})
    assert s.reliable and s.verdict.rounds > RULE.min_rounds
    assert s.verdict.stats["runtime"].median_ms == pytest.approx(2.0) and s.verdict.stats["eager"].median_ms == pytest.approx(3.0)
    assert s.verdict.stats["eager"].p99_ms == pytest.approx(3.0)  # the burst's calls are outside the judged window


def test_a_drifting_machine_is_unreliable_even_with_tight_blocks():
    """Each block is tight, but the machine slows round after round (another job ramping up)."""
    clock = FakeClock()
    s = settle(clock, {"runtime": clock.side(lambda n, t: 2.0 * math.exp(0.4 * t)), "eager": clock.side(lambda n, t: 3.0)})
    assert not s.reliable and "runtime drift" in s.reason
    assert s.verdict.spread["runtime"] <= RULE.max_spread  # the spread alone would have passed


def test_judge_on_lists_of_times():
    steady = {"a": [1.0, 1.0, 1.1, 1.0], "b": [2.0, 2.1, 2.0, 2.0]}
    assert not judge([steady, steady], RULE).settled  # too few rounds, though nothing failed
    assert judge([steady] * 3, RULE).settled
    slow = {"a": [1.25, 1.25, 1.25, 1.25], "b": steady["b"]}
    v = judge([steady, steady, slow], RULE)  # a's round medians: 1.0, 1.0, 1.25
    assert not v.settled and v.failures == ["a drift 25% > 10%"] and v.short() == "a drift 25%"
    assert judge([slow, steady, steady, steady], RULE).settled  # only the last `window` rounds are judged
    wide = {"a": [1.0] * 3 + [3.0] * 7, "b": steady["b"]}  # 70% of a's calls slowed: the median is in the burst
    assert judge([wide] * 3, RULE).failures == ["a spread 67% > 50%"]


def test_spread_is_reported():
    st = stats([1.0, 2.0, 3.0, 4.0, 5.0])
    assert st.median_ms == 3.0 and st.p25_ms == 2.0 and st.p75_ms == 4.0 and st.iqr_over_median == pytest.approx(2 / 3)
    assert st.p10_ms == pytest.approx(1.4) and st.spread == pytest.approx((4.6 - 1.4) / 3)
    assert st.to_json()["p10_p90_over_median"] == pytest.approx(st.spread) and st.to_json()["iqr_over_median"] < st.spread
