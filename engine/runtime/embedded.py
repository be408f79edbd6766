"""The embedded runtime: the engine in one process, tools run by in-process workers.

:class:`Engine` starts executions, feeds every reported event to the execution's state
machine, appends what the machine decides and dispatches the commands it issues. Every
decision is in the event log first, so :meth:`Engine.recover` rebuilds running executions
from the log after a restart and finishes them without re-running a step that finished.
An execution is owned by one process at a time (an exclusive file lock per execution).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from engine.core import events as ev
from engine.core.commands import RunTool
from engine.core.events import Event
from engine.core.machine import ExecutionMachine
from engine.dsl.loader import parse_playbook
from engine.dsl.models import ApprovalTool, Playbook
from engine.errors import Conflict, NoetlError, NotFound, StoreError
from engine.ports import (
    CatalogEntry,
    CatalogStore,
    CommandQueue,
    CredentialProvider,
    EventStore,
)
from engine.runtime.redaction import RedactingCredentialProvider, Redactor
from engine.runtime.tool_runner import ToolRunner, now
from engine.tools.outcome import ToolOutcome
from engine.tools.registry import ToolRegistry

logger = logging.getLogger(__name__)
Listener = Callable[[Event], None]
Admission = Callable[[CatalogEntry, Playbook], Awaitable[None]]  # raises to refuse
FLUSH_DELAY = 0.05  # seconds a deferred report may wait for company
_DEFERRABLE = frozenset({ev.TOOL_STARTED})


@dataclass(frozen=True, slots=True)
class ExecutionOutcome:
    """How an execution ended (or that it is paused waiting for a person)."""

    execution_id: str
    status: str  # completed | failed | cancelled | paused | running
    result: Any = None
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "status": self.status,
            "result": self.result,
            "error": self.error,
        }


@dataclass(eq=False)
class _Live:
    machine: ExecutionMachine
    base_dir: str | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # finished or paused
    done: asyncio.Event = field(default_factory=asyncio.Event)  # finished
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    file_lock: IO[str] | None = None
    seen: set[str] = field(default_factory=set)  # event ids in the log
    buffer: list[Event] = field(default_factory=list)  # deferred reports
    flush: asyncio.TimerHandle | None = None


def _age_seconds(timestamp: str) -> float:
    """Seconds since an RFC 3339 timestamp (0 when it cannot be read)."""
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (datetime.now(UTC) - then).total_seconds()


def _expired(requested: Event) -> bool:
    """Whether an ``approval.requested`` event's timeout has passed."""
    timeout = requested.payload.get("timeout_s")
    if not timeout:
        return False
    return _age_seconds(requested.timestamp) >= float(timeout)


def new_execution_id() -> str:
    """Sortable, unique: milliseconds since the epoch in hex plus random bits."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(5)}"


class Engine:
    """Runs executions against an event store and a catalog."""

    def __init__(
        self,
        events: EventStore,
        catalog: CatalogStore,
        *,
        tools: ToolRegistry | None = None,
        credentials: CredentialProvider | None = None,
        lock_dir: str | Path | None = None,
        queue: CommandQueue | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        # Every credential the tools resolve is learned, and masked in every stored event.
        self.redactor = redactor or Redactor()
        if credentials is not None:
            credentials = RedactingCredentialProvider(credentials, self.redactor)
        self.events = events
        self.queue = queue
        self.catalog = catalog
        self.tools = tools or ToolRegistry()
        self._base_dirs: dict[str, str] = {}
        self.runner = ToolRunner(
            self.tools, credentials=credentials, base_dirs=self._base_dirs, children=self
        )
        self._live: dict[str, _Live] = {}
        self._listeners: list[Listener] = []
        self._lock_dir = Path(lock_dir) if lock_dir else None
        if self._lock_dir:
            self._lock_dir.mkdir(parents=True, exist_ok=True)
        self._playbooks: dict[tuple[str, int], Playbook] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._admissions: list[Admission] = []

    # ---------------------------------------------------------------- public API

    def prewarm(self, kinds: Iterable[str] = ("python",)) -> None:
        """Start tool workers of these kinds in the background so the first step does not
        wait for them."""
        for kind in kinds:
            executor = self.tools.get(kind)
            warm = getattr(executor, "warm", None)
            if warm is not None:
                task = asyncio.create_task(warm())
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def is_live(self, execution_id: str) -> bool:
        """Whether this engine holds the execution in memory (so it exists in the log)."""
        return execution_id in self._live

    def admit_with(self, check: Admission) -> None:
        """Call ``check`` before each execution starts (sub-playbooks too); it refuses the
        execution by raising, and nothing is stored for it."""
        self._admissions.append(check)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every event appended by this engine, in order."""
        self._listeners.append(listener)

    async def register(self, content: str, *, source: str | None = None) -> CatalogEntry:
        """Validate and register a playbook version; raise ``PlaybookInvalid`` if it is not."""
        playbook = parse_playbook(content, source=source)
        entry = await self.catalog.register(
            playbook.path,
            playbook.metadata.name,
            content,
            description=playbook.metadata.description,
            source=source,
        )
        self._playbooks[(entry.path, entry.version)] = playbook
        stored = await self.events.append(
            [
                Event(
                    event_id=f"registered:{entry.path}:{entry.version}",
                    event_type=ev.PLAYBOOK_REGISTERED,
                    execution_id=f"catalog:{entry.path}",
                    timestamp=now(),
                    entity_type="playbook",
                    entity_id=entry.path,
                    payload={"path": entry.path, "version": entry.version, "source": source},
                )
            ]
        )
        for event in stored:
            self._notify(event)
        return entry

    async def execute(
        self,
        path: str,
        *,
        version: int | None = None,
        workload: dict[str, Any] | None = None,
        execution_id: str | None = None,
        parent: RunTool | None = None,
    ) -> str:
        """Start an execution of a catalog playbook and return its id."""
        entry = await self.catalog.get(path, version)
        playbook = self._playbook(entry)
        for check in self._admissions:
            await check(entry, playbook)
        if self.queue is None:
            self.prewarm(playbook.tool_kinds & {"python"})
        execution_id = execution_id or new_execution_id()
        base_dir = str(Path(entry.source).resolve().parent) if entry.source else None
        live = self._adopt(playbook, execution_id, base_dir)
        payload: dict[str, Any] = {
            "playbook_path": entry.path,
            "playbook_version": entry.version,
            "workload": workload or {},
            "base_dir": base_dir,
        }
        if parent is not None:
            payload["parent_execution_id"] = parent.execution_id
            payload["parent_step_run_id"] = parent.step_run_id
        requested = Event(
            event_id=f"{execution_id}:1",
            event_type=ev.PLAYBOOK_EXECUTION_REQUESTED,
            execution_id=execution_id,
            timestamp=now(),
            entity_type="playbook",
            entity_id=entry.path,
            status=ev.STATUS_IN_PROGRESS,
            payload=payload,
        )
        await self._report(live, [requested])
        return execution_id

    async def run(
        self, path: str, *, version: int | None = None, workload: dict[str, Any] | None = None
    ) -> ExecutionOutcome:
        """Execute and wait until the execution finishes or pauses."""
        execution_id = await self.execute(path, version=version, workload=workload)
        return await self.wait(execution_id)

    async def wait(
        self, execution_id: str, timeout: float | None = None, *, through_pauses: bool = False
    ) -> ExecutionOutcome:
        """Wait until the execution finishes, or pauses for a person unless
        ``through_pauses``; return its outcome. Raise ``TimeoutError`` after ``timeout``."""
        live = self._live.get(execution_id)
        if live is not None:
            signal = live.done if through_pauses else live.settled
            await asyncio.wait_for(signal.wait(), timeout)
        return await self.outcome(execution_id)

    async def outcome(self, execution_id: str) -> ExecutionOutcome:
        """The execution's status, result and error as stored."""
        summary = await self.events.get_execution(execution_id)
        if summary.status in ("running", "paused"):
            return ExecutionOutcome(execution_id, summary.status)
        for event in reversed(await self.events.read(execution_id)):
            if event.event_type == ev.PLAYBOOK_PROCESSED:
                return ExecutionOutcome(
                    execution_id,
                    summary.status,
                    event.payload.get("result"),
                    event.payload.get("error"),
                )
        return ExecutionOutcome(execution_id, summary.status)

    async def recover(self) -> list[str]:
        """Pick up every running execution left by a stopped process, and every paused one
        whose approval timed out; return their ids."""
        resumed: list[str] = []
        for summary in await self.events.list_executions(status="running", limit=10_000):
            if summary.execution_id in self._live:
                continue
            with contextlib.suppress(Conflict):
                await self.resume(summary.execution_id)
                resumed.append(summary.execution_id)
        for summary in await self.events.list_executions(status="paused", limit=10_000):
            if summary.execution_id in self._live or not await self._approval_expired(
                summary.execution_id
            ):
                continue
            with contextlib.suppress(Conflict):
                await self.resume(summary.execution_id)
                resumed.append(summary.execution_id)
        return resumed

    async def _expire_approval(self, requested: Event) -> None:
        timeout = float(requested.payload.get("timeout_s") or 0)
        with contextlib.suppress(Conflict, NotFound):
            await self.decide_approval(
                str(requested.payload.get("approval_id")),
                approved=requested.payload.get("on_timeout") == "approve",
                decided_by="timeout",
                comment=f"no decision within {timeout:g}s",
            )

    async def _approval_expired(self, execution_id: str) -> bool:
        pending: dict[str | None, Event] = {}
        for event in await self.events.read(execution_id):
            if event.event_type == ev.APPROVAL_REQUESTED:
                pending[event.step_run_id] = event
            elif event.event_type == ev.APPROVAL_DECIDED:
                pending.pop(event.step_run_id, None)
        return any(_expired(e) for e in pending.values())

    async def resume(self, execution_id: str) -> ExecutionMachine:
        """Rebuild an execution from its events and carry on where it stopped."""
        live = self._live.get(execution_id)
        if live is not None:
            return live.machine
        stored = await self.events.read(execution_id)
        if not stored or stored[0].event_type != ev.PLAYBOOK_EXECUTION_REQUESTED:
            raise NotFound(
                f"execution '{execution_id}' not found; list them with "
                "`noetl-agent executions list`"
            )
        request = stored[0].payload
        entry = await self.catalog.get(request["playbook_path"], request["playbook_version"])
        playbook = self._playbook(entry)
        live = self._adopt(playbook, execution_id, request.get("base_dir"))
        async with live.lock:
            for event in stored:
                live.machine.apply(event)
                live.seen.add(event.event_id)
            decision = live.machine.decide()
            await self._append(live, decision.events)
            commands = live.machine.outstanding()
            issued = {command.command_id for command in decision.commands}
            commands = [c for c in commands if c.command_id not in issued] + decision.commands
            self._settle(live)
            for command in commands:
                self._dispatch(live, command)
            decided = {e.step_run_id for e in stored if e.event_type == ev.APPROVAL_DECIDED}
            pending = [
                e
                for e in stored
                if e.event_type == ev.APPROVAL_REQUESTED and e.step_run_id not in decided
            ]
            for event in pending:
                if not _expired(event):
                    self._arm_approval_timeout(live, event)
        for event in pending:
            if _expired(event):  # decided now, so a caller waiting for the pause sees the result
                await self._expire_approval(event)
        return live.machine

    async def decide_approval(
        self,
        approval_id: str,
        *,
        approved: bool,
        decided_by: str,
        comment: str | None = None,
    ) -> None:
        """Record a person's decision on a workflow approval and let the execution go on."""
        execution_id, _, step_run_id = approval_id.partition("/")
        if not step_run_id:
            raise NotFound(
                f"'{approval_id}' is not an approval id (EXECUTION/STEP#N); "
                "list pending ones with `noetl-agent approvals list`"
            )
        machine = await self.resume(execution_id)
        run = machine.runs.get(step_run_id)
        is_approval = run is not None and isinstance(machine.steps[run.step].tools[0], ApprovalTool)
        if run is None or not is_approval or not run.awaiting_approval:
            if run is not None and is_approval and run.finished:
                raise Conflict(f"approval '{approval_id}' was already decided")
            raise NotFound(
                f"no pending approval '{approval_id}'; list them with `noetl-agent approvals list`"
            )
        event = Event(
            event_id=f"{execution_id}:{step_run_id}:decided",
            event_type=ev.APPROVAL_DECIDED,
            execution_id=execution_id,
            timestamp=now(),
            entity_type="step",
            entity_id=run.step,
            step_run_id=step_run_id,
            status=ev.STATUS_SUCCESS,
            payload={
                "approval_id": approval_id,
                "approved": approved,
                "comment": comment,
                "decided_by": decided_by,
            },
        )
        await self._report(self._live[execution_id], [event])

    async def report(self, reported: Sequence[Event]) -> None:
        """Store events reported by workers and act on them; raise ``NotFound`` for an
        unknown execution. Reports may mix executions and may repeat (idempotent by id)."""
        grouped: dict[str, list[Event]] = {}
        for event in reported:
            grouped.setdefault(event.execution_id, []).append(event)
        for execution_id, batch in grouped.items():
            live = self._live.get(execution_id)
            if live is None:
                await self.resume(execution_id)
                live = self._live[execution_id]
            deferrable = all(e.event_type in _DEFERRABLE for e in batch)
            await self._report(live, batch, defer=deferrable)

    async def cancel(self, execution_id: str, reason: str = "cancelled by request") -> None:
        """Stop an execution: running tools are cancelled, the execution ends ``cancelled``."""
        machine = await self.resume(execution_id)
        if machine.finished:
            raise Conflict(f"execution '{execution_id}' has already finished ({machine.status})")
        event = Event(
            event_id=f"{execution_id}:cancel",
            event_type=ev.EXECUTION_CANCEL_REQUESTED,
            execution_id=execution_id,
            timestamp=now(),
            entity_type="playbook",
            entity_id=machine.playbook.path,
            payload={"reason": reason},
        )
        if self.queue is not None:
            await self.queue.cancel(execution_id)
        await self._report(self._live[execution_id], [event])

    async def aclose(self) -> None:
        """Cancel in-flight work, release locks and close the tool executors."""
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for live in list(self._live.values()):
            await self._stop(live)
        self._live.clear()
        await self.tools.aclose()

    # ---------------------------------------------------------------- sub-playbooks

    async def run_child(
        self, command: RunTool, path: str, version: int | None, workload: dict[str, Any]
    ) -> ToolOutcome:
        suffix = f"-{command.iteration}" if command.iteration is not None else ""
        child_id = f"{command.execution_id}.{command.step_run_id.replace('#', '-')}{suffix}"
        try:
            try:
                await self.events.get_execution(child_id)
                await self.resume(child_id)
            except NotFound:
                await self.execute(
                    path, version=version, workload=workload, execution_id=child_id, parent=command
                )
        except StoreError:
            raise
        except NoetlError as exc:  # unknown, invalid, or refused by an admission check
            return ToolOutcome.fail("validation", f"sub-playbook `{path}`: {exc}")
        outcome = await self.wait(child_id)
        if outcome.status == "completed":
            return ToolOutcome.ok(outcome.result, child_execution_id=child_id)
        message = (outcome.error or {}).get("message") or f"sub-playbook ended {outcome.status}"
        return ToolOutcome.fail(
            "validation",
            f"sub-playbook `{path}` ({child_id}) {outcome.status}: {message}",
            child_execution_id=child_id,
        )

    # ---------------------------------------------------------------- internals

    def _playbook(self, entry: CatalogEntry) -> Playbook:
        key = (entry.path, entry.version)
        playbook = self._playbooks.get(key)
        if playbook is None:
            playbook = parse_playbook(entry.content, source=entry.source or entry.path)
            self._playbooks[key] = playbook
        return playbook

    def _adopt(self, playbook: Playbook, execution_id: str, base_dir: str | None) -> _Live:
        live = _Live(ExecutionMachine(playbook, execution_id), base_dir)
        if self._lock_dir is not None:
            handle = open(self._lock_dir / f"{execution_id}.lock", "w")  # noqa: SIM115
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise Conflict(
                    f"execution '{execution_id}' is being run by another process (pid lock); "
                    "wait for it or stop that process first"
                ) from None
            live.file_lock = handle
        if base_dir:
            self._base_dirs[execution_id] = base_dir
        self._live[execution_id] = live
        return live

    async def _report(self, live: _Live, reported: list[Event], *, defer: bool = False) -> None:
        """Feed reported events to the machine and store them with its decisions in one
        transaction. ``defer`` holds events (``tool.started``) until the next report or
        ``FLUSH_DELAY``, so a quick step costs one write instead of two."""
        if defer:
            live.buffer.extend(reported)
            if live.flush is None:
                live.flush = asyncio.get_running_loop().call_later(
                    FLUSH_DELAY, self._flush_soon, live
                )
            return
        async with live.lock:
            machine = live.machine
            batch, live.buffer = [*live.buffer, *reported], []
            if live.flush is not None:
                live.flush.cancel()
                live.flush = None
            fresh: list[Event] = []
            for event in batch:
                if event.event_id not in live.seen:
                    live.seen.add(event.event_id)
                    fresh.append(event)
            if not fresh:
                return
            fresh = self.redactor.events(fresh)
            first = machine.count + 1
            for event in fresh:
                machine.apply(event)
            decision = machine.decide()
            for event in decision.events:
                live.seen.add(event.event_id)
            stored = await self.events.append([*fresh, *decision.events])
            if stored and stored[0].seq != first:
                raise StoreError(
                    f"the event log of execution '{machine.execution_id}' was changed by "
                    "another writer; run `noetl-agent resume` to rebuild it"
                )
            for event in stored:
                self._notify(event)
                if event.event_type == ev.APPROVAL_REQUESTED:
                    self._arm_approval_timeout(live, event)
            self._settle(live)
            for command in decision.commands:
                self._dispatch(live, command)
        if machine.finished:
            await self._stop(live, keep=True)

    def _flush_soon(self, live: _Live) -> None:
        live.flush = None
        if live.buffer:
            task = asyncio.create_task(self._report(live, []))
            live.tasks.add(task)
            task.add_done_callback(live.tasks.discard)

    async def _append(self, live: _Live, decided: list[Event]) -> None:
        if not decided:
            return
        for event in decided:
            live.seen.add(event.event_id)
        stored = await self.events.append(decided)
        for event in stored:
            self._notify(event)
            if event.event_type == ev.APPROVAL_REQUESTED:
                self._arm_approval_timeout(live, event)

    def _arm_approval_timeout(self, live: _Live, requested: Event) -> None:
        """Decide an approval by its ``on_timeout`` rule once its ``timeout`` has passed."""
        timeout = requested.payload.get("timeout_s")
        if not timeout:
            return
        remaining = float(timeout) - _age_seconds(requested.timestamp)

        async def expire() -> None:
            await asyncio.sleep(max(remaining, 0.0))
            await self._expire_approval(requested)

        approval_id = requested.payload.get("approval_id")
        task = asyncio.create_task(expire(), name=f"approval-timeout:{approval_id}")
        live.tasks.add(task)
        task.add_done_callback(live.tasks.discard)

    def _settle(self, live: _Live) -> None:
        if live.machine.finished:
            live.done.set()
        if live.machine.finished or live.machine.status == "paused":
            live.settled.set()
        else:
            live.settled.clear()

    def _dispatch(self, live: _Live, command: RunTool) -> None:
        # Sub-playbooks start on the engine's side; everything else goes to the queue.
        if self.queue is not None and command.kind != "playbook":
            if live.base_dir:
                command = replace(command, meta={**command.meta, "base_dir": live.base_dir})
            work = self.queue.submit(command)
        else:
            work = self._execute(live, command)
        task = asyncio.create_task(work, name=command.command_id)
        live.tasks.add(task)
        task.add_done_callback(live.tasks.discard)

    async def _execute(self, live: _Live, command: RunTool) -> None:
        async def report(reported: list[Event]) -> None:
            deferrable = all(e.event_type in _DEFERRABLE for e in reported)
            await self._report(live, reported, defer=deferrable)

        try:
            await self.runner.run(command, report)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("tool run %s crashed", command.command_id)
            failure = Event(
                event_id=f"{command.execution_id}:{command.command_id}:crashed",
                event_type=ev.TOOL_PROCESSED,
                execution_id=command.execution_id,
                timestamp=now(),
                entity_type="tool",
                entity_id=command.step,
                step_run_id=command.step_run_id,
                iteration=command.iteration,
                status=ev.STATUS_ERROR,
                payload={
                    "action": "fail",
                    "error": {"kind": "python", "message": "the tool runner failed; see logs"},
                },
            )
            await self._report(live, [failure])

    async def _stop(self, live: _Live, keep: bool = False) -> None:
        if live.flush is not None:
            live.flush.cancel()
            live.flush = None
        current = asyncio.current_task()
        pending = [task for task in live.tasks if task is not current]
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if live.file_lock is not None:
            fcntl.flock(live.file_lock, fcntl.LOCK_UN)
            live.file_lock.close()
            live.file_lock = None
            with contextlib.suppress(OSError):
                os.unlink(self._lock_dir / f"{live.machine.execution_id}.lock")  # type: ignore[operator]
        live.settled.set()
        live.done.set()
        if not keep:
            self._live.pop(live.machine.execution_id, None)

    def _notify(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("event listener failed")
