"""The measured effect of an applied change: executions before against executions after.

``evaluate_effect`` compares the failure rate (Wilson intervals, Fisher's exact test),
the duration of every execution (medians, Mann-Whitney U) and, when the pools
declare a price, the cost per execution (means, Mann-Whitney U). The verdict is
``worse`` only when a difference is significant at the confidence level in the bad
direction: the failure rate went up, or it did not change significantly and duration or
cost went up significantly by more than the practical threshold (10% by default).
``better`` is the mirror image. A significant gain in one of duration and cost with a
significant loss in the other is a trade-off, reported as ``no_change``: the change did
what it was meant to, at a price that was visible in its proposal.

The executions "after" are those that ran while the change was in force: on the version it
created and on later versions that still carry it, up to the version the next change of
the same playbook created (``EffectWindow``). When a later change (or a version registered
without this one) closes that window before enough executions ran, the change is measured
on what did run, and the verdict says that the window was cut short and by what.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from learning.policy.model import ExecutionRun
from learning.policy.stats import (
    DurationComparison,
    RateComparison,
    compare_durations,
    compare_rates,
)

Verdict = Literal["better", "worse", "no_change", "inconclusive"]
PRACTICAL_THRESHOLD = 0.10  # a relative change of duration or cost smaller than this is noise
MIN_SECONDS = 0.1  # a change of the median duration smaller than this is noise
MIN_JUDGED = 5  # executions a change must have had in force before it is judged at all


@dataclass(frozen=True, slots=True)
class EffectWindow:
    """The catalog versions on which a change was in force, and what ended that span.

    ``versions`` are the versions whose executions count as "after" (the one the change
    created first); ``closed_by`` says what ended the span early (a later change's
    version, or a version registered without the change), None while it is open;
    ``wanted`` is how many executions the evaluation waits for when nothing cuts it."""

    versions: tuple[int, ...]
    wanted: int
    closed_by: str | None = None
    closed_at_version: int | None = None

    @property
    def closed(self) -> bool:
        return self.closed_by is not None

    def cut_short(self, executions: int) -> bool:
        """Whether the window closed before ``executions`` reached ``wanted``."""
        return self.closed and executions < self.wanted

    def describe(self, executions: int) -> str:
        span = _versions_text(self.versions)
        if not self.cut_short(executions):
            return f"measured on {span}"
        return (
            f"measured on {span} only: {self.closed_by} after {executions} of the "
            f"{self.wanted} executions the measurement waits for, which cut the window short"
        )

    def to_dict(self, executions: int) -> dict[str, Any]:
        return {
            "versions": list(self.versions),
            "wanted": self.wanted,
            "closed_by": self.closed_by,
            "closed_at_version": self.closed_at_version,
            "cut_short": self.cut_short(executions),
        }


def _versions_text(versions: Sequence[int]) -> str:
    if not versions:
        return "no version"
    if len(versions) == 1:
        return f"version {versions[0]}"
    if list(versions) == list(range(versions[0], versions[-1] + 1)):
        return f"versions {versions[0]}-{versions[-1]}"
    return "versions " + ", ".join(str(v) for v in versions)


@dataclass(frozen=True, slots=True)
class EffectReport:
    """The before/after comparison of one change and its verdict."""

    n_before: int
    n_after: int
    failures: RateComparison
    duration: DurationComparison | None  # all executions; None when a side has none
    cost: DurationComparison | None  # executions with a known cost; None when unknown
    verdict: Verdict
    summary: str
    confidence: float
    reasons: list[str] = field(default_factory=list)
    window: EffectWindow | None = None

    @property
    def cut_short(self) -> bool:
        """Whether a later change closed the window before enough executions ran."""
        return self.window is not None and self.window.cut_short(self.n_after)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_before": self.n_before,
            "n_after": self.n_after,
            "failures": self.failures.to_dict(),
            "duration": self.duration.to_dict() if self.duration is not None else None,
            "cost": self.cost.to_dict() if self.cost is not None else None,
            "verdict": self.verdict,
            "summary": self.summary,
            "confidence": self.confidence,
            "reasons": list(self.reasons),
            "window": self.window.to_dict(self.n_after) if self.window is not None else None,
        }


def _relative_change(comparison: DurationComparison, *, use_mean: bool) -> float | None:
    """after / before - 1 of the medians (durations) or means (costs)."""
    before = comparison.mean_before if use_mean else comparison.median_before
    after = comparison.mean_after if use_mean else comparison.median_after
    if before <= 0:
        return None
    return after / before - 1.0


def _direction(
    comparison: DurationComparison | None,
    *,
    use_mean: bool,
    threshold: float,
    slack: float = 0.0,
    allowance: float | None = None,
) -> tuple[int, float | None]:
    """+1 significantly up, -1 significantly down, 0 otherwise.

    A move counts when it is significant, larger than ``threshold`` relative to before
    and larger than ``slack`` in absolute terms; a rise must also exceed ``allowance``,
    the rise the proposal announced (a retry buys fewer failures with seconds, a cheaper
    pool may be slower: getting what was announced is not getting worse)."""
    if comparison is None or not comparison.significant:
        return 0, None
    change = _relative_change(comparison, use_mean=use_mean)
    if change is None:
        return 0, None
    before = comparison.mean_before if use_mean else comparison.median_before
    after = comparison.mean_after if use_mean else comparison.median_after
    moved = after - before
    if change > threshold and moved > slack + max(0.0, allowance or 0.0):
        return 1, change
    if change < -threshold and -moved > slack:
        return -1, change
    return 0, change


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def evaluate_effect(
    before: Sequence[ExecutionRun],
    after: Sequence[ExecutionRun],
    *,
    confidence: float = 0.95,
    practical_threshold: float = PRACTICAL_THRESHOLD,
    min_seconds: float = MIN_SECONDS,
    expected_seconds: float | None = None,
    expected_cost: float | None = None,
    window: EffectWindow | None = None,
    min_after: int = 1,
) -> EffectReport:
    """Compare ``before`` (executions of the version a change was applied to) with
    ``after`` (executions of the new version) and give a verdict with a summary.

    Durations are those of every execution, failed ones included: a change that makes
    failures fail faster (no more useless retries) shows there. A duration moves only by
    more than ``min_seconds`` (shared machines wobble by tens of milliseconds), and a rise
    up to ``expected_seconds`` / ``expected_cost`` per run, what the proposal announced,
    is not held against it. ``window``, the versions ``after`` was taken from, goes into
    the report; when it was cut short, the summary says so. With no execution before, or
    fewer than ``min_after`` after (a window a later change closed early), the verdict is
    ``inconclusive``: too little ran to judge the change either way."""
    fail_before = sum(1 for run in before if not run.ok)
    fail_after = sum(1 for run in after if not run.ok)
    failures = compare_rates(fail_before, len(before), fail_after, len(after), confidence)

    durations_before = [run.duration_s for run in before]
    durations_after = [run.duration_s for run in after]
    duration = (
        compare_durations(durations_before, durations_after, confidence)
        if durations_before and durations_after
        else None
    )
    cost_before = [run.cost for run in before if run.cost is not None]
    cost_after = [run.cost for run in after if run.cost is not None]
    cost = (
        compare_durations(cost_before, cost_after, confidence)
        if cost_before and cost_after
        else None
    )

    reasons: list[str] = []
    level = _percent(confidence)
    verdict: Verdict = "no_change"
    if not before or len(after) < max(min_after, 1):
        verdict = "inconclusive"
        reasons.append(
            "no executions before the change"
            if not before
            else f"{len(after)} execution(s) ran while the change was in force, fewer than "
            f"the {max(min_after, 1)} needed to judge it"
        )
    elif failures.significant:
        verdict = "worse" if failures.difference > 0 else "better"
        reasons.append(
            f"failure rate {'rose' if verdict == 'worse' else 'fell'} from "
            f"{_percent(failures.rate_before)} to {_percent(failures.rate_after)} "
            f"(Fisher p={failures.p_value:.3g})"
        )
    else:
        duration_dir, duration_change = _direction(
            duration,
            use_mean=False,
            threshold=practical_threshold,
            slack=min_seconds,
            allowance=expected_seconds,
        )
        cost_dir, cost_change = _direction(
            cost, use_mean=True, threshold=practical_threshold, allowance=expected_cost
        )
        for name, direction, change, comparison in (
            ("median duration", duration_dir, duration_change, duration),
            ("mean cost per run", cost_dir, cost_change, cost),
        ):
            if direction and change is not None and comparison is not None:
                reasons.append(
                    f"{name} {'rose' if direction > 0 else 'fell'} by {_percent(abs(change))} "
                    f"(Mann-Whitney p={comparison.p_value:.3g})"
                )
        directions = {duration_dir, cost_dir} - {0}
        if directions == {1}:
            verdict = "worse"
        elif directions == {-1}:
            verdict = "better"
        elif directions == {1, -1}:
            reasons.append("duration and cost moved in opposite directions: a trade-off")
    summary = _summary(verdict, failures, duration, cost, reasons, level)
    if window is not None and window.cut_short(len(after)):
        summary += f" The change was {window.describe(len(after))}."
    return EffectReport(
        n_before=len(before),
        n_after=len(after),
        failures=failures,
        duration=duration,
        cost=cost,
        verdict=verdict,
        summary=summary,
        confidence=confidence,
        reasons=reasons,
        window=window,
    )


def _summary(
    verdict: Verdict,
    failures: RateComparison,
    duration: DurationComparison | None,
    cost: DurationComparison | None,
    reasons: list[str],
    level: str,
) -> str:
    """One plain-language sentence (two at most) on what changed."""
    facts = [
        f"failure rate {_percent(failures.rate_before)} -> {_percent(failures.rate_after)} "
        f"over {failures.n_before} and {failures.n_after} executions"
    ]
    if duration is not None:
        facts.append(
            f"median duration {duration.median_before:.3g}s -> {duration.median_after:.3g}s"
        )
    if cost is not None:
        facts.append(f"mean cost per run {cost.mean_before:.4g} -> {cost.mean_after:.4g}")
    measured = "; ".join(facts)
    if verdict == "inconclusive":
        return f"Not measured: {reasons[0]} ({measured})."
    if verdict == "no_change":
        if len(reasons) > 1:  # significant moves in opposite directions
            return f"A trade-off at {level} confidence: {'; '.join(reasons)} ({measured})."
        why = f" ({reasons[0]})" if reasons else ""
        return f"No significant change at {level} confidence{why}: {measured}."
    word = "better" if verdict == "better" else "worse"
    return (
        f"The change made things {word} at {level} confidence: {'; '.join(reasons)} ({measured})."
    )
