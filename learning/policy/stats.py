"""Statistics shared by the policy learners and the effect evaluation.

Small sample sizes are the normal case here (a step that ran twenty times), so the
intervals are the ones that behave well there: Wilson for a rate, Newcombe's hybrid score
interval for a difference of rates, Fisher's exact test for two rates, Mann-Whitney U for
two duration samples (no normality assumed) and Welch's interval for a difference of
means. Quantiles interpolate linearly between observations and never extrapolate beyond
the largest one, so a p99 of ten runs is at most their maximum.

Invalid arguments (a negative count, more successes than trials, a confidence outside
(0, 1)) raise ``ValueError`` naming the argument.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats as scipy_stats

DEFAULT_QUANTILES: tuple[int, ...] = (50, 95, 99)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")


def _check_counts(successes: int, n: int, what: str = "successes") -> None:
    if n < 0 or successes < 0:
        raise ValueError(f"counts must not be negative ({what}={successes}, n={n})")
    if successes > n:
        raise ValueError(f"{what} ({successes}) cannot exceed the number of trials ({n})")


def z_value(confidence: float) -> float:
    """The two-sided standard-normal quantile of ``confidence`` (1.96 for 0.95)."""
    _check_confidence(confidence)
    return float(scipy_stats.norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the rate ``successes / n``; ``(0, 1)`` when ``n`` is 0."""
    _check_counts(successes, n)
    z = z_value(confidence)
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    lower = 0.0 if successes == 0 else max(0.0, centre - half)
    upper = 1.0 if successes == n else min(1.0, centre + half)
    return lower, upper


def _sorted_values(values: Iterable[float]) -> list[float]:
    ordered = sorted(float(value) for value in values)
    if not ordered:
        raise ValueError("a quantile needs at least one value")
    if any(math.isnan(value) for value in ordered):
        raise ValueError("values must not contain NaN")
    return ordered


def quantile(values: Iterable[float], q: float) -> float:
    """The ``q``-quantile (``0 <= q <= 1``) of ``values`` by linear interpolation between
    order statistics (numpy's default): with one value it is that value, and it never
    exceeds the maximum."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a quantile must be between 0 and 1, got {q}")
    ordered = _sorted_values(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def percentiles(
    values: Iterable[float], points: Sequence[int] = DEFAULT_QUANTILES
) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` (or the requested ``points``) of ``values``."""
    ordered = _sorted_values(values)
    return {f"p{point}": quantile(ordered, point / 100.0) for point in points}


@dataclass(frozen=True, slots=True)
class Summary:
    """Size, mean and quantiles of a sample."""

    n: int
    mean: float
    p50: float
    p95: float
    p99: float
    min: float
    max: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(values: Iterable[float]) -> Summary:
    """The :class:`Summary` of a non-empty sample."""
    ordered = _sorted_values(values)
    marks = percentiles(ordered)
    return Summary(
        n=len(ordered),
        mean=sum(ordered) / len(ordered),
        p50=marks["p50"],
        p95=marks["p95"],
        p99=marks["p99"],
        min=ordered[0],
        max=ordered[-1],
    )


@dataclass(frozen=True, slots=True)
class RateComparison:
    """Two failure rates: each with its Wilson interval, their difference (after minus
    before) with Newcombe's interval, and Fisher's exact two-sided p-value."""

    failures_before: int
    n_before: int
    failures_after: int
    n_after: int
    rate_before: float
    rate_after: float
    interval_before: tuple[float, float]
    interval_after: tuple[float, float]
    difference: float
    difference_interval: tuple[float, float]
    p_value: float
    confidence: float

    @property
    def significant(self) -> bool:
        """Whether the rates differ at the comparison's confidence level."""
        return self.p_value < 1.0 - self.confidence

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["significant"] = self.significant
        for key in ("interval_before", "interval_after", "difference_interval"):
            data[key] = list(data[key])
        return data


def compare_rates(
    fail_before: int,
    n_before: int,
    fail_after: int,
    n_after: int,
    confidence: float = 0.95,
) -> RateComparison:
    """Compare the failure rate before and after a change.

    With no observations on one side the rate there is 0 with interval (0, 1) and the
    p-value is 1 (nothing can be concluded).
    """
    _check_counts(fail_before, n_before, "fail_before")
    _check_counts(fail_after, n_after, "fail_after")
    _check_confidence(confidence)
    rate_before = fail_before / n_before if n_before else 0.0
    rate_after = fail_after / n_after if n_after else 0.0
    low_b, high_b = wilson_interval(fail_before, n_before, confidence)
    low_a, high_a = wilson_interval(fail_after, n_after, confidence)
    difference = rate_after - rate_before
    lower = difference - math.sqrt((rate_after - low_a) ** 2 + (high_b - rate_before) ** 2)
    upper = difference + math.sqrt((high_a - rate_after) ** 2 + (rate_before - low_b) ** 2)
    if n_before and n_after:
        table = [[fail_before, n_before - fail_before], [fail_after, n_after - fail_after]]
        p_value = float(scipy_stats.fisher_exact(table, alternative="two-sided").pvalue)
    else:
        p_value = 1.0
    return RateComparison(
        failures_before=fail_before,
        n_before=n_before,
        failures_after=fail_after,
        n_after=n_after,
        rate_before=rate_before,
        rate_after=rate_after,
        interval_before=(low_b, high_b),
        interval_after=(low_a, high_a),
        difference=difference,
        difference_interval=(max(-1.0, lower), min(1.0, upper)),
        p_value=min(1.0, p_value),
        confidence=confidence,
    )


def mann_whitney_p(before: Sequence[float], after: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value of two samples; 1 when either is empty or every
    value is the same (no evidence of a shift)."""
    if not before or not after:
        return 1.0
    if len(set(before) | set(after)) == 1:
        return 1.0
    result = scipy_stats.mannwhitneyu(before, after, alternative="two-sided")
    p_value = float(result.pvalue)
    return 1.0 if math.isnan(p_value) else min(1.0, p_value)


def mean_difference_interval(
    before: Sequence[float], after: Sequence[float], confidence: float = 0.95
) -> tuple[float, float]:
    """Welch's interval for ``mean(after) - mean(before)``; each sample needs two values."""
    _check_confidence(confidence)
    if len(before) < 2 or len(after) < 2:
        raise ValueError("a mean-difference interval needs at least two values on each side")
    n_b, n_a = len(before), len(after)
    mean_b, mean_a = sum(before) / n_b, sum(after) / n_a
    var_b = sum((x - mean_b) ** 2 for x in before) / (n_b - 1)
    var_a = sum((x - mean_a) ** 2 for x in after) / (n_a - 1)
    difference = mean_a - mean_b
    se_squared = var_b / n_b + var_a / n_a
    if se_squared == 0.0:
        return difference, difference
    freedom = se_squared**2 / ((var_b / n_b) ** 2 / (n_b - 1) + (var_a / n_a) ** 2 / (n_a - 1))
    t = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, freedom))
    half = t * math.sqrt(se_squared)
    return difference - half, difference + half


@dataclass(frozen=True, slots=True)
class DurationComparison:
    """Two samples of a positive quantity (durations, costs): medians and means, the
    ratio of the medians (after / before), Welch's interval for the difference of the
    means (None with fewer than two values on a side) and the Mann-Whitney p-value."""

    n_before: int
    n_after: int
    median_before: float
    median_after: float
    mean_before: float
    mean_after: float
    ratio: float | None  # median_after / median_before; None when median_before is 0
    mean_difference: float
    mean_difference_interval: tuple[float, float] | None
    p_value: float
    confidence: float

    @property
    def significant(self) -> bool:
        """Whether the two samples differ at the comparison's confidence level."""
        return self.p_value < 1.0 - self.confidence

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["significant"] = self.significant
        interval = data["mean_difference_interval"]
        data["mean_difference_interval"] = list(interval) if interval is not None else None
        return data


def compare_durations(
    before: Sequence[float], after: Sequence[float], confidence: float = 0.95
) -> DurationComparison:
    """Compare two non-empty samples of durations (or costs) before and after a change."""
    _check_confidence(confidence)
    if not before or not after:
        raise ValueError("compare_durations needs at least one value before and one after")
    left = [float(value) for value in before]
    right = [float(value) for value in after]
    median_before, median_after = quantile(left, 0.5), quantile(right, 0.5)
    mean_before, mean_after = sum(left) / len(left), sum(right) / len(right)
    interval = (
        mean_difference_interval(left, right, confidence)
        if len(left) >= 2 and len(right) >= 2
        else None
    )
    return DurationComparison(
        n_before=len(left),
        n_after=len(right),
        median_before=median_before,
        median_after=median_after,
        mean_before=mean_before,
        mean_after=mean_after,
        ratio=median_after / median_before if median_before > 0 else None,
        mean_difference=mean_after - mean_before,
        mean_difference_interval=interval,
        p_value=mann_whitney_p(left, right),
        confidence=confidence,
    )
