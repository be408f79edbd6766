"""Statistics of one step of one playbook, from the exported events.

What the retry and hardware learners (and a person deciding on a policy) ask about a step:

- **runs**: finished step runs, how many succeeded and failed;
- **errors by class**: for each error class (``http_503``, ``timeout``, ``KeyError``),
  how many step runs it finally failed (``failed_runs``, and that share of all runs) and
  how many attempts it failed (``failed_attempts``, retried ones included, and that share
  of all attempts);
- **attempts**: how many tool runs took 1, 2, 3, ... attempts, how many of those ended
  in success, and P(success within k attempts) over all tool runs;
- **per worker pool**: tool-run duration p50/p95/p99 (exact quantiles: observed values,
  all attempts and retry delays included) and, where tools reported it, CPU time p50/p95
  and peak memory p95/max.

A tool run is one ``tool.processed`` event: one tool of the step, for one step run or loop
iteration. Its attempts are the ones it reports (one more than its ``retry.started``
events); a failed attempt is a ``retry.started`` whose reason is an error (a retry on a
result that was not an error is no failure) or a final ``tool.processed`` with an error.
Everything is plain ClickHouse SQL over the ``events`` table, so the same queries answer on
chDB and on a ClickHouse server.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from learning.analytics.schema import TABLE
from learning.analytics.store import AnalyticsStore

_WHERE = "playbook_path = {playbook:String} AND step = {step:String}"

RUNS_SQL = f"""
SELECT count() AS runs, countIf(status = 'success') AS succeeded,
       countIf(status = 'error') AS failed
FROM {TABLE}
WHERE event_type = 'step.finished' AND {_WHERE}
"""

ERRORS_SQL = f"""
SELECT error_class,
       countIf(event_type = 'step.finished') AS failed_runs,
       countIf(event_type != 'step.finished') AS failed_attempts
FROM {TABLE}
WHERE {_WHERE} AND error_class IS NOT NULL
  AND ((event_type IN ('step.finished', 'tool.processed') AND status = 'error')
       OR event_type = 'retry.started')
GROUP BY error_class
ORDER BY failed_runs DESC, failed_attempts DESC, error_class
"""

ATTEMPTS_SQL = f"""
SELECT toUInt32(coalesce(attempts, attempt, 1)) AS attempts, count() AS tool_runs,
       countIf(status = 'success') AS succeeded
FROM {TABLE}
WHERE event_type = 'tool.processed' AND {_WHERE}
GROUP BY attempts
ORDER BY attempts
"""

POOLS_SQL = f"""
SELECT coalesce(pool, 'unknown') AS pool, count() AS tool_runs,
       quantilesExact(0.5, 0.95, 0.99)(coalesce(wall_ms, toFloat64(duration_ms))) AS duration,
       count(cpu_ms) AS usage_reported,
       quantilesExact(0.5, 0.95)(cpu_ms) AS cpu,
       count(peak_rss_kb) AS memory_reported,
       quantilesExact(0.95)(peak_rss_kb) AS memory,
       max(peak_rss_kb) AS memory_max
FROM {TABLE}
WHERE event_type = 'tool.processed' AND {_WHERE}
GROUP BY pool
ORDER BY pool
"""

STEPS_SQL = f"""
SELECT step, count() AS runs
FROM {TABLE}
WHERE event_type = 'step.finished' AND playbook_path = {{playbook:String}}
GROUP BY step
ORDER BY step
"""


@dataclass(frozen=True, slots=True)
class ErrorClassStats:
    """How often one error class failed the step's runs and attempts."""

    error_class: str
    failed_runs: int
    failed_attempts: int
    run_rate: float  # failed_runs / runs
    attempt_rate: float  # failed_attempts / attempts


@dataclass(frozen=True, slots=True)
class AttemptStats:
    """Tool runs that took ``attempts`` attempts, and P(success within that many)."""

    attempts: int
    tool_runs: int
    succeeded: int
    success_within: float


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Durations (ms) in one worker pool and, when reported, resource use."""

    pool: str
    tool_runs: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    usage_reported: int = 0
    cpu_p50_ms: float | None = None
    cpu_p95_ms: float | None = None
    peak_rss_p95_kb: int | None = None
    peak_rss_max_kb: int | None = None


@dataclass(frozen=True, slots=True)
class StepStatistics:
    """Everything :func:`step_statistics` knows about one step (see the module doc)."""

    playbook: str
    step: str
    runs: int
    succeeded: int
    failed: int
    failure_rate: float
    tool_runs: int
    attempts_total: int
    errors: list[ErrorClassStats] = field(default_factory=list)
    attempts: list[AttemptStats] = field(default_factory=list)
    pools: list[PoolStats] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def step_statistics(store: AnalyticsStore, playbook: str, step: str) -> StepStatistics:
    """Statistics of ``step`` of ``playbook`` over every exported run (all zero and empty
    when none has been exported). Raises ``AnalyticsError`` when the store fails."""
    params = {"playbook": playbook, "step": step}
    runs = store.query(RUNS_SQL, params).to_pylist()[0]
    attempt_rows = store.query(ATTEMPTS_SQL, params).to_pylist()
    tool_runs = sum(int(r["tool_runs"]) for r in attempt_rows)
    attempts_total = sum(int(r["attempts"]) * int(r["tool_runs"]) for r in attempt_rows)
    attempts: list[AttemptStats] = []
    succeeded_so_far = 0
    for row in attempt_rows:
        succeeded_so_far += int(row["succeeded"])
        attempts.append(
            AttemptStats(
                attempts=int(row["attempts"]),
                tool_runs=int(row["tool_runs"]),
                succeeded=int(row["succeeded"]),
                success_within=_ratio(succeeded_so_far, tool_runs),
            )
        )
    total_runs = int(runs["runs"])
    errors = [
        ErrorClassStats(
            error_class=str(row["error_class"]),
            failed_runs=int(row["failed_runs"]),
            failed_attempts=int(row["failed_attempts"]),
            run_rate=_ratio(int(row["failed_runs"]), total_runs),
            attempt_rate=_ratio(int(row["failed_attempts"]), attempts_total),
        )
        for row in store.query(ERRORS_SQL, params).to_pylist()
    ]
    pools = [_pool(row) for row in store.query(POOLS_SQL, params).to_pylist()]
    return StepStatistics(
        playbook=playbook,
        step=step,
        runs=total_runs,
        succeeded=int(runs["succeeded"]),
        failed=int(runs["failed"]),
        failure_rate=_ratio(int(runs["failed"]), total_runs),
        tool_runs=tool_runs,
        attempts_total=attempts_total,
        errors=errors,
        attempts=attempts,
        pools=pools,
    )


def playbook_steps(store: AnalyticsStore, playbook: str) -> list[str]:
    """Names of the steps of ``playbook`` with at least one exported finished run."""
    rows = store.query(STEPS_SQL, {"playbook": playbook}).to_pylist()
    return [str(row["step"]) for row in rows if row["step"] is not None]


def _pool(row: dict[str, Any]) -> PoolStats:
    duration = _quantiles(row["duration"], 3)
    reported = int(row["usage_reported"])
    cpu = _quantiles(row["cpu"], 2) if reported else [None, None]
    memory = _quantiles(row["memory"], 1) if int(row["memory_reported"]) else [None]
    top = row["memory_max"]
    return PoolStats(
        pool=str(row["pool"]),
        tool_runs=int(row["tool_runs"]),
        p50_ms=duration[0],
        p95_ms=duration[1],
        p99_ms=duration[2],
        usage_reported=reported,
        cpu_p50_ms=cpu[0],
        cpu_p95_ms=cpu[1],
        peak_rss_p95_kb=None if memory[0] is None else int(memory[0]),
        peak_rss_max_kb=None if top is None or not int(row["memory_reported"]) else int(top),
    )


def _quantiles(values: Any, count: int) -> list[float | None]:
    found = list(values or [])
    cleaned: list[float | None] = [
        None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 3)
        for v in found
    ]
    return (cleaned + [None] * count)[:count]


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0
