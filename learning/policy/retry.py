"""The retry learner: which errors of a step are worth retrying, how often and how slowly.

For every step's tool and error class seen in its runs it weighs two kinds of evidence:

- **within a run**: a failed attempt followed by another attempt of the same run (the
  current policy retried it) that succeeded: the per-attempt recovery rate;
- **across runs**: a run that ended with the error, followed by the next run of the step
  in a later execution (started within ``recovery_window_s``): did that run's first
  attempt succeed? This is what tells a transient error from a permanent one when the
  current policy does not retry at all.

A class that recovered is **transient**; one that never recovered over ``min_samples``
tries is **permanent** (once the policy retried it ``min_samples`` times, the retries alone
decide: the same request again is the direct evidence). A class the tool itself reports
as not retryable (``http_401``, a Python exception, an SQL error) and the policy never
retried needs more than a later execution that succeeded, which may have sent other
inputs:

- **same input**: a run that ended with the error followed by a later run of the step with
  the same input (``ToolRun.input_key``: same workload, same outputs of the steps before
  it, same loop item). If such runs succeeded the error is transient however the tool
  labels it (a flaky ``python`` step raising ``ConnectionError``); if the same input failed
  again every time, the error is deterministic (a ``KeyError``, a ``ZeroDivisionError`` on
  that input) and never gets a retry. Once there is such a pair, it alone decides;
- **transient by nature**: without same-input pairs, exceptions whose type says the
  network or a peer failed (``ConnectionError`` and its subclasses, ``TimeoutError``, the
  HTTP client libraries' connect and read errors: ``TRANSIENT_EXCEPTIONS``) are judged on
  the next runs like a retryable error. Any other class stays undecided.

Errors of kind ``validation`` (the configuration could not be used; nothing ran) are
never transient.

For a transient class the per-attempt recovery rate ``p`` (from the retries the current
policy made, else from the next runs) gives the chance that a run hit by the error
succeeds within ``k`` attempts, ``1 - (1 - p)^(k - 1)``; the proposal is
the smallest ``k`` reaching ``target_success`` (at most ``max_attempts``), with an
exponential backoff whose first delay is the median recovery time (the time from the
failure to the attempt that succeeded) and whose ``max_delay`` is its 95th percentile,
rounded to 1-2-3-5 steps (never below ``min_retry_delay_s``); attempts are added while
the waits do not reach that 95th percentile. Jitter is added when runs of different
executions failed at the same time (their retries would hit the service together); as
the engine's jitter waits a uniform share of the delay, the delays are then doubled. The
rule it writes matches exactly that class (``output.error.kind`` and ``output.error.code``)
and is put first (or replaces the rule it wrote before), so the step's other rules stay
as they are. Nothing is proposed when the current policy already retries the class with
at least as many attempts, a first delay within a factor of two, and jitter if needed.

A permanent class that the current policy retries gets a ``retry_remove`` proposal: the
retrying rule is narrowed to leave the class out (or removed when it matches nothing
else); those retries only add latency and cost. No retry is ever proposed for a step that
is not idempotent (http POST/PUT/PATCH/DELETE, a postgres or duckdb ``command``, or
``spec.idempotent: false``) unless the step says ``spec.idempotent: true``.

``retry_findings`` tells for every (step, error class) what was decided and why;
``retry_proposals`` returns only the drafts.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.core.policy import PolicyDecision, decide_after_attempt, retry_delay
from engine.dsl.loader import parse_playbook
from engine.dsl.models import Policy, Step, WorkbookTool
from engine.errors import NoetlError
from learning.errors import PatchError
from learning.policy.model import (
    LearnerConfig,
    PlaybookVersion,
    ProposalDraft,
    Target,
    ToolRun,
)
from learning.policy.patch import apply_patch, pointer, render
from learning.policy.stats import quantile, wilson_interval

LEARNER = "retry"
ERROR_KINDS = ("timeout", "connection", "http", "python", "sql", "validation", "cancelled")
NON_IDEMPOTENT_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JITTER_SHARE = 0.25  # failed runs overlapping one of another execution, above which: jitter
MIN_RECOVERY = 0.5  # P(recovered within max_attempts) below which retrying is not worth it
# Classes a rule is also tried against before it is removed: if it matches one of them it
# is narrowed instead, so a catch-all rule keeps retrying what it was written for.
PROBE_CLASSES = ("timeout", "connection", "http_429", "http_502", "http_503", "http_504")
# Python exception types raised when the network or a peer failed, not the code: a later
# call may well succeed (built-in OSError subclasses, http.client's, and the names the
# common HTTP client libraries give their connect and read failures).
TRANSIENT_EXCEPTIONS = frozenset(
    {
        "ConnectionError",
        "ConnectionResetError",
        "ConnectionRefusedError",
        "ConnectionAbortedError",
        "BrokenPipeError",
        "TimeoutError",
        "RemoteDisconnected",
        "IncompleteRead",
        "ConnectError",
        "ConnectTimeout",
        "ReadTimeout",
        "ReadError",
    }
)
_SOURCE_WORDS = {
    "attempts": "retries",
    "same_input": "later runs with the same input",
    "next_run": "next runs",
}
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
_NICE = (1, 2, 3, 5)

Verdict = Literal["transient", "permanent", "undecided", "ignored"]


@dataclass(frozen=True, slots=True)
class RetryFinding:
    """What the learner concluded for one (step, error class), and the draft if any."""

    step: str
    error_class: str
    verdict: Verdict
    reason: str
    draft: ProposalDraft | None = None

    def explain(self) -> str:
        return f"step `{self.step}`, {self.error_class}: {self.verdict}; {self.reason}"


def retry_proposals(
    runs: Sequence[ToolRun], version: PlaybookVersion, config: LearnerConfig
) -> list[ProposalDraft]:
    """Retry and retry-removal drafts against ``version`` from ``runs`` of its steps."""
    return [f.draft for f in retry_findings(runs, version, config) if f.draft is not None]


def explain_skips(
    runs: Sequence[ToolRun], version: PlaybookVersion, config: LearnerConfig
) -> list[str]:
    """Why nothing was proposed for each (step, error class) that got no draft."""
    return [f.explain() for f in retry_findings(runs, version, config) if f.draft is None]


# ---------------------------------------------------------------------- error classes


def class_parts(error_class: str) -> tuple[str, str | int | None]:
    """The ``(error.kind, error.code)`` an error class stands for (``http_503`` →
    ``("http", 503)``, ``timeout`` → ``("timeout", None)``, ``KeyError`` →
    ``("python", "KeyError")``)."""
    if error_class in ERROR_KINDS:
        return error_class, None
    kind, sep, code = error_class.partition("_")
    if sep and kind in ERROR_KINDS:
        return kind, int(code) if kind == "http" and code.isdigit() else code
    return "python", error_class


def _literal(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def class_match(classes: Sequence[str]) -> str:
    """A template expression that holds exactly for errors of ``classes``."""
    codes: dict[str, list[str | int]] = defaultdict(list)
    bare: list[str] = []
    for name in sorted(set(classes)):
        kind, code = class_parts(name)
        if code is None:
            bare.append(kind)
        else:
            codes[kind].append(code)
    parts = [
        f"output.error.kind == '{kind}' and output.error.code in "
        f"[{', '.join(_literal(code) for code in values)}]"
        for kind, values in sorted(codes.items())
    ]
    parts += [f"output.error.kind == '{kind}' and output.error.code is none" for kind in bare]
    if len(parts) == 1:
        return f"output.status == 'error' and {parts[0]}"
    return "output.status == 'error' and (" + " or ".join(f"({p})" for p in parts) + ")"


def retry_when(classes: Sequence[str]) -> str:
    """The ``when`` of a rule that retries exactly ``classes``."""
    return "{{ " + class_match(classes) + " }}"


def _probe_output(error_class: str, retryable: bool) -> dict[str, Any]:
    kind, code = class_parts(error_class)
    return {
        "status": "error",
        "data": None,
        "response": None,
        "error": {"kind": kind, "code": code, "message": "", "retryable": retryable},
        "http": {"status": code if kind == "http" else None},
        "meta": {},
    }


def _decide(
    policy: Policy | None, error_class: str, attempt: int, retryable: bool
) -> PolicyDecision | None:
    """What ``policy`` does after attempt ``attempt`` failed with ``error_class`` (None
    when its rules need more than the output to be evaluated)."""
    try:
        return decide_after_attempt(policy, _probe_output(error_class, retryable), attempt, {})
    except NoetlError:
        return None


# ---------------------------------------------------------------------- numbers


def nice(seconds: float) -> float:
    """``seconds`` rounded (in log scale) to 1, 2, 3 or 5 times a power of ten."""
    if seconds <= 0:
        return 0.0
    exponent = math.floor(math.log10(seconds))
    candidates = [float(f"{m}e{e}") for e in (exponent - 1, exponent, exponent + 1) for m in _NICE]
    return min(candidates, key=lambda c: abs(math.log(c / seconds)))


def p_within(p: float, attempts: int) -> float:
    """P(a run hit by the error succeeds within ``attempts``) at per-attempt rate ``p``."""
    return 1.0 - (1.0 - p) ** max(attempts - 1, 0)


def attempts_for(p: float, target: float, cap: int) -> int:
    """The smallest attempts (2..cap) whose ``p_within`` reaches ``target`` (else cap)."""
    for attempts in range(2, max(cap, 2) + 1):
        if p_within(p, attempts) >= target:
            return attempts
    return max(cap, 2)


def _waits(then: Mapping[str, Any], attempts: int, jitter: bool) -> list[float]:
    """Mean wait before attempts 2..attempts (full jitter halves it)."""
    factor = 0.5 if jitter else 1.0
    return [retry_delay(then, number) * factor for number in range(1, attempts)]


def _expected_seconds(
    first_fail: float, p: float, attempts: int, waits: Sequence[float], attempt_s: float
) -> float:
    """Expected seconds per run spent in retries of the class."""
    total = 0.0
    for index in range(2, attempts + 1):
        reach = (1.0 - p) ** (index - 2)
        wait = waits[index - 2] if index - 2 < len(waits) else 0.0
        total += reach * (wait + attempt_s)
    return first_fail * total


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# ---------------------------------------------------------------------- sites


@dataclass(slots=True)
class _Site:
    """One tool of one step of the version: where its policy lives and what it does."""

    step: Step
    index: int  # step index in workflow
    tool_index: int | None  # pipeline position
    kind: str
    tool: Any  # the effective tool model (a workbook reference resolved)
    policy: Policy | None
    spec_inherited: dict[str, Any] | None  # a workbook target's spec a reference inherits
    not_idempotent: str | None
    cost_per_hour: float | None

    @property
    def tool_path(self) -> tuple[str | int, ...]:
        base: tuple[str | int, ...] = ("workflow", self.index, "tool")
        return base if self.tool_index is None else (*base, self.tool_index)


def _site(version: PlaybookVersion, step: Step, tool_index: int | None) -> _Site | None:
    tools = step.tools
    if (tool_index is None) != (len(tools) == 1):
        return None
    if tool_index is not None and not 0 <= tool_index < len(tools):
        return None
    declared = tools[tool_index or 0]
    tool = declared
    inherited: dict[str, Any] | None = None
    spec = declared.spec
    if isinstance(declared, WorkbookTool):
        try:
            tool = version.playbook.workbook_tool(declared.name)
        except KeyError:
            return None
        if spec is None and tool.spec is not None:
            spec = tool.spec
            inherited = tool.spec.model_dump(by_alias=True, exclude_none=True)
    policy = spec.policy if spec is not None else None
    pool = step.spec.runtime.pool if step.spec and step.spec.runtime else "cpu"
    price = next((p.cost_per_hour for p in version.playbook.pools if p.name == pool), None)
    return _Site(
        step=step,
        index=version.step_index(step.step),
        tool_index=tool_index,
        kind=tool.kind,
        tool=tool,
        policy=policy,
        spec_inherited=inherited,
        not_idempotent=_not_idempotent(step, tool),
        cost_per_hour=price,
    )


def _not_idempotent(step: Step, tool: Any) -> str | None:
    """Why re-running the step's tool may do its effect twice (None: it is safe)."""
    marked = step.spec.idempotent if step.spec is not None else None
    if marked is True:
        return None
    if marked is False:
        return "the step is marked `spec.idempotent: false`"
    if tool.kind == "http":
        method = str(tool.method).strip().upper()
        if "{{" in method or "{%" in method:
            return "its http method is a template, so it may not be idempotent"
        if method in NON_IDEMPOTENT_METHODS:
            return f"it sends http {method}, which is not idempotent"
    if tool.kind in ("postgres", "duckdb") and getattr(tool, "command", None) is not None:
        return f"it runs a {tool.kind} `command`, which may change data twice"
    return None


# ---------------------------------------------------------------------- evidence


@dataclass(slots=True)
class _ClassStats:
    error_class: str
    runs: int = 0  # runs of the site
    occurrences: int = 0  # runs in which the class occurred
    first_failures: int = 0  # runs whose first attempt failed with it
    final_failures: int = 0  # runs that ended failed with it
    in_trials: int = 0  # failed attempts followed by another attempt of the run
    in_recovered: int = 0
    cross_trials: int = 0  # failed runs followed by a run of a later execution
    cross_recovered: int = 0
    same_trials: int = 0  # failed runs followed by a later run with the same input
    same_recovered: int = 0
    in_recovery_s: list[float] = field(default_factory=list)
    cross_recovery_s: list[float] = field(default_factory=list)
    same_recovery_s: list[float] = field(default_factory=list)
    by_same_input: bool = False  # the next runs with the same input decide (see module doc)
    wasted_s: float = 0.0  # retries after the class in runs that never recovered
    failed_runs: list[ToolRun] = field(default_factory=list)
    retryable: Counter[bool] = field(default_factory=Counter)

    @property
    def trials(self) -> int:
        return self.in_trials + self.cross_trials

    @property
    def recovered(self) -> int:
        return self.in_recovered + self.cross_recovered

    def verdict_counts(self, min_samples: int) -> tuple[int, int]:
        """(recovered, tries) that decide transient or permanent: the retries alone once
        there are enough of them (the same request again is the direct evidence), else
        the retries and the next runs together."""
        if self.in_trials >= min_samples:
            return self.in_recovered, self.in_trials
        if self.by_same_input:
            return self.in_recovered + self.same_recovered, self.in_trials + self.same_trials
        return self.recovered, self.trials

    @property
    def source(self) -> str:
        if self.in_trials:
            return "attempts"
        return "same_input" if self.by_same_input else "next_run"

    @property
    def rate_counts(self) -> tuple[int, int]:
        if self.in_trials:
            return self.in_recovered, self.in_trials
        if self.by_same_input:
            return self.same_recovered, self.same_trials
        return self.cross_recovered, self.cross_trials

    @property
    def recovery_s(self) -> list[float]:
        if self.in_trials:
            return self.in_recovery_s
        return self.same_recovery_s if self.by_same_input else self.cross_recovery_s

    @property
    def said_retryable(self) -> bool:
        return self.retryable[True] > self.retryable[False]


def _attempt_start(run: ToolRun, position: int) -> float | None:
    """When attempt ``position`` (0-based) began: the previous one's end plus the delay."""
    if position == 0:
        return run.started_at
    previous = run.attempts[position - 1].ended_at
    if previous is None:
        return None
    return previous + (run.attempts[position].delay_before_s or 0.0)


def _class_stats(runs: Sequence[ToolRun], window_s: float) -> dict[str, _ClassStats]:
    ordered = sorted(runs, key=lambda run: (run.started_at, run.finished_at))
    starts = [run.started_at for run in ordered]
    same_input: dict[str, list[ToolRun]] = defaultdict(list)
    for run in ordered:
        if run.input_key is not None:
            same_input[run.input_key].append(run)
    same_starts = {key: [run.started_at for run in twins] for key, twins in same_input.items()}
    stats: dict[str, _ClassStats] = {}

    def of(name: str) -> _ClassStats:
        return stats.setdefault(name, _ClassStats(name, runs=len(ordered)))

    for position, run in enumerate(ordered):
        attempts = run.attempts
        seen: set[str] = set()
        for number, attempt in enumerate(attempts):
            name = attempt.error_class
            if attempt.ok or not name:
                continue
            entry = of(name)
            if attempt.retryable is not None:
                entry.retryable[attempt.retryable] += 1
            if number + 1 < len(attempts):
                entry.in_trials += 1
                entry.in_recovered += attempts[number + 1].ok
            if name in seen:
                continue
            seen.add(name)
            entry.occurrences += 1
            entry.first_failures += number == 0
            entry.failed_runs.append(run)
            success = next((i for i in range(number + 1, len(attempts)) if attempts[i].ok), None)
            failed_at = attempt.ended_at
            if success is not None:
                began = _attempt_start(run, success)
                if began is not None and failed_at is not None:
                    entry.in_recovery_s.append(max(0.0, began - failed_at))
            elif failed_at is not None and number + 1 < len(attempts):
                entry.wasted_s += max(0.0, run.finished_at - failed_at)
        last = attempts[-1] if attempts else None
        if run.ok or last is None or not last.error_class:
            continue
        entry = of(last.error_class)
        entry.final_failures += 1
        if run.input_key is not None:
            key = run.input_key
            _same_input_trial(entry, run, same_input[key], same_starts[key], window_s)
        later = _later_runs(ordered, starts, position, run)
        following = next(later, None)
        if following is None or following.started_at - run.finished_at > window_s:
            continue
        entry.cross_trials += 1
        first_ok = bool(following.attempts) and following.attempts[0].ok
        entry.cross_recovered += first_ok
        candidate: ToolRun | None = following
        while candidate is not None and not (candidate.attempts and candidate.attempts[0].ok):
            candidate = next(later, None)
        if candidate is not None and candidate.started_at - run.finished_at <= window_s:
            entry.cross_recovery_s.append(max(0.0, candidate.started_at - run.finished_at))
    return stats


def _same_input_trial(
    entry: _ClassStats,
    run: ToolRun,
    twins: Sequence[ToolRun],
    starts: Sequence[float],
    window_s: float,
) -> None:
    """Count the next run with ``run``'s input (of a later execution, within the window):
    did its first attempt succeed, and after how long did one with that input succeed."""
    first = bisect.bisect_left(starts, run.finished_at)
    later = [
        other
        for other in itertools.takewhile(
            lambda other: other.started_at <= run.finished_at + window_s, twins[first:]
        )
        if other.execution_id != run.execution_id
    ]
    if not later:
        return
    entry.same_trials += 1
    entry.same_recovered += bool(later[0].attempts) and later[0].attempts[0].ok
    success = next((o for o in later if o.attempts and o.attempts[0].ok), None)
    if success is not None:
        entry.same_recovery_s.append(max(0.0, success.started_at - run.finished_at))


def _later_runs(
    ordered: Sequence[ToolRun], starts: Sequence[float], position: int, run: ToolRun
) -> Any:
    """Runs of other executions that started after ``run`` ended, in start order."""
    begin = bisect.bisect_left(starts, run.finished_at, lo=position + 1)
    return (other for other in ordered[begin:] if other.execution_id != run.execution_id)


def _overlap(runs: Sequence[ToolRun]) -> tuple[float, int]:
    """Share of ``runs`` that ran while a run of another execution did, and the largest
    number of executions running such runs at once."""
    if not runs:
        return 0.0, 0
    ordered = sorted(runs, key=lambda run: run.started_at)
    overlapping: set[int] = set()
    for i, run in enumerate(ordered):
        for j in range(i + 1, len(ordered)):
            other = ordered[j]
            if other.started_at > run.finished_at:
                break
            if other.execution_id != run.execution_id:
                overlapping.update((i, j))
    points = sorted(
        [(run.started_at, 1, run.execution_id) for run in ordered]
        + [(run.finished_at, -1, run.execution_id) for run in ordered],
        key=lambda point: (point[0], -point[1]),
    )
    active: Counter[str] = Counter()
    most = 0
    for _, step, execution in points:
        active[execution] += step
        if active[execution] <= 0:
            del active[execution]
        most = max(most, len(active))
    return len(overlapping) / len(ordered), most


def _interval(counts: tuple[int, int], confidence: float) -> dict[str, float | int | None]:
    recovered, trials = counts
    low, high = wilson_interval(recovered, trials, confidence)
    return {
        "rate": _round(recovered / trials) if trials else None,
        "low": _round(low),
        "high": _round(high),
        "recovered": recovered,
        "trials": trials,
        "confidence": confidence,
    }


def _counts(entry: _ClassStats) -> dict[str, Any]:
    return {
        "runs": entry.runs,
        "occurrences": entry.occurrences,
        "first_attempt_failures": entry.first_failures,
        "final_failures": entry.final_failures,
        "retries_observed": entry.in_trials,
        "recovered_by_retry": entry.in_recovered,
        "next_runs_observed": entry.cross_trials,
        "recovered_on_next_run": entry.cross_recovered,
        "same_input_runs_observed": entry.same_trials,
        "recovered_with_same_input": entry.same_recovered,
    }


# ---------------------------------------------------------------------- policies


@dataclass(frozen=True, slots=True)
class _Current:
    """What the current policy does with one error class."""

    attempts: int
    label: str | None  # the rule that retries it ("rules[0]", "else")
    then: dict[str, Any]
    jitter: bool
    explicit: str | None  # a rule that routes the error elsewhere (jump, continue, break)
    delays: tuple[float, ...] = ()  # delay before attempts 2.. (before jitter)

    def waits(self) -> list[float]:
        """Mean wait before attempts 2..attempts (full jitter halves it)."""
        return [delay * (0.5 if self.jitter else 1.0) for delay in self.delays]


def _current(site: _Site, error_class: str, retryable: bool) -> _Current:
    decision = _decide(site.policy, error_class, 1, retryable)
    if decision is None:
        return _Current(1, None, {}, False, "its policy rules need the run's context")
    if decision.action in ("jump", "continue", "break"):
        return _Current(1, decision.rule, {}, False, f"{decision.rule} says `{decision.action}`")
    if decision.action != "retry":
        return _Current(1, None, {}, False, None)
    attempts = decision.attempts or 1
    delays = [decision.delay]
    for number in range(2, attempts):
        later = _decide(site.policy, error_class, number, retryable)
        delays.append(later.delay if later is not None and later.action == "retry" else 0.0)
    then = _rule_then(site.policy, decision.rule)
    return _Current(attempts, decision.rule, then, decision.jitter, None, tuple(delays))


def _rule_index(policy: Policy | None, label: str) -> int | None:
    if policy is None:
        return None
    if label == "else":
        return len(policy.rules) - 1
    match = re.fullmatch(r"rules\[(\d+)\]", label)
    return int(match.group(1)) if match else None


def _rule_then(policy: Policy | None, label: str) -> dict[str, Any]:
    index = _rule_index(policy, label)
    if policy is None or index is None:
        return {}
    then: dict[str, Any] = policy.rules[index].action.model_dump(exclude_none=True, exclude={"set"})
    return then


def _document_tool(version: PlaybookVersion, site: _Site) -> dict[str, Any]:
    node: Any = version.document
    for part in site.tool_path:
        node = node[part]
    return node if isinstance(node, dict) else {}


def _policy_ops(
    version: PlaybookVersion, site: _Site, rules_ops: Sequence[tuple[str, int, Any]]
) -> list[dict[str, Any]]:
    """JSON-patch ops applying ``rules_ops`` (op, rule index, value) to the site's rules,
    creating the policy (and a workbook reference's own spec) when there is none."""
    tool = _document_tool(version, site)
    spec = tool.get("spec") if isinstance(tool.get("spec"), dict) else None
    rules_path = (*site.tool_path, "spec", "policy", "rules")
    if spec is None and site.spec_inherited is not None:
        own = dict(site.spec_inherited)
        rules = list((own.get("policy") or {}).get("rules") or [])
        _apply_rule_ops(rules, rules_ops)
        own["policy"] = {"rules": rules}
        return [{"op": "add", "path": pointer(*site.tool_path, "spec"), "value": own}]
    policy = (spec or {}).get("policy")
    if not isinstance(policy, dict) or not policy.get("rules"):
        rules = []
        _apply_rule_ops(rules, rules_ops)
        path = pointer(*site.tool_path, "spec", "policy")
        return [{"op": "add", "path": path, "value": {"rules": rules}}]
    ops: list[dict[str, Any]] = []
    for op, index, value in rules_ops:
        operation: dict[str, Any] = {"op": op, "path": pointer(*rules_path, index)}
        if op != "remove":
            operation["value"] = value
        ops.append(operation)
    return ops


def _document_rule(version: PlaybookVersion, site: _Site, index: int) -> dict[str, Any]:
    """Rule ``index`` of the site's policy as written (a copy of the YAML's own map)."""
    spec = _document_tool(version, site).get("spec")
    if not isinstance(spec, dict):
        spec = site.spec_inherited or {}
    rules = (spec.get("policy") or {}).get("rules") or []
    rule = rules[index] if 0 <= index < len(rules) else {}
    return dict(rule) if isinstance(rule, dict) else {}


def _apply_rule_ops(rules: list[Any], rules_ops: Sequence[tuple[str, int, Any]]) -> None:
    for op, index, value in rules_ops:
        if op == "add":
            rules.insert(index, value)
        elif op == "replace":
            rules[index] = value
        else:
            del rules[index]


def _patched_site(version: PlaybookVersion, site: _Site, patch: list[dict[str, Any]]) -> _Site:
    """The site as it would be after ``patch`` (raises when the result is not valid)."""
    document = apply_patch(version.document, patch)
    playbook = parse_playbook(render(document))
    patched = PlaybookVersion(version.path, version.version, render(document), playbook, document)
    site_after = _site(patched, playbook.step(site.step.step), site.tool_index)
    if site_after is None:
        raise PatchError("the patched playbook lost the step's tool")
    return site_after


# ---------------------------------------------------------------------- the learner


def retry_findings(
    runs: Sequence[ToolRun], version: PlaybookVersion, config: LearnerConfig
) -> list[RetryFinding]:
    """For every (step, error class) seen in ``runs``: the verdict, and a draft when the
    version's policy should change (see the module docstring)."""
    grouped: dict[tuple[str, int | None], list[ToolRun]] = defaultdict(list)
    for run in runs:
        grouped[(run.step, run.tool_index)].append(run)
    findings: list[RetryFinding] = []
    for (step_name, tool_index), site_runs in sorted(
        grouped.items(), key=lambda item: (item[0][0], item[0][1] or 0)
    ):
        try:
            step = version.playbook.step(step_name)
        except KeyError:
            continue
        site = _site(version, step, tool_index)
        if site is None:
            continue
        relevant = [r for r in site_runs if r.tool_kind in (None, site.kind)]
        findings += _site_findings(site, relevant, version, config)
    return findings


def _site_findings(
    site: _Site, runs: Sequence[ToolRun], version: PlaybookVersion, config: LearnerConfig
) -> list[RetryFinding]:
    stats = _class_stats(runs, config.recovery_window_s)
    findings: list[RetryFinding] = []
    permanent: list[_ClassStats] = []
    step = site.step.step
    single = [r.duration_s for r in runs if len(r.attempts) == 1]
    attempt_s = quantile(single, 0.5) if single else 0.0
    for name in sorted(stats):
        entry = stats[name]
        if class_parts(name)[0] == "cancelled":
            findings.append(RetryFinding(step, name, "ignored", "cancellations are not errors"))
            continue
        if entry.occurrences < config.min_samples:
            findings.append(
                RetryFinding(
                    step,
                    name,
                    "undecided",
                    f"seen in {entry.occurrences} run(s), fewer than min_samples "
                    f"({config.min_samples})",
                )
            )
            continue
        if not entry.in_trials and not entry.said_retryable:
            doubt = _not_retryable_doubt(entry)
            if doubt is not None:
                findings.append(RetryFinding(step, name, "undecided", doubt))
                continue
        recovered, trials = entry.verdict_counts(config.min_samples)
        if recovered == 0:
            if trials < config.min_samples:
                findings.append(
                    RetryFinding(
                        step,
                        name,
                        "undecided",
                        f"never recovered, but only {trials} retry or next run(s) "
                        f"were seen (min_samples {config.min_samples})",
                    )
                )
                continue
            permanent.append(entry)
            continue
        findings.append(_transient(site, entry, stats, version, config, attempt_s))
    findings += _permanent(site, permanent, stats, version, config)
    return findings


def _not_retryable_doubt(entry: _ClassStats) -> str | None:
    """For a class the tool reports as not retryable and the policy never retried: why the
    next runs cannot call it transient (None when they can). Sets ``by_same_input`` when
    later runs with the same input are the evidence."""
    kind, _ = class_parts(entry.error_class)
    if kind == "validation":
        entry.by_same_input = entry.same_trials > 0
        if entry.same_recovered or (not entry.same_trials and entry.recovered):
            return "a configuration error (nothing ran) is never called transient"
        return None
    if entry.same_trials:
        entry.by_same_input = True  # the same input again: the direct evidence
        return None
    if not entry.recovered:
        return None
    if entry.error_class in TRANSIENT_EXCEPTIONS:
        return None  # the network or a peer failed: the next runs may tell
    return (
        "the tool reports it as not retryable and the policy never retried it; later runs "
        "that succeeded had other inputs (none with the same input was seen), so that is "
        "no proof a retry would help"
    )


def _transient(
    site: _Site,
    entry: _ClassStats,
    stats: Mapping[str, _ClassStats],
    version: PlaybookVersion,
    config: LearnerConfig,
    attempt_s: float,
) -> RetryFinding:
    step, name = site.step.step, entry.error_class
    if site.not_idempotent:
        return RetryFinding(step, name, "transient", f"no retry proposed: {site.not_idempotent}")
    current = _current(site, name, entry.said_retryable)
    if current.explicit:
        return RetryFinding(step, name, "transient", f"left alone: {current.explicit}")
    recovered, trials = entry.rate_counts
    if trials < max(2, config.min_samples // 2):
        return RetryFinding(
            step, name, "transient", f"only {trials} retry or next run(s) to estimate from"
        )
    p = recovered / trials
    if p_within(p, config.max_attempts) < MIN_RECOVERY:
        return RetryFinding(
            step,
            name,
            "transient",
            f"recovers too rarely ({p:.0%} per attempt) for {config.max_attempts} attempts "
            f"to be worth their latency",
        )
    share, concurrent = _overlap(entry.failed_runs)
    jitter = share >= JITTER_SHARE and concurrent >= 2
    scale = 2.0 if jitter else 1.0  # full jitter waits uniform(0, delay): half on average
    recovery = entry.recovery_s
    p50 = quantile(recovery, 0.5) if recovery else 0.0
    p95 = quantile(recovery, 0.95) if recovery else 0.0
    delay = nice(max(p50 * scale, config.min_retry_delay_s))
    max_delay = max(nice(max(p95 * scale, config.min_retry_delay_s)), delay)
    then: dict[str, Any] = {
        "do": "retry",
        "attempts": 2,
        "backoff": "exponential",
        "delay": delay,
        "max_delay": max_delay,
    }
    if jitter:
        then["jitter"] = True
    attempts = attempts_for(p, config.target_success, config.max_attempts)
    while attempts < config.max_attempts and sum(_waits(then, attempts, False)) < p95:
        attempts += 1  # the waits must also cover the slow recoveries
    then["attempts"] = attempts
    if _fits(current, then, jitter, config):
        return RetryFinding(
            step,
            name,
            "transient",
            f"the current policy already retries it ({current.attempts} attempts, "
            f"{current.label}) about as proposed",
        )
    rule = {"when": retry_when([name]), "then": then}
    rules = site.policy.rules if site.policy else []
    same = next(
        (i for i, r in enumerate(rules) if isinstance(r.when, str) and r.when == rule["when"]),
        None,
    )
    ops = [("replace", same, rule)] if same is not None else [("add", 0, rule)]
    patch = _policy_ops(version, site, ops)
    try:
        after = _patched_site(version, site, patch)
    except (NoetlError, PatchError) as exc:
        return RetryFinding(step, name, "transient", f"the patch would not apply: {exc}")
    check = _decide(after.policy, name, 1, entry.said_retryable)
    if check is None or check.action != "retry" or check.attempts != attempts:
        return RetryFinding(step, name, "transient", "the patched policy would not retry it")

    low, high = wilson_interval(recovered, trials, config.confidence)
    first_fail = entry.first_failures / entry.runs if entry.runs else 0.0
    current_waits = current.waits()
    new_waits = _waits(then, attempts, jitter)
    seconds_now = _expected_seconds(first_fail, p, current.attempts, current_waits, attempt_s)
    seconds_new = _expected_seconds(first_fail, p, attempts, new_waits, attempt_s)
    fail_now = first_fail * (1 - p_within(p, current.attempts))
    fail_new = first_fail * (1 - p_within(p, attempts))
    added = seconds_new - seconds_now
    evidence = {
        "error_class": name,
        "verdict": "transient",
        "tool_kind": site.kind,
        "source": entry.source,
        "tool_said_retryable": entry.said_retryable,
        "counts": _counts(entry),
        "per_attempt_success": _interval((recovered, trials), config.confidence),
        "p_success_within": {
            "current": _within(p, low, high, current.attempts),
            "proposed": _within(p, low, high, attempts),
            "target": config.target_success,
        },
        "recovery_s": {"n": len(recovery), "p50": _round(p50), "p95": _round(p95)},
        "concurrent_failures": {"overlapping_share": _round(share), "max_executions": concurrent},
        "current_policy": {
            "attempts": current.attempts,
            "rule": current.label,
            **{k: v for k, v in current.then.items() if k != "do"},
        },
        "proposed_policy": dict(then),
        "expected": {
            "failures_per_100_runs_now": _round(100 * fail_now, 2),
            "failures_per_100_runs_after": _round(100 * fail_new, 2),
            "failures_avoided_per_100_runs": _round(100 * (fail_now - fail_new), 2),
            "seconds_added_per_run": _round(added),
            "cost_added_per_run": _cost(added, site.cost_per_hour),
        },
    }
    rationale = (
        f"Step `{step}` failed with {name} in {entry.occurrences} of {entry.runs} runs, and "
        f"the error went away: {recovered} of {trials} "
        f"{_SOURCE_WORDS[entry.source]} succeeded "
        f"({p:.0%}, {config.confidence:.0%} interval {low:.0%}-{high:.0%}). "
        f"Retrying it up to {attempts} attempts should let "
        f"{p_within(p, attempts):.1%} of the affected runs succeed "
        f"(now {p_within(p, current.attempts):.1%} with {current.attempts}), avoiding about "
        f"{100 * (fail_now - fail_new):.1f} failures per 100 runs at about "
        f"{added:.2f}s more per run. The first retry waits {delay:g}s, doubling up to "
        f"{max_delay:g}s, to cover the observed recovery time (median {p50:.2f}s, "
        f"95th percentile {p95:.2f}s)"
        + (
            "; the waits are jittered because runs of different executions failed at "
            "the same time and would otherwise retry together."
            if jitter
            else "."
        )
        + " The rule matches only this error; the step's other rules stay as they are."
        + _label_note(entry)
    )
    draft = ProposalDraft(
        target=Target(version.path, version.version, step),
        kind="retry",
        patch=patch,
        evidence=evidence,
        rationale=rationale,
        evidence_size=entry.occurrences,
        learner=LEARNER,
    )
    return RetryFinding(step, name, "transient", f"retry up to {attempts} attempts", draft)


def _label_note(entry: _ClassStats) -> str:
    """Why a class the tool reports as not retryable is called transient all the same."""
    if entry.said_retryable or entry.in_trials:
        return ""
    if entry.source == "same_input":
        return (
            f" The tool reports {entry.error_class} as not retryable, but runs with the same "
            "input failed and then succeeded: the failure does not come from the input."
        )
    return (
        f" The tool reports {entry.error_class} as not retryable, but it is a network or "
        "peer failure by nature, which a later attempt can get past."
    )


def _within(p: float, low: float, high: float, attempts: int) -> dict[str, Any]:
    return {
        "attempts": attempts,
        "p": _round(p_within(p, attempts)),
        "low": _round(p_within(low, attempts)),
        "high": _round(p_within(high, attempts)),
    }


def _cost(seconds: float, cost_per_hour: float | None) -> float | None:
    if cost_per_hour is None:
        return None
    return round(seconds * cost_per_hour / 3600.0, 8)


def _fits(current: _Current, then: Mapping[str, Any], jitter: bool, config: LearnerConfig) -> bool:
    """Whether the current retry of the class is already about what would be proposed:
    at least as many attempts, a first delay within a factor of two, jitter if needed."""
    if current.attempts < int(then["attempts"]) or (jitter and not current.jitter):
        return False
    wanted = float(then["delay"])
    delay = current.delays[0] if current.delays else 0.0
    if wanted <= config.min_retry_delay_s and delay <= 2 * config.min_retry_delay_s:
        return True
    return wanted / 2 <= delay <= wanted * 2


def _permanent(
    site: _Site,
    entries: Sequence[_ClassStats],
    stats: Mapping[str, _ClassStats],
    version: PlaybookVersion,
    config: LearnerConfig,
) -> list[RetryFinding]:
    """Findings for the classes that never recovered; one ``retry_remove`` draft per rule
    that retries some of them."""
    step = site.step.step
    findings: list[RetryFinding] = []
    by_rule: dict[str, list[_ClassStats]] = defaultdict(list)
    for entry in entries:
        current = _current(site, entry.error_class, entry.said_retryable)
        if current.label is None or current.attempts <= 1 or current.explicit:
            findings.append(
                RetryFinding(
                    step,
                    entry.error_class,
                    "permanent",
                    f"never recovered in {entry.trials} tries; not retried now, nothing to change",
                )
            )
            continue
        by_rule[current.label].append(entry)
    for label, group in sorted(by_rule.items()):
        findings += _remove(site, label, group, stats, version, config)
    return findings


def _said(stats: Mapping[str, _ClassStats], name: str) -> bool:
    """What the tool said about retrying ``name`` (True for a class never seen)."""
    entry = stats.get(name)
    return entry.said_retryable if entry is not None else True


def _remove(
    site: _Site,
    label: str,
    group: Sequence[_ClassStats],
    stats: Mapping[str, _ClassStats],
    version: PlaybookVersion,
    config: LearnerConfig,
) -> list[RetryFinding]:
    step = site.step.step
    names = [entry.error_class for entry in group]
    policy = site.policy
    index = _rule_index(policy, label)
    if policy is None or index is None:
        return [RetryFinding(step, n, "permanent", f"cannot find rule {label}") for n in names]
    rule = policy.rules[index]
    excluded = class_match(names)
    others = sorted((set(stats) | set(PROBE_CLASSES)) - set(names))
    retried_others = [
        other
        for other in others
        if (d := _decide(policy, other, 1, _said(stats, other))) is not None and d.rule == label
    ]
    kept = [other for other in retried_others if other in stats]
    ops: list[tuple[str, int, Any]]
    how: str
    if rule.else_ is None and not retried_others:
        ops, how = [("remove", index, None)], f"removes {label}, which retries nothing else"
    else:
        when = rule.when
        match = _SINGLE_EXPRESSION.match(when) if isinstance(when, str) else None
        if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
            narrowed = f"{{{{ ({match.group('expr').strip()}) and not ({excluded}) }}}}"
        elif rule.else_ is None and (when is None or when is True):
            narrowed = f"{{{{ not ({excluded}) }}}}"
        else:
            narrowed = ""
        if narrowed:
            value = {**_document_rule(version, site, index), "when": narrowed}
            ops, how = [("replace", index, value)], f"narrows {label} to leave them out"
        else:
            guard = {"when": "{{ " + excluded + " }}", "then": {"do": "fail"}}
            ops, how = [("add", index, guard)], f"fails them before {label} retries them"
    patch = _policy_ops(version, site, ops)
    try:
        after = _patched_site(version, site, patch)
    except (NoetlError, PatchError) as exc:
        reason = f"the patch would not apply: {exc}"
        return [RetryFinding(step, n, "permanent", reason) for n in names]
    for entry in group:
        decision = _decide(after.policy, entry.error_class, 1, entry.said_retryable)
        if decision is None or decision.action == "retry":
            reason = "the patched policy would still retry it"
            return [RetryFinding(step, n, "permanent", reason) for n in names]
    for other in retried_others:
        decision = _decide(after.policy, other, 1, _said(stats, other))
        if decision is None or decision.action != "retry":
            reason = f"narrowing {label} would stop retrying {other} too"
            return [RetryFinding(step, n, "permanent", reason) for n in names]

    runs = max(entry.runs for entry in group)
    wasted = sum(entry.wasted_s for entry in group) / runs if runs else 0.0
    occurrences = sum(entry.occurrences for entry in group)
    classes = {
        entry.error_class: {
            "verdict": "permanent",
            "counts": _counts(entry),
            "recovery": _interval(entry.verdict_counts(config.min_samples), config.confidence),
            "tool_said_retryable": entry.said_retryable,
        }
        for entry in group
    }
    current = _current(site, group[0].error_class, group[0].said_retryable)
    evidence = {
        "error_classes": classes,
        "rule": label,
        "current_policy": {"attempts": current.attempts, **current.then},
        "still_retried": kept,
        "expected": {
            "failures_avoided_per_100_runs": 0.0,
            "seconds_added_per_run": _round(-wasted),
            "cost_added_per_run": _cost(-wasted, site.cost_per_hour),
        },
    }
    listed = ", ".join(names)
    upper = max(
        wilson_interval(*e.verdict_counts(config.min_samples), config.confidence)[1] for e in group
    )
    tries = sum(e.verdict_counts(config.min_samples)[1] for e in group)
    alone = all(e.in_trials >= config.min_samples for e in group)
    what = "retries the policy made" if alone else "retries and next runs"
    rationale = (
        f"Step `{step}` failed with {listed} in {occurrences} runs and never recovered: "
        f"none of the {tries} {what} succeeded "
        f"(at most {upper:.0%} "
        f"per attempt at {config.confidence:.0%} confidence). Such errors are permanent "
        f"(a wrong credential, a bug in the code or the query): retrying them only delays "
        f"the failure, by about {wasted:.2f}s per run. This change {how}"
        + (f"; it keeps retrying {', '.join(kept)}." if kept else ".")
    )
    draft = ProposalDraft(
        target=Target(version.path, version.version, step),
        kind="retry_remove",
        patch=patch,
        evidence=evidence,
        rationale=rationale,
        evidence_size=occurrences,
        learner=LEARNER,
    )
    findings = [RetryFinding(step, n, "permanent", f"retry_remove: {how}") for n in names[1:]]
    return [RetryFinding(step, names[0], "permanent", f"retry_remove: {how}", draft), *findings]
