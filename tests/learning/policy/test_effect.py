"""The effect evaluation: verdicts on before/after histories whose answer is known."""

from __future__ import annotations

import json

import pytest

from learning.policy.effect import EffectWindow, evaluate_effect
from learning.policy.model import ExecutionRun


def executions(
    n: int,
    *,
    failures: int = 0,
    duration_s: float = 10.0,
    cost: float | None = None,
    version: int = 1,
) -> list[ExecutionRun]:
    """``n`` executions, the first ``failures`` failed, durations spread +-10% around
    ``duration_s`` (cost per run, when given, spread the same way)."""
    runs = []
    for i in range(n):
        spread = 0.9 + ((i * 7) % 10) / 50.0
        runs.append(
            ExecutionRun(
                execution_id=f"x-{version}-{i}",
                playbook_path="tests/crunch",
                playbook_version=version,
                ok=i >= failures,
                duration_s=duration_s * spread,
                cost=None if cost is None else cost * spread,
            )
        )
    return runs


def test_more_failures_after_is_worse() -> None:
    report = evaluate_effect(executions(40, failures=2), executions(40, failures=20, version=2))
    assert report.verdict == "worse"
    assert report.failures.rate_before == 0.05 and report.failures.rate_after == 0.5
    assert report.failures.p_value < 0.001
    assert "worse" in report.summary and "50%" in report.summary


def test_fewer_failures_after_is_better() -> None:
    report = evaluate_effect(executions(40, failures=20), executions(40, failures=1, version=2))
    assert report.verdict == "better"
    assert report.failures.difference < 0


def test_the_same_distribution_is_no_change() -> None:
    report = evaluate_effect(
        executions(30, failures=3, cost=0.01), executions(30, failures=3, cost=0.01, version=2)
    )
    assert report.verdict == "no_change"
    assert report.failures.p_value == pytest.approx(1.0)
    assert report.duration is not None and report.duration.ratio == pytest.approx(1.0)
    assert report.cost is not None and not report.cost.significant
    assert report.summary.startswith("No significant change")


def test_a_small_failure_difference_is_not_significant() -> None:
    report = evaluate_effect(executions(20, failures=1), executions(20, failures=3, version=2))
    assert report.verdict == "no_change"
    assert report.failures.p_value > 0.05


def test_significantly_slower_with_equal_failures_is_worse() -> None:
    report = evaluate_effect(executions(30), executions(30, duration_s=15.0, version=2))
    assert report.verdict == "worse"
    assert report.duration is not None
    assert report.duration.ratio == pytest.approx(1.5)
    assert report.duration.significant
    assert any("median duration rose by 50%" in reason for reason in report.reasons)


def test_a_significant_but_small_slow_down_is_no_change() -> None:
    report = evaluate_effect(executions(200), executions(200, duration_s=10.5, version=2))
    assert report.duration is not None and report.duration.significant
    assert report.verdict == "no_change"  # 5% is below the practical threshold


def test_cheaper_per_run_at_the_same_speed_is_better() -> None:
    report = evaluate_effect(executions(30, cost=0.02), executions(30, cost=0.01, version=2))
    assert report.verdict == "better"
    assert report.cost is not None and report.cost.mean_after < report.cost.mean_before
    assert "mean cost per run fell" in report.summary


def test_faster_but_dearer_is_a_trade_off() -> None:
    report = evaluate_effect(
        executions(30, duration_s=10.0, cost=0.01),
        executions(30, duration_s=4.0, cost=0.03, version=2),
    )
    assert report.verdict == "no_change"
    assert any("trade-off" in reason for reason in report.reasons)
    assert report.summary.startswith("A trade-off")
    assert "median duration fell by 60%" in report.summary
    assert "mean cost per run rose by 200%" in report.summary


def test_no_executions_on_one_side_concludes_nothing() -> None:
    report = evaluate_effect([], executions(10, version=2))
    assert report.verdict == "inconclusive"
    assert report.duration is None and report.cost is None
    assert "no executions before" in report.summary


def test_report_serialises_to_json() -> None:
    report = evaluate_effect(
        executions(30, cost=0.01), executions(30, failures=15, cost=0.01, version=2)
    )
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["verdict"] == "worse"
    assert data["failures"]["n_before"] == 30 and data["failures"]["failures_after"] == 15
    assert len(data["failures"]["interval_after"]) == 2
    assert data["duration"]["n_after"] == 30  # every execution, failed ones too
    assert data["cost"]["n_after"] == 30


def test_a_slow_down_below_the_absolute_floor_is_no_change() -> None:
    # 40 ms -> 60 ms is +50% and significant, but under 0.1 s: the noise of a busy machine
    report = evaluate_effect(
        executions(60, duration_s=0.04), executions(60, duration_s=0.06, version=2)
    )
    assert report.duration is not None and report.duration.significant
    assert report.verdict == "no_change"


def test_the_slow_down_a_proposal_announced_is_not_worse() -> None:
    before, after = executions(30, duration_s=10.0), executions(30, duration_s=12.0, version=2)
    assert evaluate_effect(before, after).verdict == "worse"
    assert evaluate_effect(before, after, expected_seconds=2.5).verdict == "no_change"
    assert evaluate_effect(before, after, expected_seconds=0.5).verdict == "worse"


def test_failed_executions_count_in_the_durations() -> None:
    # the same failures, now failing fast (no useless retries): faster overall
    before = executions(20, duration_s=10.0) + executions(10, failures=10, duration_s=30.0)
    after = executions(20, duration_s=10.0, version=2) + executions(
        10, failures=10, duration_s=1.0, version=2
    )
    report = evaluate_effect(before, after)
    assert report.duration is not None and report.duration.n_before == 30
    assert report.failures.rate_before == report.failures.rate_after


def test_a_window_cut_short_is_named_in_the_verdict() -> None:
    cut = EffectWindow((2,), wanted=20, closed_by="proposal p-1 (retry) was applied as version 3")
    report = evaluate_effect(executions(20), executions(6, failures=6, version=2), window=cut)
    assert report.verdict == "worse" and report.cut_short
    assert "measured on version 2 only" in report.summary
    assert "after 6 of the 20 executions" in report.summary
    assert report.to_dict()["window"]["cut_short"] is True
    # Closed after enough executions, or still open: nothing to say about the window.
    full = evaluate_effect(executions(20), executions(20, version=2), window=cut)
    assert not full.cut_short and "window short" not in full.summary
    open_window = EffectWindow((2, 3), wanted=20)
    report = evaluate_effect(executions(20), executions(6, version=2), window=open_window)
    assert not report.cut_short
    assert report.to_dict()["window"]["versions"] == [2, 3]


def test_too_few_executions_after_a_change_are_inconclusive() -> None:
    before = executions(20)
    one_failure = executions(1, failures=1, version=2)

    report = evaluate_effect(before, one_failure, min_after=5)

    assert report.verdict == "inconclusive"  # one failed run cannot show the change worse
    assert report.summary.startswith("Not measured: 1 execution(s) ran")
    assert evaluate_effect(before, [], min_after=5).verdict == "inconclusive"
    assert evaluate_effect([], executions(20, version=2)).verdict == "inconclusive"
    assert evaluate_effect(before, executions(5, version=2), min_after=5).verdict == "no_change"
