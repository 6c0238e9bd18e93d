"""The paired t-test of per-query metrics: scipy's numbers, a hand-checked interval, and a
message instead of NaN where the test is undefined."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from brainrank.ranker.evaluation_stats import PairedTest, paired_t_test


def test_p_value_is_scipys_ttest_rel_on_the_same_numbers():
    rng = np.random.default_rng(7)
    a = rng.uniform(0, 1, 40)
    b = np.clip(a + rng.normal(0.03, 0.1, 40), 0, 1)
    got = paired_t_test(a, b)
    expected = stats.ttest_rel(b, a)
    assert got.p == expected.pvalue  # the same function on the same numbers: equal, not close
    assert got.t == expected.statistic
    assert got.df == 39 and got.n == 40 and got.note == ""
    assert got.mean_delta == pytest.approx(float(np.mean(b - a)))
    assert (got.mean_a, got.mean_b) == pytest.approx((a.mean(), b.mean()))
    ci = expected.confidence_interval(0.95)
    assert (got.ci_low, got.ci_high) == pytest.approx((ci.low, ci.high))


def test_interval_by_hand():
    # Differences 1, 2, 3, 6: mean 3, sample variance ((-2)² + (-1)² + 0² + 3²) / 3 = 14/3.
    a = [0.0, 0.0, 0.0, 0.0]
    b = [1.0, 2.0, 3.0, 6.0]
    got = paired_t_test(a, b, confidence=0.95)
    half = 3.182446305284263 * math.sqrt(14 / 3) / math.sqrt(4)  # t(0.975, 3) · sd / √n
    assert got.mean_delta == 3.0
    assert got.ci_low == pytest.approx(3.0 - half, abs=1e-12)
    assert got.ci_high == pytest.approx(3.0 + half, abs=1e-12)
    assert got.t == pytest.approx(3.0 / (math.sqrt(14 / 3) / 2))
    # 90%: t(0.95, 3) = 2.353363434801823
    narrower = paired_t_test(a, b, confidence=0.90)
    assert narrower.ci_high == pytest.approx(3.0 + 2.353363434801823 * math.sqrt(14 / 3) / 2)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([], [], "at least 2 queries; there are 0 queries"),
        ([0.5], [0.7], "at least 2 queries; there is 1 query"),
        ([0.2, 0.4, 0.9], [0.2, 0.4, 0.9], "A and B score the same on all 3 queries"),
        ([0.2, 0.4, 0.5], [0.3, 0.5, 0.6], "B - A is +0.1000 on every one of the 3 queries"),
    ],
)
def test_undefined_tests_say_why_instead_of_nan(a, b, message):
    got = paired_t_test(a, b)
    assert message in got.note
    assert got.p is None and got.t is None and got.ci_low is None and got.ci_high is None
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in vars(got).values())


def test_bad_input_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="equal length"):
        paired_t_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        paired_t_test([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_t_test([1.0, 2.0], [1.0, 3.0], confidence=95)


def test_round_trips_through_a_dict():
    got = paired_t_test([0.1, 0.5, 0.3], [0.2, 0.4, 0.9])
    assert PairedTest.from_dict(got.to_dict()) == got
    undefined = paired_t_test([0.1], [0.2])
    assert PairedTest.from_dict(undefined.to_dict()) == undefined
