"""The hardware / resource learner: where a step runs, how long it may take, how parallel.

``hardware_proposals`` reads the tool runs and loop runs of one playbook and proposes,
per step of the target version:

- **pool**: move the step to the worker pool with the lowest expected cost per run
  (mean duration x the pool's ``cost_per_hour`` / 3600) whose p95 duration stays within
  the latency objective (``LearnerConfig.latency_objective_s``; by default the current
  pool's observed p95 plus 10% for sampling noise). ``latency_weight`` blends cost with
  duration (1: the fastest pool). A move needs ``min_samples`` runs on both pools, a gain
  of at least 5% that is significant (Mann-Whitney U on the per-run scores) and no
  significantly higher failure rate. A pool without observations is never proposed.
- **timeout**: raise ``spec.timeout`` when attempts time out while the successful
  attempts' p99 is at or above 80% of it (the timeout is too tight, not the tool stuck).
  Add one when none is set only when the history shows runs it would have stopped:
  attempts that ended without success (timed out at the tool's own limit, cancelled,
  failed) after running longer than the proposed limit, i.e. longer than every successful
  attempt (with twice ``min_samples`` successes). A step whose runs all end within their
  usual time gets no timeout proposal. The step timeout limits each attempt of each tool
  of the step, and a tool's own timeout only that tool: in a tool pipeline, an attempt
  counts only for the time spent in the tools without an own timeout at or below the
  limit (see ``_overrun``), so a step whose every tool stops itself that soon gets no
  proposal either. The value is the successful p99 x ``timeout_margin``, rounded up,
  never below the slowest success.
- **max_in_flight**: from parallel loops, the speed-up ``busy_s / wall_s`` against the
  configured limit: near-linear (>= 80% efficient) with more iterations than the limit ->
  double it (capped at the typical iteration count); far below (<= 50%) -> lower it to
  ceil(p90 speed-up) + 1, which frees slots at the same wall time.

Steps that do no work of their own on a worker (``approval``, ``playbook``, ``noop``) are
not moved between pools; approval and noop steps get no timeout proposals.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.dsl.models import Runtime, Step, parse_duration
from learning.policy.model import (
    Attempt,
    LearnerConfig,
    LoopRun,
    PlaybookVersion,
    ProposalDraft,
    ProposalKind,
    Target,
    ToolRun,
)
from learning.policy.patch import pointer
from learning.policy.stats import (
    compare_rates,
    describe,
    mann_whitney_p,
    quantile,
    wilson_interval,
)

LEARNER = "hardware"
DEFAULT_POOL = Runtime().pool  # the pool a step without spec.runtime runs on
OBJECTIVE_TOLERANCE = 0.10  # the default latency objective allows this much noise
PRACTICAL_GAIN = 0.05  # a pool move must lower the expected score at least this much
TIGHT_TIMEOUT = 0.8  # successful p99 at or above this fraction of the timeout: too tight
MIN_RAISE = 1.25  # a raised timeout is at least this multiple of the current one
LINEAR_EFFICIENCY = 0.8  # speed-up / max_in_flight at or above this: scaling is linear
SATURATED_EFFICIENCY = 0.5  # at or below this: the loop is saturated
TIMEOUT_CLASS = "timeout"
CANCELLED_CLASS = "cancelled"
# Steps whose duration is not work done on the worker they run on: a human's decision
# (approval) or the steps of a sub-playbook and nothing at all (noop) are not moved.
NOT_MOVED = frozenset({"approval", "playbook", "noop"})
NOT_TIMED = frozenset({"approval", "noop"})  # an approval has its own timeout and on_timeout


def hardware_proposals(
    runs: Sequence[ToolRun],
    loops: Sequence[LoopRun],
    version: PlaybookVersion,
    config: LearnerConfig | None = None,
) -> list[ProposalDraft]:
    """Pool, timeout and max_in_flight proposals for the steps of ``version``, learnt from
    the runs of its playbook (all versions: a step's speed on a pool does not depend on
    the version that ran it; timeouts and loop limits are judged on runs configured like
    ``version``)."""
    config = config or LearnerConfig()
    by_step: dict[str, list[ToolRun]] = defaultdict(list)
    for run in runs:
        if run.playbook_path == version.path:
            by_step[run.step].append(run)
    loops_by_step: dict[str, list[LoopRun]] = defaultdict(list)
    for loop in loops:
        if loop.playbook_path == version.path:
            loops_by_step[loop.step].append(loop)
    drafts: list[ProposalDraft] = []
    for index, step in enumerate(version.playbook.workflow):
        step_runs = by_step.get(step.step, [])
        kinds = {tool.kind for tool in step.tools}
        learners = []
        if not kinds & NOT_MOVED:
            learners.append(_pool_proposal)
        if not kinds & NOT_TIMED:
            learners.append(_timeout_proposal)
        for learn in learners if step_runs else []:
            draft = learn(step, index, step_runs, version, config)
            if draft is not None:
                drafts.append(draft)
        step_loops = loops_by_step.get(step.step, [])
        if step_loops and step.loop is not None:
            draft = _loop_proposal(step, index, step_loops, version, config)
            if draft is not None:
                drafts.append(draft)
    return drafts


# --- patches ---------------------------------------------------------------------------


def _set_ops(
    document: Mapping[str, Any], index: int, keys: Sequence[str], value: Any
) -> list[dict[str, Any]]:
    """The JSON-patch that sets ``workflow[index].<keys>`` to ``value``: ``replace`` when
    the key is there, else ``add`` of the smallest missing map (``spec: {runtime: ...}``)."""
    node: Any = document["workflow"][index]
    prefix: list[str | int] = ["workflow", index]
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        present = isinstance(node, Mapping) and key in node
        if last or not present or not isinstance(node[key], Mapping):
            nested: Any = value
            for inner in reversed(keys[depth + 1 :]):
                nested = {inner: nested}
            op = "replace" if present else "add"
            return [{"op": op, "path": pointer(*prefix, key), "value": nested}]
        node = node[key]
        prefix.append(key)
    raise ValueError("keys must not be empty")


def _draft(
    version: PlaybookVersion,
    step: Step,
    kind: ProposalKind,
    patch: list[dict[str, Any]],
    evidence: dict[str, Any],
    rationale: str,
    size: int,
    notes: list[str],
) -> ProposalDraft:
    return ProposalDraft(
        target=Target(playbook=version.path, version=version.version, step=step.step),
        kind=kind,
        patch=patch,
        evidence=evidence,
        rationale=rationale,
        evidence_size=size,
        learner=LEARNER,
        notes=notes,
    )


def _interval(low_high: tuple[float, float]) -> list[float]:
    return [round(low_high[0], 6), round(low_high[1], 6)]


# --- pools -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PoolSample:
    """The runs of one step on one pool."""

    name: str
    durations: list[float]
    failures: int
    cost_per_hour: float | None
    cpu_ms: list[float]
    peak_rss_kb: list[float]

    @property
    def n(self) -> int:
        return len(self.durations)

    def costs(self) -> list[float] | None:
        if self.cost_per_hour is None:
            return None
        return [d * self.cost_per_hour / 3600.0 for d in self.durations]

    def evidence(self, confidence: float) -> dict[str, Any]:
        summary = describe(self.durations)
        costs = self.costs()
        data: dict[str, Any] = {
            "n": self.n,
            "failures": self.failures,
            "failure_rate": self.failures / self.n,
            "failure_interval": _interval(wilson_interval(self.failures, self.n, confidence)),
            "mean_s": summary.mean,
            "p50_s": summary.p50,
            "p95_s": summary.p95,
            "p99_s": summary.p99,
            "cost_per_hour": self.cost_per_hour,
            "cost_per_run": sum(costs) / len(costs) if costs else None,
            "cpu_ms_mean": sum(self.cpu_ms) / len(self.cpu_ms) if self.cpu_ms else None,
            "peak_rss_kb_p95": quantile(self.peak_rss_kb, 0.95) if self.peak_rss_kb else None,
        }
        return data


def _current_pool(step: Step) -> str:
    if step.spec is not None and step.spec.runtime is not None:
        return step.spec.runtime.pool
    return DEFAULT_POOL


def _pool_samples(
    runs: Sequence[ToolRun], prices: Mapping[str, float | None]
) -> dict[str, _PoolSample]:
    grouped: dict[str, list[ToolRun]] = defaultdict(list)
    for run in runs:
        if run.pool is not None:
            grouped[run.pool].append(run)
    return {
        name: _PoolSample(
            name=name,
            durations=[run.duration_s for run in members],
            failures=sum(1 for run in members if not run.ok),
            cost_per_hour=prices.get(name),
            cpu_ms=[run.cpu_ms for run in members if run.cpu_ms is not None],
            peak_rss_kb=[float(run.peak_rss_kb) for run in members if run.peak_rss_kb is not None],
        )
        for name, members in grouped.items()
    }


def _pool_proposal(
    step: Step,
    index: int,
    runs: Sequence[ToolRun],
    version: PlaybookVersion,
    config: LearnerConfig,
) -> ProposalDraft | None:
    prices = {pool.name: pool.cost_per_hour for pool in version.playbook.pools}
    samples = _pool_samples(runs, prices)
    current_name = _current_pool(step)
    current = samples.get(current_name)
    notes: list[str] = []
    if current is None or current.n < config.min_samples:
        return None  # no baseline to compare against
    weight = min(1.0, max(0.0, config.latency_weight))
    needs_price = weight < 1.0
    if needs_price and current.cost_per_hour is None:
        return None  # cost cannot be compared: the current pool declares no price
    unobserved = sorted(name for name in prices if name not in samples)
    if unobserved:
        notes.append(f"pools without observations, not proposed: {', '.join(unobserved)}")
    candidates: list[_PoolSample] = []
    for name, sample in sorted(samples.items()):
        if name == current_name:
            continue
        if sample.n < config.min_samples:
            notes.append(
                f"pool '{name}' has {sample.n} runs (< {config.min_samples}): not proposed"
            )
        elif needs_price and sample.cost_per_hour is None:
            notes.append(f"pool '{name}' declares no cost_per_hour: not proposed")
        else:
            candidates.append(sample)
    if not candidates:
        return None

    current_summary = describe(current.durations)
    if config.latency_objective_s is not None:
        objective = config.latency_objective_s
    else:
        objective = current_summary.p95 * (1.0 + OBJECTIVE_TOLERANCE)
    alpha = 1.0 - config.confidence
    mean_duration = current_summary.mean or 1.0
    current_costs = current.costs() or []
    mean_cost = (sum(current_costs) / len(current_costs)) if current_costs else 0.0
    cost_scale = mean_cost if mean_cost > 0 else 1.0

    def scores(sample: _PoolSample) -> list[float]:
        costs = sample.costs() or [0.0] * sample.n
        return [
            (1.0 - weight) * cost / cost_scale + weight * duration / mean_duration
            for cost, duration in zip(costs, sample.durations, strict=True)
        ]

    current_scores = scores(current)
    current_score = sum(current_scores) / len(current_scores)
    current_within = current_summary.p95 <= objective
    best: tuple[float, _PoolSample, float] | None = None
    for sample in candidates:
        summary = describe(sample.durations)
        if summary.p95 > objective:
            notes.append(
                f"pool '{sample.name}' p95 {summary.p95:.3g}s exceeds the latency objective "
                f"{objective:.3g}s"
            )
            continue
        failure_test = compare_rates(
            current.failures, current.n, sample.failures, sample.n, config.confidence
        )
        if failure_test.significant and failure_test.difference > 0:
            notes.append(f"pool '{sample.name}' fails significantly more often")
            continue
        candidate_scores = scores(sample)
        score = sum(candidate_scores) / len(candidate_scores)
        p_value = mann_whitney_p(current_scores, candidate_scores)
        if current_within and (score > current_score * (1.0 - PRACTICAL_GAIN) or p_value >= alpha):
            continue
        if best is None or score < best[0]:
            best = (score, sample, p_value)
    if best is None:
        return None
    score, chosen, p_value = best

    chosen_summary = describe(chosen.durations)
    chosen_costs = chosen.costs()
    expected: dict[str, Any] = {
        "seconds_per_run": chosen_summary.mean - current_summary.mean,
        "failures_per_run": chosen.failures / chosen.n - current.failures / current.n,
        "cost_per_run": (
            sum(chosen_costs) / len(chosen_costs) - mean_cost
            if chosen_costs is not None and current.cost_per_hour is not None
            else None
        ),
    }
    evidence: dict[str, Any] = {
        "current_pool": current_name,
        "proposed_pool": chosen.name,
        "latency_objective_s": objective,
        "latency_weight": weight,
        "pools": {
            name: sample.evidence(config.confidence) for name, sample in sorted(samples.items())
        },
        "score": {"current": current_score, "proposed": score, "p_value": p_value},
        "expected": expected,
    }
    patch = _set_ops(version.document, index, ["spec", "runtime", "pool"], chosen.name)
    rationale = _pool_rationale(
        step.step,
        current_name,
        chosen.name,
        current_summary.p95,
        chosen_summary.p95,
        objective,
        expected,
        current_within,
        weight,
    )
    return _draft(version, step, "pool", patch, evidence, rationale, current.n + chosen.n, notes)


def _pool_rationale(
    step: str,
    current: str,
    chosen: str,
    current_p95: float,
    chosen_p95: float,
    objective: float,
    expected: Mapping[str, Any],
    current_within: bool,
    weight: float,
) -> str:
    seconds = expected["seconds_per_run"]
    cost = expected["cost_per_run"]
    change = f"{abs(seconds):.3g}s {'faster' if seconds < 0 else 'slower'} per run"
    if cost is not None:
        change += f" and {abs(cost):.4g} {'cheaper' if cost < 0 else 'dearer'} per run"
    if not current_within:
        why = f"its p95 on '{current}' ({current_p95:.3g}s) misses the {objective:.3g}s objective"
    elif weight >= 1.0:
        why = "it is the fastest pool observed"
    elif weight > 0.0:
        why = "it has the best blend of cost and duration"
    else:
        why = "it is the cheapest pool whose p95 stays within the latency objective"
    return (
        f"Move step '{step}' from pool '{current}' to '{chosen}': {why}. "
        f"Observed: {change}; p95 {current_p95:.3g}s -> {chosen_p95:.3g}s "
        f"(objective {objective:.3g}s)."
    )


# --- timeouts --------------------------------------------------------------------------


def format_timeout(seconds: float) -> tuple[str, float]:
    """``seconds`` rounded up to a readable duration in the DSL's format and its value:
    50 ms steps below 1 s (``"350ms"``), whole seconds below 2 minutes (``"12s"``), whole
    minutes below 2 hours (``"5m"``), whole hours above."""
    if seconds <= 0:
        raise ValueError("a timeout must be positive")
    if seconds < 1.0:
        millis = math.ceil(round(seconds * 1000.0, 6) / 50.0) * 50
        if millis < 1000:
            return f"{millis}ms", millis / 1000.0
        seconds = 1.0
    if seconds < 120.0:
        whole = math.ceil(round(seconds, 6))
        return f"{whole}s", float(whole)
    if seconds < 7200.0:
        minutes = math.ceil(round(seconds / 60.0, 6))
        return f"{minutes}m", minutes * 60.0
    hours = math.ceil(round(seconds / 3600.0, 6))
    return f"{hours}h", hours * 3600.0


def _success_seconds(run: ToolRun) -> float | None:
    """How long the successful (last) attempt of ``run`` took, when it can be told."""
    if not run.ok:
        return None
    if not run.attempts:
        return run.duration_s
    last = run.attempts[-1]
    if not last.ok:
        return None
    if len(run.attempts) == 1:
        return run.duration_s
    previous = run.attempts[-2]
    if last.ended_at is None or previous.ended_at is None:
        return None
    return max(0.0, last.ended_at - previous.ended_at - (last.delay_before_s or 0.0))


@dataclass(frozen=True, slots=True)
class _Member:
    """One tool of a step (a member of its pipeline) as a step timeout meets it."""

    name: str  # as its runs report it: its name, or its kind when unnamed
    label: str  # as the rationale names it
    own_s: float | None  # its own timeout; None: none, or one not known before the run

    def stops_itself(self, limit: float) -> bool:
        """Whether its own timeout already stops each of its attempts at ``limit`` or
        sooner, so that a step timeout of ``limit`` changes nothing for it."""
        return self.own_s is not None and self.own_s <= limit


def _members(step: Step) -> list[_Member]:
    """The tools of ``step`` in pipeline order, each with its own timeout (the smaller of
    ``timeout`` and ``spec.timeout``; a templated one is not known before the run)."""
    members: list[_Member] = []
    for index, tool in enumerate(step.tools):
        limits: list[float] = []
        for value in (getattr(tool, "timeout", None), tool.spec.timeout if tool.spec else None):
            if value is not None:
                try:
                    limits.append(parse_duration(value))
                except ValueError:
                    continue  # a templated timeout: not known before the run
        name = str(tool.name or tool.kind)
        label = f"'{tool.name}'" if tool.name else f"tool {index + 1} ({tool.kind})"
        members.append(_Member(name, label, min(limits, default=None)))
    return members


def _attempt_seconds(run: ToolRun) -> list[tuple[Attempt, float, bool]]:
    """Each attempt of ``run`` with how long it ran, where its start and end are known
    (an attempt starts at the previous one's end plus the delay the policy waited), and
    whether that time counts from the start of the run: the first attempt's does, so in
    a tool pipeline it includes the tools that ran before the one the run reports."""
    if len(run.attempts) <= 1:
        return [(attempt, run.duration_s, True) for attempt in run.attempts]
    timed: list[tuple[Attempt, float, bool]] = []
    for position, attempt in enumerate(run.attempts):
        if position == 0:
            start: float | None = run.started_at
        else:
            previous = run.attempts[position - 1].ended_at
            start = None if previous is None else previous + (attempt.delay_before_s or 0.0)
        if start is not None and attempt.ended_at is not None:
            timed.append((attempt, max(0.0, attempt.ended_at - start), position == 0))
    return timed


@dataclass(frozen=True, slots=True)
class _Overrun:
    """The attempts that ended without success after running longer than a limit: what
    a step timeout of that limit would have stopped sooner."""

    attempts: int
    runs: int
    by_class: dict[str, int]
    seconds_beyond: float
    longest_s: float

    def describe(self, *, pipeline: bool = False) -> str:
        """The attempts by how they ended; in a ``pipeline`` a timeout may be the own
        (shorter) one of the tool that ended the run, after another tool ran long."""
        parts = []
        for name, count in sorted(self.by_class.items(), key=lambda item: (-item[1], item[0])):
            if name == TIMEOUT_CLASS:
                parts.append(f"{count} timed out" + ("" if pipeline else " at a longer limit"))
            elif name == CANCELLED_CLASS:
                parts.append(f"{count} {'was' if count == 1 else 'were'} cancelled")
            else:
                parts.append(f"{count} failed with {name}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "runs": self.runs,
            "by_error_class": dict(sorted(self.by_class.items())),
            "seconds_beyond_limit": round(self.seconds_beyond, 6),
            "longest_s": round(self.longest_s, 6),
        }


def _overrun(runs: Sequence[ToolRun], limit: float, members: Sequence[_Member]) -> _Overrun:
    """The attempts of ``runs`` that a step timeout of ``limit`` would have stopped sooner.

    The step timeout limits each attempt of each tool; a tool's own timeout limits that
    tool only. A run reports the attempts of the tool that ended it (the last tool of a
    pipeline, or the one whose failure stopped it); the time of its first attempt counts
    from the start of the run, so it includes the tools before it. Of an attempt's time,
    each tool whose own timeout is at or below ``limit`` took at most that timeout; the
    rest was spent in the ``k`` tools without one (or with a longer one), and a limit on
    each of their attempts would have cut at least ``rest - k x limit`` of it: exactly
    what is saved for a step of one tool, a lower bound for a pipeline. An attempt that did not
    succeed counts when that is above zero. A run whose reported tool is not the tool
    of ``members`` at its position ran another pipeline and is left out."""
    by_class: dict[str, int] = defaultdict(int)
    beyond = 0.0
    longest = 0.0
    hit_runs: set[str] = set()
    for run in runs:
        ended_by = run.tool_index or 0
        if ended_by >= len(members) or run.tool not in (None, members[ended_by].name):
            continue  # another pipeline: which of its tools overran cannot be told
        for attempt, seconds, from_start in _attempt_seconds(run):
            if attempt.ok:
                continue
            spent_in = members[: ended_by + 1] if from_start else [members[ended_by]]
            unlimited = [member for member in spent_in if not member.stops_itself(limit)]
            limited_s = sum(m.own_s or 0.0 for m in spent_in if m.stops_itself(limit))
            unlimited_s = seconds - limited_s
            saved = unlimited_s - len(unlimited) * limit
            if not unlimited or saved <= 0:
                continue  # every tool it ran stopped itself as soon, or none ran that long
            by_class[attempt.error_class or "unknown"] += 1
            beyond += saved
            longest = max(longest, unlimited_s)
            hit_runs.add(f"{run.execution_id}/{run.step_run_id}/{run.iteration}")
    return _Overrun(sum(by_class.values()), len(hit_runs), dict(by_class), beyond, longest)


def _pipeline_sentence(members: Sequence[_Member], limit: float) -> str:
    """How a step timeout of ``limit`` meets the tools of a pipeline, for the rationale."""
    limited = [member for member in members if member.stops_itself(limit)]
    unlimited = [member for member in members if not member.stops_itself(limit)]
    text = (
        f" The step runs {len(members)} tools as a pipeline, and a step timeout limits each "
        "attempt of each of them:"
    )
    if limited:
        owns = _own_timeouts(limited)
        if len(limited) == 1:
            text += f" {owns} stops at its own timeout, which covers that tool only;"
        else:
            text += f" {owns} stop at their own timeouts, which cover those tools only;"
    names = _labels(unlimited)
    if len(unlimited) == 1:
        text += f" {names} has no own timeout at or below the limit"
    else:
        text += f" {names} have no own timeouts at or below the limit"
    if limited:
        text += f", so what is counted is the time beyond what {_labels(limited)} can take"
    return text + "."


def _own_timeouts(members: Sequence[_Member]) -> str:
    return ", ".join(f"{member.label} ({member.own_s:g}s)" for member in members)


def _labels(members: Sequence[_Member]) -> str:
    return ", ".join(member.label for member in members)


def _timeout_proposal(
    step: Step,
    index: int,
    runs: Sequence[ToolRun],
    version: PlaybookVersion,
    config: LearnerConfig,
) -> ProposalDraft | None:
    pool = _current_pool(step)
    on_pool = [run for run in runs if run.pool in (None, pool)]
    successes = [seconds for run in on_pool if (seconds := _success_seconds(run)) is not None]
    configured: float | None = None
    if step.spec is not None and step.spec.timeout is not None:
        try:
            configured = parse_duration(step.spec.timeout)
        except ValueError:
            return None  # a templated timeout: not known before the run
    needed = config.min_samples if configured is not None else 2 * config.min_samples
    if len(successes) < needed:
        return None
    summary = describe(successes)
    current = [run for run in runs if run.playbook_version in (None, version.version)]
    attempts = [attempt for run in current for attempt in run.attempts]
    timed_out = sum(1 for attempt in attempts if attempt.error_class == TIMEOUT_CLASS)
    failed_by_timeout = sum(
        1
        for run in current
        if not run.ok and run.attempts and run.attempts[-1].error_class == TIMEOUT_CLASS
    )
    notes: list[str] = []
    if configured is not None:
        if timed_out == 0:
            return None
        if summary.p99 < TIGHT_TIMEOUT * configured:
            return None  # the successes are far from the limit: the timeouts are hangs
        wanted = max(summary.p99 * config.timeout_margin, summary.max)
        if wanted <= configured:
            wanted = configured * max(config.timeout_margin, MIN_RAISE)
    else:
        wanted = max(summary.p99 * config.timeout_margin, summary.max)
    text, proposed = format_timeout(max(wanted, config.min_timeout_s))
    if configured is not None and proposed <= configured:
        return None
    members = _members(step)
    overrun: _Overrun | None = None
    if configured is None:
        if all(member.stops_itself(proposed) for member in members):
            return None  # every tool's own timeout already stops its attempts as soon
        overrun = _overrun(on_pool, proposed, members)
        if overrun.attempts == 0:
            return None  # no attempt ran longer in a tool the limit would stop
    else:
        tighter = [m for m in members if m.own_s is not None and m.own_s < proposed]
        if len(members) == 1 and tighter:
            notes.append(
                f"the tool's own timeout ({tighter[0].own_s:g}s) is lower and still "
                "applies; raise it as well"
            )
        elif tighter:
            which = "that tool" if len(tighter) == 1 else "each of those tools"
            notes.append(
                f"the own timeout of {_own_timeouts(tighter)} is lower and still applies to "
                f"{which}; raise it as well where it is the one that times out"
            )
    rate_interval = wilson_interval(timed_out, len(attempts), config.confidence)
    evidence: dict[str, Any] = {
        "pool": pool,
        "successful_attempts": summary.to_dict(),
        "configured_timeout_s": configured,
        "proposed_timeout": text,
        "proposed_timeout_s": proposed,
        "margin": config.timeout_margin,
        "attempts": len(attempts),
        "timed_out_attempts": timed_out,
        "timeout_rate": timed_out / len(attempts) if attempts else 0.0,
        "timeout_interval": _interval(rate_interval),
        "runs_failed_by_timeout": failed_by_timeout,
        "priority": "normal",
        "expected": {
            "failures_per_run": -(failed_by_timeout / len(current)) if current else 0.0,
            "seconds_per_run": None,
            "cost_per_run": None,
        },
    }
    patch = _set_ops(version.document, index, ["spec", "timeout"], text)
    if overrun is None:
        assert configured is not None
        evidence["reason"] = "too_tight"
        rationale = (
            f"Raise the timeout of step '{step.step}' from {configured:g}s to {text}: "
            f"{timed_out} of {len(attempts)} attempts timed out while successful attempts "
            f"reach p99 {summary.p99:.3g}s (max {summary.max:.3g}s), "
            f"{summary.p99 / configured:.0%} of the limit, so the limit cuts off runs that "
            "would have succeeded."
        )
        size = len(current)
    else:
        evidence["reason"] = "overrun"
        evidence["overrun"] = overrun.to_dict()
        evidence["tools"] = [
            {
                "tool": member.name,
                "own_timeout_s": member.own_s,
                "stops_itself": member.stops_itself(proposed),
            }
            for member in members
        ]
        evidence["runs_on_pool"] = len(on_pool)
        evidence["expected"] = {
            "failures_per_run": 0.0,
            "seconds_per_run": -(overrun.seconds_beyond / len(on_pool)),
            "cost_per_run": None,
        }
        saved = overrun.seconds_beyond / overrun.attempts
        longest = f"ran {overrun.longest_s:.3g}s"
        if len(members) > 1:
            longest = f"spent {overrun.longest_s:.3g}s in the tools the limit would stop"
        rationale = (
            f"Add a timeout of {text} to step '{step.step}': {overrun.attempts} attempt(s) in "
            f"{overrun.runs} of {len(on_pool)} runs on pool '{pool}' ran longer than that "
            f"without succeeding ({overrun.describe(pipeline=len(members) > 1)}; the longest "
            f"{longest}), while its {summary.n} successful attempts took at "
            f"most {summary.max:.3g}s (p99 {summary.p99:.3g}s). A limit of p99 x "
            f"{config.timeout_margin:g} (never below the slowest success) would have "
            f"stopped those attempts {'at least ' if len(members) > 1 else ''}"
            f"{saved:.3g}s sooner on average and freed their worker, without cutting off any "
            "run that succeeded."
        )
        if len(members) > 1:
            rationale += _pipeline_sentence(members, proposed)
        size = len(on_pool)
    return _draft(version, step, "timeout", patch, evidence, rationale, size, notes)


# --- loops -----------------------------------------------------------------------------


def _loop_proposal(
    step: Step,
    index: int,
    loops: Sequence[LoopRun],
    version: PlaybookVersion,
    config: LearnerConfig,
) -> ProposalDraft | None:
    assert step.loop is not None
    if step.loop.spec.mode != "parallel":
        return None  # a sequential loop runs one iteration at a time by design
    limit = step.loop.spec.max_in_flight
    observed = [
        loop
        for loop in loops
        if loop.max_in_flight == limit and loop.wall_s > 0 and loop.iterations >= 2
    ]
    if len(observed) < config.min_loop_runs:
        return None
    speedups = [loop.busy_s / loop.wall_s for loop in observed]
    caps = [min(limit, loop.iterations) if limit else loop.iterations for loop in observed]
    typical_iterations = quantile([loop.iterations for loop in observed], 0.5)
    binding = [loop for loop in observed if limit is not None and loop.iterations > limit]
    efficiencies = [s / c for s, c in zip(speedups, caps, strict=True)]
    median_efficiency = quantile(efficiencies, 0.5)
    p90_speedup = quantile(speedups, 0.9)
    evidence: dict[str, Any] = {
        "loop_runs": len(observed),
        "configured_max_in_flight": limit,
        "iterations_p50": typical_iterations,
        "speedup_p50": quantile(speedups, 0.5),
        "speedup_p90": p90_speedup,
        "efficiency_p50": median_efficiency,
        "wall_s_p50": quantile([loop.wall_s for loop in observed], 0.5),
        "busy_s_p50": quantile([loop.busy_s for loop in observed], 0.5),
    }
    mean_wall = sum(loop.wall_s for loop in observed) / len(observed)
    proposed: int | None = None
    rationale = ""
    if limit is not None and len(binding) >= config.min_loop_runs:
        binding_efficiency = quantile([loop.busy_s / loop.wall_s / limit for loop in binding], 0.5)
        evidence["binding_runs"] = len(binding)
        evidence["binding_efficiency_p50"] = binding_efficiency
        if binding_efficiency >= LINEAR_EFFICIENCY:
            raised = min(2 * limit, math.floor(typical_iterations))
            if raised > limit:
                proposed = raised
                predicted = [
                    loop.busy_s / (binding_efficiency * min(raised, loop.iterations))
                    for loop in observed
                ]
                seconds = sum(predicted) / len(predicted) - mean_wall
                rationale = (
                    f"Raise max_in_flight of loop step '{step.step}' from {limit} to {raised}: "
                    f"in {len(binding)} runs with more than {limit} iterations the loop ran "
                    f"{binding_efficiency:.0%} as fast as {limit} fully parallel iterations "
                    f"would (near-linear speed-up), and it typically has "
                    f"{typical_iterations:g} iterations; expected {abs(seconds):.3g}s less "
                    "wall time per run."
                )
                evidence["expected"] = {
                    "seconds_per_run": seconds,
                    "failures_per_run": None,
                    "cost_per_run": None,
                }
    if proposed is None and median_efficiency <= SATURATED_EFFICIENCY:
        lowered = math.ceil(p90_speedup) + 1
        ceiling = limit if limit is not None else math.floor(typical_iterations)
        if lowered < ceiling:
            proposed = lowered
            rationale = (
                f"Lower max_in_flight of loop step '{step.step}' from "
                f"{limit if limit is not None else 'unlimited'} to {lowered}: over "
                f"{len(observed)} runs the iterations overlapped only {p90_speedup:.2g}x "
                f"(p90 speed-up) against up to {ceiling} in flight, so something they share "
                "serialises them; fewer in flight keeps the same wall time and frees slots."
            )
            evidence["expected"] = {
                "seconds_per_run": 0.0,
                "failures_per_run": None,
                "cost_per_run": None,
                "slots_freed": ceiling - lowered,
            }
    if proposed is None:
        return None
    evidence["proposed_max_in_flight"] = proposed
    patch = _set_ops(version.document, index, ["loop", "spec", "max_in_flight"], proposed)
    size = sum(loop.iterations for loop in observed)
    return _draft(version, step, "max_in_flight", patch, evidence, rationale, size, [])
