"""The event log as the learners read it: tool runs, loop runs and executions per playbook.

``PolicyHistory`` follows ``EventStore.read_all`` page by page and folds the events into

- ``ToolRun``: one per run of a step's tool (``step_run_id`` and loop iteration), with
  every attempt's outcome, error class, ``retryable``, end time and the policy's delay
  before it, the worker pool, the measured usage and the final outcome. The members of a
  tool pipeline are one run: its attempts are those of the member that ended the pipeline
  (the last one, or the one whose failure stopped it), its usage the sum of all members.
  Its ``input_key`` digests what the step's input is rendered from when it starts: the
  execution's workload, the outputs and ``set`` variables of the steps finished before
  it, its loop's items and its iteration (runs of one step with the same key had the same
  input; the retry learner tells a flaky step from a deterministic failure by it);
- ``LoopRun``: one per run of a looping step, with the ``max_in_flight`` of the catalog
  version that ran, the wall time from ``loop.started`` to ``loop.finished`` and the busy
  time: the sum of the iterations' durations, each from ``loop.iteration.started`` to the
  iteration's final ``tool.processed``;
- ``ExecutionRun``: one per finished execution (cancelled ones are left out: they say
  nothing about the playbook), with its duration and, when the playbook declares pools
  with ``cost_per_hour``, its cost: the wall seconds of its tool runs at their pool's price.

It keeps its position and its partial state, so the next ``refresh`` reads only what is
new. Events a concurrent writer committed late with a lower position are caught by
re-reading a window before the position and skipping what was seen (within an execution
``seq`` grows in commit order). I/O goes only through the ``EventStore`` and
``CatalogStore`` ports.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.core import events as ev
from engine.core.events import Event
from engine.dsl.loader import parse_playbook
from engine.dsl.models import Playbook
from engine.errors import NoetlError, NotFound
from engine.ports import CatalogStore, EventStore
from learning.analytics.export import error_class, reason_class
from learning.event_log import log_pages
from learning.policy.model import Attempt, ExecutionRun, LoopRun, ToolRun

PAGE = 1000
LOOKBACK = 1000
_TOOL_KEY = re.compile(r":(\d+):(?:start|done|retry:\d+|retry-start:\d+)$")
_FINISHED = {ev.STATUS_SUCCESS: True, ev.STATUS_ERROR: False}


def timestamp_seconds(text: str | None) -> float | None:
    """Epoch seconds of an event timestamp (ISO 8601), None when it cannot be read."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass(slots=True)
class _AttemptState:
    ok: bool | None = None
    error_class: str | None = None
    retryable: bool | None = None
    ended_at: float | None = None
    delay_before_s: float | None = None


@dataclass(slots=True)
class _ToolState:
    """One tool (pipeline member) of one run: its attempts as the events tell them."""

    started_at: float | None = None
    attempts: dict[int, _AttemptState] = field(default_factory=dict)

    def attempt(self, number: int) -> _AttemptState:
        return self.attempts.setdefault(number, _AttemptState())


@dataclass(slots=True)
class _RunState:
    """One tool run (step run and iteration) while its tools are running."""

    started_at: float | None = None
    wall_ms: float | None = None
    cpu_ms: float | None = None
    peak_rss_kb: int | None = None
    tools: dict[str, _ToolState] = field(default_factory=dict)
    input_key: str | None = None


@dataclass(slots=True)
class _LoopState:
    started_at: float | None = None
    count: int | None = None
    iterations: dict[int, float] = field(default_factory=dict)  # index -> started
    busy_s: float = 0.0
    finished: int = 0


@dataclass(slots=True)
class _ExecutionState:
    path: str
    version: int | None
    requested_at: float | None = None
    runs: dict[tuple[str, int | None], _RunState] = field(default_factory=dict)
    loops: dict[str, _LoopState] = field(default_factory=dict)
    pool_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    # Digests of what step inputs are rendered from (None: the workload was not read).
    inputs: dict[str, str] | None = None

    def input_key(self, step: str, iteration: int | None) -> str | None:
        """The digest of what a run of ``step`` (``iteration``) renders its input from;
        the outputs of the step's own iterations are left out (in a parallel loop their
        order is chance)."""
        if self.inputs is None:
            return None
        own = f"iteration:{step}:"
        parts = sorted((k, v) for k, v in self.inputs.items() if not k.startswith(own))
        return _digest([step, iteration, parts])


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _step_of(step_run_id: str) -> str:
    return step_run_id.rpartition("#")[0] or step_run_id


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _tool_key(event: Event) -> str:
    match = _TOOL_KEY.search(event.event_id)
    return match.group(1) if match else f"entity:{event.entity_id}"


def _error_fields(payload: Mapping[str, Any]) -> tuple[str | None, bool | None]:
    error = payload.get("error")
    if not isinstance(error, dict):
        return None, None
    retryable = error.get("retryable")
    return (
        error_class(error.get("kind"), error.get("code")),
        retryable if isinstance(retryable, bool) else None,
    )


class PolicyHistory:
    """Tool runs, loop runs and executions per playbook, read incrementally from the log.

    ``refresh`` reads what was appended since the last call; the ``tool_runs``,
    ``loop_runs`` and ``execution_runs`` accessors answer from what was read so far.
    """

    def __init__(
        self,
        events: EventStore,
        catalog: CatalogStore,
        *,
        page: int = PAGE,
        lookback: int = LOOKBACK,
    ) -> None:
        if page < 1:
            raise ValueError(f"page must be at least 1, got {page}")
        self.events = events
        self.catalog = catalog
        self.page = page
        self.lookback = max(lookback, 0)
        self.position = 0
        self._lock = asyncio.Lock()
        self._seen: dict[str, int] = {}  # execution id -> highest seq folded
        self._open: dict[str, _ExecutionState] = {}
        self._closed: dict[str, tuple[str, int | None]] = {}
        self._playbooks: dict[tuple[str, int], Playbook | None] = {}
        self._tool_runs: dict[str, list[ToolRun]] = defaultdict(list)
        self._loop_runs: dict[str, list[LoopRun]] = defaultdict(list)
        self._execution_runs: dict[str, list[ExecutionRun]] = defaultdict(list)

    # ------------------------------------------------------------------ reading

    async def refresh(self) -> int:
        """Fold the events appended since the last call; return how many were new."""
        async with self._lock:
            folded = 0
            start = max(self.position - self.lookback, 0)
            async for batch in log_pages(self.events, start, self.page):
                for position, event in batch:
                    self.position = max(self.position, position)
                    seq = event.seq or 0
                    if seq and seq <= self._seen.get(event.execution_id, 0):
                        continue
                    if seq:
                        self._seen[event.execution_id] = seq
                    folded += 1
                    await self._fold(event)
            return folded

    def playbooks(self) -> list[str]:
        """Paths of the playbooks with any tool run or execution read so far."""
        return sorted(set(self._tool_runs) | set(self._execution_runs))

    def tool_runs(self, playbook: str, version: int | None = None) -> list[ToolRun]:
        """The finished tool runs of ``playbook`` (of one ``version`` if given), by start."""
        runs = self._tool_runs.get(playbook, [])
        chosen = [r for r in runs if version is None or r.playbook_version == version]
        return sorted(chosen, key=lambda run: (run.started_at, run.finished_at))

    def loop_runs(self, playbook: str, version: int | None = None) -> list[LoopRun]:
        """The finished runs of looping steps of ``playbook`` (one ``version`` if given)."""
        runs = self._loop_runs.get(playbook, [])
        return [r for r in runs if version is None or r.playbook_version == version]

    def execution_runs(self, playbook: str, version: int | None = None) -> list[ExecutionRun]:
        """The finished (not cancelled) executions of ``playbook`` (one ``version``)."""
        runs = self._execution_runs.get(playbook, [])
        return [r for r in runs if version is None or r.playbook_version == version]

    # ------------------------------------------------------------------ folding

    async def _fold(self, event: Event) -> None:
        kind = event.event_type
        if kind == ev.PLAYBOOK_EXECUTION_REQUESTED:
            payload = event.payload
            version = payload.get("playbook_version")
            path = payload.get("playbook_path") or event.entity_id or ""
            self._open[event.execution_id] = _ExecutionState(
                str(path),
                version if isinstance(version, int) else None,
                timestamp_seconds(event.timestamp),
                inputs={"workload": _digest(payload.get("workload"))},
            )
            return
        if kind not in _HANDLED:
            return
        state = await self._execution(event.execution_id)
        if state is None:
            return
        if kind == ev.TOOL_STARTED:
            self._on_tool_started(state, event)
        elif kind in (ev.STEP_STARTED, ev.NEXT_EVALUATED):
            self._on_context(state, event)
        elif kind == ev.RETRY_STARTED:
            self._on_retry_started(state, event)
        elif kind == ev.RETRY_PROCESSED:
            self._on_retry_processed(state, event)
        elif kind == ev.TOOL_PROCESSED:
            await self._on_tool_processed(state, event)
        elif kind in (ev.LOOP_STARTED, ev.LOOP_ITERATION_STARTED, ev.LOOP_ITERATION_FINISHED):
            self._on_loop(state, event)
        elif kind == ev.LOOP_FINISHED:
            await self._on_loop_finished(state, event)
        elif kind == ev.PLAYBOOK_PROCESSED:
            await self._on_processed(state, event)

    async def _execution(self, execution_id: str) -> _ExecutionState | None:
        state = self._open.get(execution_id)
        if state is not None:
            return state
        closed = self._closed.get(execution_id)
        if closed is None:
            try:
                summary = await self.events.get_execution(execution_id)
            except NotFound:
                return None
            closed = (summary.playbook_path, summary.playbook_version)
        # An event after the execution ended, or of an execution whose start was not
        # read: fold it into a fresh state so a late tool run still counts.
        state = _ExecutionState(closed[0], closed[1])
        self._open[execution_id] = state
        return state

    def _run(self, state: _ExecutionState, event: Event) -> _RunState:
        key = (event.step_run_id or "", event.iteration)
        return state.runs.setdefault(key, _RunState())

    def _on_context(self, state: _ExecutionState, event: Event) -> None:
        """A loop's items (``step.started``) and variables set on a step's arcs
        (``next.evaluated``): what later inputs are rendered from."""
        if state.inputs is None:
            return
        step_run_id = event.step_run_id or ""
        payload = event.payload
        if event.event_type == ev.STEP_STARTED and "items" in payload:
            state.inputs[f"items:{_step_of(step_run_id)}"] = _digest(payload.get("items"))
        elif event.event_type == ev.NEXT_EVALUATED and payload.get("set"):
            state.inputs[f"set-next:{_step_of(step_run_id)}"] = _digest(payload.get("set"))

    def _on_tool_started(self, state: _ExecutionState, event: Event) -> None:
        run = self._run(state, event)
        at = timestamp_seconds(event.timestamp)
        if run.started_at is None:
            run.started_at = at
            run.input_key = state.input_key(_step_of(event.step_run_id or ""), event.iteration)
        tool = run.tools.setdefault(_tool_key(event), _ToolState())
        tool.started_at = tool.started_at or at

    def _on_retry_started(self, state: _ExecutionState, event: Event) -> None:
        tool = self._run(state, event).tools.setdefault(_tool_key(event), _ToolState())
        number = event.attempt or 2
        delay = _number(event.payload.get("delay_ms"))
        tool.attempt(number).delay_before_s = None if delay is None else delay / 1000.0
        previous = tool.attempt(number - 1)
        reason = event.payload.get("reason")
        if previous.ok is None:
            previous.ok = not reason
            previous.error_class = reason_class(reason if isinstance(reason, str) else None)
        if previous.ended_at is None:
            previous.ended_at = timestamp_seconds(event.timestamp)

    def _on_retry_processed(self, state: _ExecutionState, event: Event) -> None:
        tool = self._run(state, event).tools.setdefault(_tool_key(event), _ToolState())
        attempt = tool.attempt(event.attempt or 2)
        attempt.ok = event.status == ev.STATUS_SUCCESS
        attempt.error_class, attempt.retryable = _error_fields(event.payload)
        attempt.ended_at = timestamp_seconds(event.timestamp)

    async def _on_tool_processed(self, state: _ExecutionState, event: Event) -> None:
        payload = event.payload
        run = self._run(state, event)
        usage = _mapping(_mapping(payload.get("meta")).get("usage"))
        wall = _number(usage.get("wall_ms"))
        cpu = _number(usage.get("cpu_ms"))
        peak = usage.get("peak_rss_kb")
        if wall is not None:
            run.wall_ms = (run.wall_ms or 0.0) + wall
        if cpu is not None:
            run.cpu_ms = (run.cpu_ms or 0.0) + cpu
        if isinstance(peak, int) and not isinstance(peak, bool):
            run.peak_rss_kb = max(run.peak_rss_kb or 0, peak)
        if payload.get("partial"):
            return
        key = (event.step_run_id or "", event.iteration)
        state.runs.pop(key, None)
        tool = run.tools.get(_tool_key(event), _ToolState())
        ended = timestamp_seconds(event.timestamp) or 0.0
        final = event.attempt or payload.get("attempts") or max(tool.attempts, default=1)
        last = tool.attempt(int(final))
        last.ok = event.status == ev.STATUS_SUCCESS
        last.error_class, last.retryable = _error_fields(payload)
        last.ended_at = last.ended_at or ended
        attempts = tuple(
            Attempt(
                number=number,
                ok=bool(seen.ok),
                error_class=seen.error_class,
                retryable=seen.retryable,
                ended_at=seen.ended_at,
                delay_before_s=seen.delay_before_s,
            )
            for number in range(1, int(final) + 1)
            for seen in [tool.attempts.get(number, _AttemptState())]
        )
        started = run.started_at
        if started is None:
            started = ended - (run.wall_ms or 0.0) / 1000.0
        meta = _mapping(payload.get("meta"))
        pool = meta.get("pool")
        index = payload.get("pipeline_index")
        step_run_id = event.step_run_id or ""
        tool_run = ToolRun(
            execution_id=event.execution_id,
            playbook_path=state.path,
            playbook_version=state.version,
            step=_step_of(step_run_id),
            step_run_id=step_run_id,
            tool_kind=str(payload["kind"]) if payload.get("kind") else None,
            pool=str(pool) if pool else None,
            attempts=attempts,
            ok=event.status == ev.STATUS_SUCCESS,
            started_at=started,
            finished_at=ended,
            iteration=event.iteration,
            wall_ms=run.wall_ms,
            cpu_ms=run.cpu_ms,
            peak_rss_kb=run.peak_rss_kb,
            tool=str(payload["tool"]) if payload.get("tool") else None,
            tool_index=index if isinstance(index, int) and not isinstance(index, bool) else None,
            input_key=run.input_key,
        )
        self._tool_runs[state.path].append(tool_run)
        if state.inputs is not None:
            step = tool_run.step
            if event.iteration is None:
                produced = f"output:{step}"
            else:
                produced = f"iteration:{step}:{event.iteration}"
            state.inputs[produced] = _digest([payload.get("output"), payload.get("set")])
        if event.iteration is not None:
            self._iteration_ended(state, event)
        seconds = (run.wall_ms / 1000.0) if run.wall_ms is not None else tool_run.duration_s
        state.pool_seconds[tool_run.pool or ""] += seconds

    def _on_loop(self, state: _ExecutionState, event: Event) -> None:
        loop = state.loops.setdefault(event.step_run_id or "", _LoopState())
        at = timestamp_seconds(event.timestamp)
        if event.event_type == ev.LOOP_STARTED:
            loop.started_at = at
            count = event.payload.get("count")
            loop.count = count if isinstance(count, int) else None
        elif event.event_type == ev.LOOP_ITERATION_STARTED and event.iteration is not None:
            if at is not None:
                loop.iterations[event.iteration] = at
        elif event.iteration is not None and event.status != ev.STATUS_CANCELLED:
            self._iteration_ended(state, event)

    def _iteration_ended(self, state: _ExecutionState, event: Event) -> None:
        """An iteration ends with its final ``tool.processed`` (or its
        ``loop.iteration.finished``, whichever is read first). Iterations a failing loop
        closed as ``cancelled`` before they reported are left out: they ended with no outcome."""
        loop = state.loops.get(event.step_run_id or "")
        if loop is None or event.iteration is None:
            return
        began = loop.iterations.pop(event.iteration, None)
        at = timestamp_seconds(event.timestamp)
        if began is not None and at is not None:
            loop.busy_s += max(0.0, at - began)
            loop.finished += 1

    async def _on_loop_finished(self, state: _ExecutionState, event: Event) -> None:
        step_run_id = event.step_run_id or ""
        loop = state.loops.pop(step_run_id, None)
        ended = timestamp_seconds(event.timestamp)
        if loop is None or loop.started_at is None or ended is None:
            return
        step = step_run_id.rpartition("#")[0] or step_run_id
        playbook = await self._playbook(state.path, state.version)
        max_in_flight: int | None = None
        if playbook is not None:
            try:
                spec = playbook.step(step).loop
            except KeyError:
                spec = None
            if spec is not None and spec.spec.mode == "parallel":
                max_in_flight = spec.spec.max_in_flight or loop.count or loop.finished or None
        self._loop_runs[state.path].append(
            LoopRun(
                execution_id=event.execution_id,
                playbook_path=state.path,
                playbook_version=state.version,
                step=step,
                iterations=loop.finished,
                max_in_flight=max_in_flight,
                wall_s=max(0.0, ended - loop.started_at),
                busy_s=loop.busy_s,
                ok=event.status == ev.STATUS_SUCCESS,
            )
        )

    async def _on_processed(self, state: _ExecutionState, event: Event) -> None:
        self._open.pop(event.execution_id, None)
        self._closed[event.execution_id] = (state.path, state.version)
        ok = _FINISHED.get(event.status or "")
        ended = timestamp_seconds(event.timestamp)
        if ok is None or ended is None or state.requested_at is None:
            return
        self._execution_runs[state.path].append(
            ExecutionRun(
                execution_id=event.execution_id,
                playbook_path=state.path,
                playbook_version=state.version,
                ok=ok,
                duration_s=max(0.0, ended - state.requested_at),
                cost=await self._cost(state),
            )
        )

    async def _cost(self, state: _ExecutionState) -> float | None:
        playbook = await self._playbook(state.path, state.version)
        if playbook is None:
            return None
        prices = {p.name: p.cost_per_hour for p in playbook.pools if p.cost_per_hour is not None}
        if not prices:
            return None
        return sum(
            seconds * prices.get(pool, 0.0) / 3600.0 for pool, seconds in state.pool_seconds.items()
        )

    async def _playbook(self, path: str, version: int | None) -> Playbook | None:
        """The parsed catalog version an execution ran (None when it cannot be had)."""
        if version is None:
            return None
        key = (path, version)
        if key not in self._playbooks:
            try:
                entry = await self.catalog.get(path, version)
                self._playbooks[key] = parse_playbook(entry.content, check=False)
            except NoetlError:
                self._playbooks[key] = None
        return self._playbooks[key]


_HANDLED = frozenset(
    {
        ev.STEP_STARTED,
        ev.NEXT_EVALUATED,
        ev.TOOL_STARTED,
        ev.RETRY_STARTED,
        ev.RETRY_PROCESSED,
        ev.TOOL_PROCESSED,
        ev.LOOP_STARTED,
        ev.LOOP_ITERATION_STARTED,
        ev.LOOP_ITERATION_FINISHED,
        ev.LOOP_FINISHED,
        ev.PLAYBOOK_PROCESSED,
    }
)
