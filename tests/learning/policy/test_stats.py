"""The statistics behind the learners and the effect evaluation, against known values."""

from __future__ import annotations

import math

import pytest

from learning.policy.stats import (
    compare_durations,
    compare_rates,
    describe,
    mann_whitney_p,
    mean_difference_interval,
    percentiles,
    quantile,
    wilson_interval,
    z_value,
)


def test_z_value_of_common_levels() -> None:
    assert z_value(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert z_value(0.99) == pytest.approx(2.575829, abs=1e-6)


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (0, 10, (0.0, 0.277533)),
        (5, 10, (0.236593, 0.763407)),
        (10, 10, (0.722467, 1.0)),
        (1, 100, (0.001767, 0.054486)),
    ],
)
def test_wilson_interval_matches_published_values(
    successes: int, n: int, expected: tuple[float, float]
) -> None:
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(expected[0], abs=1e-5)
    assert high == pytest.approx(expected[1], abs=1e-5)


def test_wilson_interval_widens_with_confidence_and_narrows_with_n() -> None:
    narrow = wilson_interval(5, 10, confidence=0.80)
    wide = wilson_interval(5, 10, confidence=0.99)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]
    big = wilson_interval(500, 1000)
    assert big[1] - big[0] < narrow[1] - narrow[0]


def test_wilson_interval_without_observations_is_uninformative() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("successes", "n", "confidence"), [(11, 10, 0.95), (-1, 10, 0.95), (1, 10, 1.0)]
)
def test_wilson_interval_rejects_impossible_arguments(
    successes: int, n: int, confidence: float
) -> None:
    with pytest.raises(ValueError):
        wilson_interval(successes, n, confidence)


def test_quantile_interpolates_and_never_exceeds_the_maximum() -> None:
    values = [float(v) for v in range(1, 11)]
    assert quantile(values, 0.5) == pytest.approx(5.5)
    assert quantile(values, 0.0) == 1.0
    assert quantile(values, 1.0) == 10.0
    assert quantile(values, 0.99) == pytest.approx(9.91)
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0  # order does not matter
    assert quantile([7.0], 0.99) == 7.0


def test_quantile_rejects_empty_input_and_bad_levels() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        quantile([], 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        quantile([1.0], 1.5)


def test_percentiles_and_describe() -> None:
    values = [float(v) for v in range(1, 101)]
    marks = percentiles(values)
    assert list(marks) == ["p50", "p95", "p99"]
    assert marks["p50"] == pytest.approx(50.5)
    assert marks["p95"] == pytest.approx(95.05)
    summary = describe(values)
    assert summary.n == 100 and summary.mean == pytest.approx(50.5)
    assert summary.min == 1.0 and summary.max == 100.0
    assert summary.p50 <= summary.p95 <= summary.p99 <= summary.max
    assert summary.to_dict()["p99"] == summary.p99


def test_compare_rates_fisher_and_difference_interval() -> None:
    result = compare_rates(2, 10, 9, 10)
    assert result.rate_before == 0.2 and result.rate_after == 0.9
    assert result.difference == pytest.approx(0.7)
    assert result.p_value == pytest.approx(0.0054775, abs=1e-6)  # Fisher exact, two-sided
    assert result.significant
    low, high = result.difference_interval
    assert 0 < low < 0.7 < high <= 1.0
    assert result.interval_before == wilson_interval(2, 10)
    data = result.to_dict()
    assert data["significant"] is True and data["difference_interval"] == [low, high]


def test_compare_rates_equal_rates_are_not_significant() -> None:
    result = compare_rates(5, 50, 5, 50)
    assert result.difference == 0.0
    assert result.p_value == pytest.approx(1.0)
    assert not result.significant
    low, high = result.difference_interval
    assert low < 0 < high


def test_compare_rates_with_an_empty_side_concludes_nothing() -> None:
    result = compare_rates(0, 0, 3, 10)
    assert result.p_value == 1.0 and not result.significant
    assert result.interval_before == (0.0, 1.0)


def test_compare_durations_detects_a_shift() -> None:
    before = [float(v) for v in range(1, 11)]
    after = [v + 10 for v in before]
    result = compare_durations(before, after)
    assert result.median_before == 5.5 and result.median_after == 15.5
    assert result.ratio == pytest.approx(15.5 / 5.5)
    assert result.p_value < 0.001 and result.significant
    assert result.mean_difference == pytest.approx(10.0)
    assert result.mean_difference_interval is not None
    low, high = result.mean_difference_interval
    assert low < 10.0 < high and low > 0


def test_compare_durations_same_sample_is_not_significant() -> None:
    sample = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    result = compare_durations(sample, list(reversed(sample)))
    assert result.ratio == pytest.approx(1.0)
    assert result.p_value == pytest.approx(1.0)
    assert not result.significant


def test_compare_durations_needs_values_on_both_sides() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        compare_durations([], [1.0])
    single = compare_durations([1.0], [2.0])
    assert single.mean_difference_interval is None


def test_mann_whitney_of_constant_samples_is_one() -> None:
    assert mann_whitney_p([2.0] * 5, [2.0] * 5) == 1.0
    assert mann_whitney_p([], [1.0]) == 1.0


def test_welch_interval_matches_the_textbook_formula() -> None:
    before, after = [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0]
    low, high = mean_difference_interval(before, after)
    # equal variances 5/3 and n=4: se = sqrt(5/6), df = 6, t(0.975, 6) = 2.446912
    half = 2.446912 * math.sqrt(5 / 6)
    assert low == pytest.approx(1.0 - half, abs=1e-5)
    assert high == pytest.approx(1.0 + half, abs=1e-5)
    assert mean_difference_interval([1.0, 1.0], [3.0, 3.0]) == (2.0, 2.0)
    with pytest.raises(ValueError, match="two values"):
        mean_difference_interval([1.0], [1.0, 2.0])
