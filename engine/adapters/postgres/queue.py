"""The distributed ``CommandQueue``: commands in PostgreSQL, notes about them on NATS.

``submit`` stores the command (queued) and then publishes a note ``{execution_id,
command_id, pool}`` for the pool's workers; a worker claims the command from the server
(see ``PostgresCommandStore``), runs it and reports its events. A command stored before
(the engine re-issues outstanding commands when it rebuilds an execution) is not
announced again by ``submit``.

Notes can be lost (NATS down when publishing, a stream that lost messages) and workers
can die holding a claim, so the stored rows are what counts: the reaper (``reap``, run
every few seconds by ``run_reaper``) re-announces every command whose claim expired
and every queued command nobody claimed for ``renotify_after`` seconds. A note carries
attempt number claims + 1, and JetStream drops a repeat of the same command and attempt
within its two-minute duplicate window: an expired claim is announced again at once,
while a lost note of a never-claimed command is made up for within about two minutes
(a note still waiting in the stream is not doubled). The reaper also cancels what is
left of executions that have ended. After a restart, ``renotify`` announces the queued
commands of the executions the engine recovered.

Command rows and claims are committed without waiting for the disk (see
``PostgresCommandStore``), so a crash of PostgreSQL can lose the newest of them. The queue
keeps every command it stored until the database's flushed write-ahead log has passed
it; each reaper pass reads the log's position (``PostgresCommandStore.wal``) and lets go
of the commands now safe on disk whose rows are there. A command whose row is missing
(a crash of PostgreSQL, or of one of its backends, lost it), and every command kept when
the database started anew since the last pass, is stored again (``put`` is idempotent)
and, if it had been lost, announced under a note id of its own so JetStream does not
drop the note as a repeat.

A poison command (one whose workers keep dying or hanging on it) is not re-issued for
ever: once it was claimed ``max_claims`` times and the last claim expired too, the reaper
fails it (see ``PostgresCommandStore.abandon``) and reports a final ``tool.processed``
error for its step through ``report_to`` (the engine's ``report``), so the step fails
with a message that says so and the execution's error handling takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from engine.adapters.nats.bus import CommandNote, NatsCommandBus
from engine.adapters.postgres.commands import (
    MAX_CLAIMS,
    Abandoned,
    DueCommand,
    PostgresCommandStore,
    global_command_id,
)
from engine.core import events as ev
from engine.core.commands import RunTool
from engine.core.events import Event
from engine.errors import StoreError

logger = logging.getLogger(__name__)
Report = Callable[[list[Event]], Awaitable[None]]
DEFAULT_RENOTIFY_AFTER = 30.0  # seconds a queued command waits for a claim before a new note
DEFAULT_REAP_INTERVAL = 2.0  # seconds between reaper passes
REAP_BATCH = 500  # commands re-announced per pass at most
PUT_BUDGET = 60.0  # seconds ``submit`` keeps retrying a failing database


class DistributedCommandQueue:
    """``CommandQueue`` over a ``PostgresCommandStore`` and a ``NatsCommandBus``.

    Neither is owned: ``aclose`` stops the queue's own tasks, the caller closes both."""

    def __init__(
        self,
        store: PostgresCommandStore,
        bus: NatsCommandBus,
        *,
        renotify_after: float = DEFAULT_RENOTIFY_AFTER,
        reap_batch: int = REAP_BATCH,
        put_budget: float = PUT_BUDGET,
        max_claims: int = MAX_CLAIMS,
    ) -> None:
        if renotify_after <= 0:
            raise ValueError(f"renotify_after must be more than 0 s, got {renotify_after}")
        if max_claims < 1:
            raise ValueError(f"max_claims must be at least 1, got {max_claims}")
        self.max_claims = max_claims
        self._report: Report | None = None
        self.store = store
        self.bus = bus
        self.renotify_after = renotify_after
        self.reap_batch = reap_batch
        self.put_budget = put_budget
        self._tasks: set[asyncio.Task[None]] = set()
        # Commands stored and not yet known to be on disk, with the log position written
        # after them (None until a reaper pass reads one).
        self._unflushed: dict[str, tuple[RunTool, int | None]] = {}
        self._started: datetime | None = None  # the database's start time at the last pass

    async def submit(self, command: RunTool) -> None:
        """Store ``command`` and announce it, unless it was stored before.

        A failing database is retried for ``put_budget`` seconds, then the command is left
        to the next start of the server (which issues outstanding commands again); a note
        that cannot be published is left to the reaper."""
        try:
            created = await self._put(command)
        except StoreError as exc:
            logger.error(
                "command %s could not be stored (%s); it is issued again when the server restarts",
                global_command_id(command),
                exc,
            )
            return
        if created:
            self._unflushed[global_command_id(command)] = (command, None)
            await self._announce(
                DueCommand(global_command_id(command), command.execution_id, command.pool, 0)
            )

    @property
    def unflushed(self) -> int:
        """Commands stored and not yet known to be on the database's disk."""
        return len(self._unflushed)

    async def confirm(self) -> int:
        """Let go of the commands the database has flushed to disk, once each is seen
        stored; store again (and announce) those a crash lost. After a restart of the
        database (or on the first call) every command kept whose row is missing is stored
        again at once. Returns how many were stored again.

        A crash of one PostgreSQL backend resets the server without restarting it (the
        start time stays, and the log position can even step back), so what decides is
        the row itself: a command is let go only when the flushed log has passed the
        position read after it was stored and its row is there."""
        waiting = [gid for gid, (_, mark) in self._unflushed.items() if mark is None]
        position = await self.store.wal()
        if position.started != self._started:  # a restart, or the first pass: unknown
            kept = list(self._unflushed)
            for gid in kept:  # positions from before a restart say nothing
                self._unflushed[gid] = (self._unflushed[gid][0], None)
            stored = await self.store.existing(kept) if kept else set()
            missing = [gid for gid in kept if gid not in stored]
            restored = await self._restore(missing) if missing else 0
            self._started = position.started  # only once all are stored again
            return restored
        for gid in waiting:
            if gid in self._unflushed:
                self._unflushed[gid] = (self._unflushed[gid][0], position.written)
        flushed = [
            gid
            for gid, (_, mark) in self._unflushed.items()
            if mark is not None and mark <= position.flushed
        ]
        if not flushed:
            return 0
        stored = await self.store.existing(flushed)
        for gid in flushed:
            if gid in stored:
                self._unflushed.pop(gid, None)
        lost = [gid for gid in flushed if gid not in stored]
        return await self._restore(lost) if lost else 0

    async def _restore(self, ids: list[str]) -> int:
        """Store these commands again (the database may have lost them); announce those
        it had lost under a note id of their own."""
        epoch = f"{time.time():.6f}"
        restored = 0
        for gid in ids:
            kept = self._unflushed.get(gid)
            if kept is None:
                continue
            command = kept[0]
            self._unflushed[gid] = (command, None)
            if await self.store.put(command):
                restored += 1
                await self._announce(
                    DueCommand(gid, command.execution_id, command.pool, 0), epoch=epoch
                )
        if restored:
            logger.warning(
                "PostgreSQL had lost %d stored command(s) in a crash; stored and announced "
                "them again",
                restored,
            )
        return restored

    async def cancel(self, execution_id: str) -> None:
        """Cancel the execution's queued and claimed commands: claims and heartbeats of its
        commands are refused from now on, which is how running workers learn to stop."""
        await self.store.cancel_execution(execution_id)

    async def renotify(self, execution_ids: Iterable[str]) -> int:
        """Announce the queued commands of these executions again; return how many."""
        due = await self.store.queued(execution_ids)
        for item in due:
            await self._announce(item)
        return len(due)

    def report_to(self, report: Report) -> None:
        """Where the reaper reports the failure of a poison command (``Engine.report``)."""
        self._report = report

    async def reap(self) -> int:
        """One reaper pass; return how many commands were announced again."""
        restored = await self.confirm()
        await self.store.cancel_finished()
        for dead in await self.store.abandon(self.max_claims, self.reap_batch):
            await self._fail(dead)
        due = await self.store.due_for_notice(
            self.renotify_after, self.reap_batch, max_claims=self.max_claims
        )
        for item in due:
            await self._announce(item)
        if due:
            logger.info("re-announced %d command(s) with expired or unclaimed notes", len(due))
        return restored + len(due)

    async def run_reaper(self, interval: float = DEFAULT_REAP_INTERVAL) -> None:
        """Reap every ``interval`` seconds until cancelled; failures are logged, not raised."""
        if interval <= 0:
            raise ValueError(f"the reaper interval must be more than 0 s, got {interval}")
        while True:
            try:
                await self.reap()
            except StoreError as exc:
                logger.warning("reaper pass failed: %s", exc)
            except Exception:  # the reaper must outlive any one pass
                logger.exception("reaper pass failed")
            await asyncio.sleep(interval)

    def observe(self, event: Event) -> None:
        """An engine listener: once an execution ends, cancel what is left of its commands
        (branches still queued when a step failed, for instance)."""
        if event.event_type != ev.PLAYBOOK_PROCESSED:
            return
        task = asyncio.get_running_loop().create_task(
            self._cancel_quietly(event.execution_id), name=f"cancel-commands:{event.execution_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Stop the queue's background tasks (not the store or the bus)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _put(self, command: RunTool) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.put_budget
        delay = 0.1
        while True:
            try:
                return await self.store.put(command)
            except StoreError as exc:
                if loop.time() + delay > deadline:
                    raise
                logger.warning(
                    "could not store command %s (%s); retrying in %.1fs",
                    global_command_id(command),
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _announce(self, item: DueCommand, *, epoch: str = "") -> None:
        note = CommandNote(item.execution_id, item.command_id, item.pool)
        try:
            await self.bus.notify(note, attempt=item.attempts + 1, epoch=epoch)
        except StoreError as exc:
            logger.warning("%s; the reaper announces it again within %gs", exc, self.renotify_after)
        except ValueError as exc:  # a pool name no subject can carry: no worker can get it
            logger.error("command %s cannot be announced: %s", item.command_id, exc)

    async def _cancel_quietly(self, execution_id: str) -> None:
        try:
            await self.store.cancel_execution(execution_id)
        except StoreError as exc:  # the reaper cancels them on a later pass
            logger.warning("could not cancel the commands of %s: %s", execution_id, exc)

    async def _fail(self, dead: Abandoned) -> None:
        command = dead.command
        message = (
            f"the command was claimed {dead.claims} times and its worker never finished "
            f"(the last was '{dead.last_worker}'); it is not handed out again. Check the "
            "workers' logs for what kills them on this step (memory, a crash, a hang "
            "longer than the lease), or start the server with a larger --max-claims"
        )
        logger.error("step `%s` of execution %s: %s", command.step, command.execution_id, message)
        tool = command.tools[-1] if command.tools else {}
        name = str(tool.get("name") or tool.get("kind") or command.kind)
        payload: dict[str, object] = {
            "output": None,
            "error": {"kind": "timeout", "code": "claims_exhausted", "message": message},
            "action": "fail",
            "rule": None,
            "attempts": dead.claims,
            "tool": name,
            "kind": tool.get("kind"),
        }
        if len(command.tools) > 1:
            payload["pipeline_index"] = len(command.tools) - 1
        event = Event(
            event_id=f"{command.execution_id}:{command.command_id}:abandoned",
            event_type=ev.TOOL_PROCESSED,
            execution_id=command.execution_id,
            timestamp=datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            entity_type="tool",
            entity_id=f"{command.step}.{name}",
            parent_id=f"step:{command.step_run_id}",
            step_run_id=command.step_run_id,
            iteration=command.iteration,
            attempt=dead.claims,
            status=ev.STATUS_ERROR,
            payload=payload,
        )
        if self._report is None:
            logger.error("no engine to report the failure of %s to", global_command_id(command))
            return
        try:
            await self._report([event])
        except Exception:  # the reaper must outlive any one failure; the log says why
            logger.exception("could not fail command %s", global_command_id(command))
