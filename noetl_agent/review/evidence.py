"""What the review page shows as a proposal's evidence: measured executions before and
after the change, with sample sizes, failure rates and their intervals, and plots.

"Before" are the finished executions of the version the proposal patches; "after" are
those that ran while the change was in force (none while it is pending: the learner's
expected failure rate stands in, marked as expected): the versions the effect
measurement used, stored with its verdict, or before it ran the versions it would use now
(``ProposalService.effect_window``: the version the approval registered and later ones
that still carry the change, up to the next change of the playbook). The numbers come
from the same ``PolicyHistory`` the learners and the effect measurement read, so the page
shows what they saw. The learner's own evidence (counts, rates with intervals, the policy before
and after) is flattened into labelled facts; the similar past failures link to their
executions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from learning.policy.history import PolicyHistory
from learning.policy.model import ExecutionRun
from learning.policy.stats import wilson_interval
from noetl_agent.review import svg

if TYPE_CHECKING:
    from noetl_agent.proposals import ProposalService

CONFIDENCE = 0.95
_INTERVAL_KEYS = {"low", "high"}
VERDICTS = {
    "better": "better",
    "worse": "worse",
    "no_change": "no significant change",
    "inconclusive": "inconclusive: too few executions ran while the change was in force",
}


@dataclass(frozen=True, slots=True)
class Sample:
    """The finished executions of one or more playbook versions."""

    label: str
    versions: tuple[int, ...]
    runs: list[ExecutionRun]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def failures(self) -> int:
        return sum(1 for run in self.runs if not run.ok)

    @property
    def rate(self) -> float:
        return self.failures / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.failures, self.n, CONFIDENCE)

    @property
    def durations(self) -> list[float]:
        """Durations of the successful executions (failures end early or late)."""
        return [run.duration_s for run in self.runs if run.ok]

    @property
    def median_s(self) -> float | None:
        durations = self.durations
        return median(durations) if durations else None


@dataclass(slots=True)
class Evidence:
    """Everything the proposal page shows about why (and whether) the change helps."""

    samples: list[Sample]
    expected_rate: float | None
    facts: list[tuple[str, str]]
    similar: list[dict[str, Any]]
    similar_reason: str | None
    plots: dict[str, Markup] = field(default_factory=dict)
    window: str | None = None  # which versions "after" covers and what closed that span
    verdict: str | None = None  # the measured effect's verdict in words


def _percent(value: Any) -> str:
    return f"{float(value):.1%}" if isinstance(value, int | float) else "?"


def _interval_text(value: Mapping[str, Any]) -> str:
    """``rate (low-high, 95% interval, k of n)`` for an interval dict of the learners."""
    centre = value.get("rate", value.get("p"))
    text = f"{_percent(centre)} ({_percent(value['low'])}-{_percent(value['high'])}"
    confidence = value.get("confidence")
    text += f", {_percent(confidence)} interval" if confidence else " interval"
    if "trials" in value:
        text += f", {value.get('recovered', '?')} of {value['trials']}"
    if "attempts" in value:
        text += f", within {value['attempts']} attempts"
    return text + ")"


def flatten(evidence: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Labelled facts of a learner's evidence: nested keys joined with ``/``, interval
    dicts as one line, lists as comma-separated values (similar failures are left out:
    the page lists them with links)."""
    facts: list[tuple[str, str]] = []
    for key, value in evidence.items():
        if key == "similar_failures" and not prefix:
            continue
        label = f"{prefix} / {key}" if prefix else str(key)
        if isinstance(value, Mapping):
            if set(value) >= _INTERVAL_KEYS:
                facts.append((label, _interval_text(value)))
            else:
                facts.extend(flatten(value, label))
        elif isinstance(value, list):
            facts.append((label, ", ".join(str(item) for item in value) or "none"))
        elif value is None:
            facts.append((label, "n/a"))
        else:
            facts.append((label, str(value)))
    return facts


def _expected_rate(evidence: Mapping[str, Any]) -> float | None:
    expected = evidence.get("expected")
    if isinstance(expected, Mapping):
        value = expected.get("failures_per_100_runs_after")
        if isinstance(value, int | float):
            return float(value) / 100.0
    return None


def versions_label(versions: Sequence[int]) -> str:
    """``v3``, ``v3-v5`` for a run of consecutive versions, else ``v3, v5``."""
    if not versions:
        return "no version"
    if list(versions) == list(range(versions[0], versions[-1] + 1)) and len(versions) > 1:
        return f"v{versions[0]}-v{versions[-1]}"
    return ", ".join(f"v{version}" for version in versions)


def _stored_window(proposal: Mapping[str, Any]) -> tuple[tuple[int, ...], str | None] | None:
    """The versions (and what closed them) the stored effect evaluation measured; an
    evaluation made before windows were recorded measured the applied version alone."""
    evaluation = proposal.get("evaluation")
    if not isinstance(evaluation, Mapping):
        return None
    window = evaluation.get("window")
    if isinstance(window, Mapping) and window.get("versions"):
        closed = window.get("closed_by")
        return tuple(int(v) for v in window["versions"]), str(closed) if closed else None
    applied = proposal.get("applied_version")
    return ((applied,), None) if isinstance(applied, int) else None


async def _after_window(
    proposal: Mapping[str, Any], proposals: ProposalService
) -> tuple[tuple[int, ...], str | None] | None:
    """The versions whose executions are "after", and what closed that span (if anything);
    None while the proposal is not applied."""
    if not isinstance(proposal.get("applied_version"), int):
        return None
    stored = _stored_window(proposal)
    if stored is not None:
        return stored
    window = await proposals.effect_window(str(proposal["id"]))
    return None if window is None else (window.versions, window.closed_by)


def _samples(
    proposal: Mapping[str, Any],
    history: PolicyHistory,
    after: tuple[int, ...] | None,
) -> list[Sample]:
    target = proposal["target"]
    playbook, version = str(target["playbook"]), int(target["version"])
    samples = [
        Sample(f"v{version} (before)", (version,), history.execution_runs(playbook, version))
    ]
    if after:
        runs = [run for v in after for run in history.execution_runs(playbook, v)]
        samples.append(Sample(f"{versions_label(after)} (after)", after, runs))
    return samples


def _window_text(versions: tuple[int, ...], closed_by: str | None) -> str:
    text = (
        f"After: the executions while the change was in force, on "
        f"{'version' if len(versions) == 1 else 'versions'} {versions_label(versions)}"
    )
    return text + (f"; the span ended when {closed_by}." if closed_by else ".")


def verdict_text(evaluation: Any) -> str | None:
    """The verdict of a stored effect evaluation in words (None when not evaluated)."""
    if not isinstance(evaluation, Mapping) or not evaluation.get("verdict"):
        return None
    verdict = str(evaluation["verdict"])
    return VERDICTS.get(verdict, verdict)


def _plots(samples: Sequence[Sample], expected: float | None) -> dict[str, Markup]:
    bars = []
    for sample in samples:
        low, high = sample.interval
        bars.append(svg.RateBar(sample.label, sample.rate, low, high, f"n={sample.n}"))
    if len(samples) == 1 and expected is not None:
        bars.append(svg.RateBar("expected after", expected, expected, expected, "learner"))
    return {
        "outcomes": Markup(
            svg.outcome_strip(
                [(s.label, [run.ok for run in s.runs]) for s in samples],
                "Executions in order: failures in red",
            )
        ),
        "rates": Markup(svg.rate_bars(bars, f"Failure rate with {CONFIDENCE:.0%} intervals")),
        "durations": Markup(
            svg.duration_strip(
                [(s.label, s.durations) for s in samples],
                "Durations of successful executions, median marked",
            )
        ),
    }


async def gather(proposal: Mapping[str, Any], proposals: ProposalService) -> Evidence:
    """The evidence of ``proposal`` (a dict of ``proposals``), reading new events into its
    execution history first."""
    history = proposals.runs
    await history.refresh()
    window = await _after_window(proposal, proposals)
    samples = _samples(proposal, history, window[0] if window else None)
    evidence = proposal.get("evidence") or {}
    expected = _expected_rate(evidence)
    similar_block = evidence.get("similar_failures")
    similar: list[dict[str, Any]] = []
    reason: str | None = "the learner recorded no search for similar failures"
    if isinstance(similar_block, Mapping):
        if similar_block.get("available"):
            similar = [dict(hit) for hit in similar_block.get("hits") or []]
            reason = None if similar else "the search index found no similar failure"
        else:
            reason = str(similar_block.get("reason") or "the search index was not available")
    return Evidence(
        samples=samples,
        expected_rate=expected,
        facts=flatten(evidence),
        similar=similar,
        similar_reason=reason,
        plots=_plots(samples, expected),
        window=_window_text(*window) if window else None,
        verdict=verdict_text(proposal.get("evaluation")),
    )
