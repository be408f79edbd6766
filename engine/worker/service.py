"""The distributed worker: pull command notes of one pool, claim, run, report, acknowledge.

For each note (from NATS JetStream, see ``engine.adapters.nats.bus``) the worker::

    claim it from the server    404/409: not ours (held elsewhere, done, cancelled): ack, drop
    run it with the ToolRunner  events go to the server in batches (engine.worker.remote)
      every lease/3 seconds     heartbeat the claim and tell JetStream it is in progress;
                                a heartbeat answered 409 means the claim was lost: the run
                                is cancelled and its unsent events are dropped; so does a
                                report the server refuses for the command (409: the token
                                holds no claim on it), at once
    flush its reports, then ack the note

At most ``concurrency`` notes are held at once; a note is only fetched when a slot is free,
so nothing waits un-acknowledged in this process. The note is acknowledged only after the
final ``tool.processed`` was accepted, so a worker killed at any point leaves the command
to be redelivered or re-issued by the server's reaper once the claim expires.

Shutdown (:meth:`WorkerService.stop`, or SIGTERM/SIGINT with ``signals=True``): no more
notes are fetched, running commands get ``grace`` seconds to finish and report; whatever
is still running then is cancelled and its note released for another worker. A second
signal cancels at once. A refused token (``WorkerUnauthorized``) stops the worker too and
is raised from :meth:`WorkerService.run`. Workers serve no HTTP endpoints.

Credentials resolve while the command runs: from the server for the command the worker
holds (``engine.worker.credentials``) or from the worker's own sources; the worker masks
their values in every event it reports (``engine.runtime.redaction``), and the server
masks the values it handed out once more when it stores the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable
from typing import Protocol

from engine.core.events import Event
from engine.errors import NoetlError
from engine.ports import CredentialProvider
from engine.runtime.redaction import RedactingCredentialProvider, Redactor
from engine.runtime.tool_runner import ToolRunner
from engine.tools.registry import ToolRegistry
from engine.worker.credentials import running_command
from engine.worker.remote import Claim, HttpWorkerRemote, WorkerUnauthorized

__all__ = ["WorkerService"]

logger = logging.getLogger(__name__)
BUS_TIMEOUT = 5.0  # seconds for an ack, nak or in-progress call to JetStream


class Note(Protocol):
    """What a note names (``engine.adapters.nats.bus.CommandNote``)."""

    @property
    def execution_id(self) -> str: ...

    @property
    def command_id(self) -> str: ...

    @property
    def pool(self) -> str: ...


class Delivery(Protocol):
    """One delivered note (``engine.adapters.nats.bus.Delivery``)."""

    @property
    def note(self) -> Note: ...

    @property
    def deliveries(self) -> int: ...

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None = None) -> None: ...

    async def in_progress(self) -> None: ...


class Subscription(Protocol):
    async def next(self, timeout: float = 1.0) -> Delivery | None: ...

    async def aclose(self) -> None: ...


class CommandBus(Protocol):
    async def subscribe(self, pool: str) -> Subscription: ...


class WorkerService:
    """Serves one pool until stopped; see the module docstring for the protocol."""

    def __init__(
        self,
        bus: CommandBus,
        remote: HttpWorkerRemote,
        pool: str,
        concurrency: int = 4,
        lease_seconds: float = 30.0,
        *,
        runner: ToolRunner | None = None,
        credentials: CredentialProvider | None = None,
        redactor: Redactor | None = None,
        grace: float = 30.0,
        poll: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        self.pool = pool
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.grace = grace
        self.poll = poll
        self._bus = bus
        self._remote = remote
        # Secrets the tools resolve here are masked in events before they leave the worker.
        self.redactor = redactor or Redactor()
        self._registry: ToolRegistry | None = None
        if runner is None:
            if credentials is not None:
                credentials = RedactingCredentialProvider(credentials, self.redactor)
            self._registry = ToolRegistry()
            runner = ToolRunner(self._registry, credentials=credentials)
        self._runner = runner
        self._tasks: set[asyncio.Task[None]] = set()
        self._active: set[str] = set()
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._fatal: WorkerUnauthorized | None = None
        self.completed = 0

    @property
    def running(self) -> int:
        """Notes being handled right now."""
        return len(self._tasks)

    def stop(self, *, force: bool = False) -> None:
        """Stop fetching notes; with ``force``, also cancel the commands running now."""
        self._stopping.set()
        self._slot_freed.set()
        if force:
            for task in self._tasks:
                task.cancel()

    async def run(self, *, signals: bool = False) -> None:
        """Serve the pool until :meth:`stop` (or SIGTERM/SIGINT when ``signals``).

        Raises ``WorkerUnauthorized`` when the server refused the token."""
        self._remote.start()
        loop = asyncio.get_running_loop()
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        subscription: Subscription | None = None
        try:
            subscription = await self._bus.subscribe(self.pool)
            logger.info(
                "worker %s serving pool %s (concurrency %d, lease %gs)",
                self._remote.worker_id,
                self.pool,
                self.concurrency,
                self.lease_seconds,
            )
            await self._pull(subscription)
        finally:
            try:
                await self._drain()
            finally:
                if subscription is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(subscription.aclose(), BUS_TIMEOUT)
                if self._registry is not None:
                    await self._registry.aclose()
                if signals:
                    for sig in (signal.SIGTERM, signal.SIGINT):
                        loop.remove_signal_handler(sig)
        logger.info("worker %s stopped after %d command(s)", self._remote.worker_id, self.completed)
        if self._fatal is not None:
            raise self._fatal

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping.is_set():
            logger.warning("%s again: cancelling %d running command(s)", sig.name, self.running)
            self.stop(force=True)
            return
        logger.info(
            "%s: finishing %d running command(s) (up to %gs), taking no more",
            sig.name,
            self.running,
            self.grace,
        )
        self.stop()

    async def _pull(self, subscription: Subscription) -> None:
        while not self._stopping.is_set():
            if len(self._tasks) >= self.concurrency:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                delivery = await subscription.next(timeout=self.poll)
            except Exception as exc:  # NATS down or reconnecting: keep trying
                logger.warning("could not fetch from pool %s: %s; retrying", self.pool, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.poll)
                continue
            if delivery is None:
                continue
            if self._stopping.is_set():  # fetched while stopping: leave it to another worker
                await _settle(delivery.nak(), "release", delivery)
                break
            command_id = delivery.note.command_id
            if command_id in self._active:
                # A second note for a command running here (a redelivery, or the server
                # announcing it again): the server would hand it to this worker again.
                await _settle(delivery.ack(), "ack", delivery)
                continue
            self._active.add(command_id)
            task = asyncio.create_task(self._handle(delivery), name=command_id)
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._active.discard(task.get_name())
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error("handling %s failed", task.get_name(), exc_info=task.exception())

    async def _drain(self) -> None:
        if self._tasks and self._fatal is None:
            await asyncio.wait(set(self._tasks), timeout=self.grace)
        left = set(self._tasks)
        if left:
            logger.warning("cancelling %d command(s) still running at shutdown", len(left))
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
        with contextlib.suppress(WorkerUnauthorized, TimeoutError):
            await asyncio.wait_for(self._remote.flush(), self.grace)

    def _fail(self, exc: WorkerUnauthorized) -> None:
        if self._fatal is None:
            self._fatal = exc
            logger.error("%s", exc)
        self.stop(force=True)

    async def _handle(self, delivery: Delivery) -> None:
        command_id = delivery.note.command_id
        try:
            claim = await self._remote.claim(command_id, self.lease_seconds)
        except WorkerUnauthorized as exc:
            await _settle(delivery.nak(), "release", delivery)
            self._fail(exc)
            return
        except NoetlError as exc:
            logger.warning("could not claim %s: %s; it comes back later", command_id, exc)
            await _settle(delivery.nak(self.lease_seconds), "release", delivery)
            return
        if claim is None:
            await _settle(delivery.ack(), "ack", delivery)
            return
        await self._execute(delivery, claim)

    async def _execute(self, delivery: Delivery, claim: Claim) -> None:
        command_id = delivery.note.command_id
        lost = asyncio.Event()
        refused = self._remote.lost(command_id)  # set when a report on it is refused

        async def report(events: list[Event]) -> None:
            if not lost.is_set():
                await self._remote.report(self.redactor.events(events), tag=command_id)

        logger.debug("running %s (attempt %d)", command_id, claim.attempt)
        with running_command(command_id):  # server credentials are asked for this command
            run = asyncio.create_task(self._runner.run(claim.command, report), name=command_id)
        beat = asyncio.create_task(self._keep_alive(delivery, run, lost, refused))
        try:
            await asyncio.wait({run})
            if lost.is_set():
                dropped = await self._remote.discard(command_id)
                logger.warning(
                    "claim of %s was lost (it expired and went to another worker, or the "
                    "execution was cancelled): run cancelled, %d unsent event(s) dropped",
                    command_id,
                    dropped,
                )
                await _settle(delivery.ack(), "ack", delivery)
                return
            if run.cancelled() or run.exception() is not None:
                failure = None if run.cancelled() else run.exception()
                logger.error("running %s failed", command_id, exc_info=failure)
                await _settle(delivery.nak(self.lease_seconds), "release", delivery)
                return
            await self._remote.flush()
            if refused.is_set():
                logger.warning(
                    "the reports of %s were refused (its claim expired and went to another "
                    "worker, or the command ended): its result is dropped",
                    command_id,
                )
                await _settle(delivery.ack(), "ack", delivery)
                return
            await _settle(delivery.ack(), "ack", delivery)
            self.completed += 1
        except asyncio.CancelledError:
            # Shutdown past its grace: the note goes back for when the claim has expired.
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await _settle(delivery.nak(self.lease_seconds), "release", delivery)
            raise
        except WorkerUnauthorized as exc:
            await _settle(delivery.nak(), "release", delivery)
            self._fail(exc)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            self._remote.forget(command_id)

    async def _keep_alive(
        self,
        delivery: Delivery,
        run: asyncio.Task[None],
        lost: asyncio.Event,
        refused: asyncio.Event,
    ) -> None:
        command_id = delivery.note.command_id
        interval = self.lease_seconds / 3
        while True:
            with contextlib.suppress(TimeoutError):  # wake early when a report is refused
                await asyncio.wait_for(refused.wait(), interval)
            if refused.is_set():
                lost.set()
                run.cancel()
                return
            await _settle(delivery.in_progress(), "in-progress", delivery)
            try:
                held = await self._remote.heartbeat(command_id, self.lease_seconds, interval)
            except WorkerUnauthorized as exc:
                self._fail(exc)
                return
            except NoetlError as exc:
                logger.warning("heartbeat for %s failed: %s", command_id, exc)
                continue
            if not held:
                lost.set()
                run.cancel()
                return


async def _settle(call: Awaitable[None], what: str, delivery: Delivery) -> None:
    """Await an ack/nak/in-progress call; JetStream being away is logged, not raised (the
    note is then redelivered, and a second claim of it is refused)."""
    try:
        await asyncio.wait_for(call, BUS_TIMEOUT)
    except Exception as exc:  # a bus boundary: the server's log stays the source of truth
        logger.warning("could not %s note %s: %s", what, delivery.note.command_id, exc)
