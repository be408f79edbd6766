"""The worker's side of the HTTP API: claim commands, keep claims alive, report events.

A distributed worker never touches the event store; it talks to the server::

    claim(command_id)       POST /api/commands/{id}/claim       Claim, or None (409/404: not ours)
    heartbeat(command_id)   POST /api/commands/{id}/heartbeat   True, or False (409/404: lost)
    credential(id, name)    POST /api/commands/{id}/credentials/{name}   a credential the
                            held command names, or None (the server does not keep it)
    report(events)          buffered, sent by one task to POST /api/events/batch
    flush()                 waits until everything reported so far has been accepted
    lost(command_id)        an asyncio.Event set once reports on the command are refused
                            (409 naming it: this worker's token holds no claim on it)

Reports are batched: a batch leaves when ``batch_size`` events wait, when the oldest has
waited ``flush_interval`` seconds, or at once when someone waits in :meth:`flush`. Batches
go out one at a time, in the order the events were reported. Connection errors, 5xx and
429 answers are retried with exponential backoff (``Retry-After`` is honoured): events are
idempotent by id, so a batch sent twice is stored once and a restarting server loses no
report. A 409 whose ``commands`` names commands this token holds no claim on (the claim
expired and went to another worker, or the command ended) drops every event of those
commands, sent or waiting, sets their :meth:`~HttpWorkerRemote.lost` events (the worker
stops running them, as when a heartbeat is refused) and sends the rest of the batch
again. Another 4xx answer refuses the batch as a whole, so it is split in halves until
the refused events are found; those are logged and dropped.

The command id is the server's global id (``execution_id:step_run_id[/iteration]``); it is
percent-encoded in paths. This module uses httpx directly and nothing of the agent layer.

    NoetlError (engine.errors)
    ├── WorkerUnauthorized     the token is unknown or lacks the worker role (fatal)
    ├── ToolConfigError
    │   └── ClaimLost          a credential was refused: the claim is not ours any more
    └── StoreError
        └── ServerUnreachable  no usable answer within the retry budget
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from engine.core.commands import RunTool, command_id_of
from engine.core.events import Event
from engine.errors import NoetlError, StoreError, ToolConfigError

__all__ = [
    "Backoff",
    "Claim",
    "ClaimLost",
    "HttpWorkerRemote",
    "ServerUnreachable",
    "WorkerUnauthorized",
]

logger = logging.getLogger(__name__)
REQUEST_TIMEOUT = 10.0  # seconds for one HTTP request
CLAIM_BUDGET = 30.0  # seconds a claim keeps retrying an unreachable server
CREDENTIAL_BUDGET = 10.0  # seconds a credential request keeps retrying
MAX_BUFFER = 10_000  # reported events held while the server does not answer
# Events per report at most. The server's cost per request (authentication, a
# transaction) is several times its cost per event, so a worker with many events waiting
# sends them in few requests; the server takes up to 1,000 per batch.
BATCH_SIZE = 500
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


class WorkerUnauthorized(NoetlError):
    """The server refused the worker's token (401/403); nothing can be claimed or reported."""


class ClaimLost(ToolConfigError):
    """The server refused to act for a command this worker no longer holds."""


class ServerUnreachable(StoreError):
    """The server gave no usable answer (down, restarting, failing) within the budget."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between retries: ``initial``, times ``factor`` each time, at most ``maximum``."""

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 5.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.maximum < self.initial:
            raise ValueError(
                "backoff needs initial > 0, factor >= 1 and maximum >= initial, got "
                f"{self.initial}, {self.factor}, {self.maximum}"
            )

    def next(self, delay: float) -> float:
        return min(delay * self.factor, self.maximum)


@dataclass(frozen=True, slots=True)
class Claim:
    """A command this worker now holds, and the server's attempt number for it."""

    command: RunTool
    attempt: int


@dataclass(frozen=True, slots=True)
class _Entry:
    seq: int
    tag: str | None
    event: Event
    at: float


def command_path(command_id: str, action: str) -> str:
    """``/api/commands/{id}/{action}`` with the global command id percent-encoded."""
    return f"/api/commands/{quote(command_id, safe='')}/{action}"


class HttpWorkerRemote:
    """Claims, heartbeats and batched reports against the API server at ``base_url``.

    Call :meth:`start` inside the event loop before reporting, and :meth:`aclose` at the
    end (it delivers what is still buffered, within its timeout).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        worker_id: str,
        flush_interval: float = 0.02,
        batch_size: int = BATCH_SIZE,
        backoff: Backoff | None = None,
        claim_budget: float = CLAIM_BUDGET,
        timeout: float = REQUEST_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.base_url = base_url.rstrip("/")
        self.worker_id = worker_id
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.backoff = backoff or Backoff()
        self.claim_budget = claim_budget
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token}"},
        )
        self._pending: deque[_Entry] = deque()
        self._inflight: list[_Entry] = []
        self._seq = 0
        self._urgent_upto = 0
        self._wakeup = asyncio.Event()
        self._changed = asyncio.Condition()
        self._sender: asyncio.Task[None] | None = None
        self._failure: WorkerUnauthorized | None = None
        self._closing = False
        self._lost: dict[str, asyncio.Event] = {}
        self._watchers: dict[str, int] = {}  # callers of lost() per command, not forgotten

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the task that sends reported events (idempotent)."""
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_forever(), name="worker-reports")

    async def check(self) -> None:
        """Make sure the server answers and accepts the token for the worker role.

        Raises ``ServerUnreachable`` (with the address) or ``WorkerUnauthorized``. An
        empty batch is refused as invalid (422) only after the role was checked, so any
        answer but 401/403 proves the token."""
        try:
            await self._http.get("/health")
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach the API server at {self.base_url} ({type(exc).__name__}: {exc});"
                " start it with `noetl-agent server` or fix --server / NOETL_SERVER_URL"
            ) from None
        response = await self._post("/api/events/batch", {"events": []}, budget=0.0)
        _raise_if_unauthorized(response)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Deliver what is buffered (for at most ``timeout`` seconds), then close."""
        self._closing = True
        self._wakeup.set()
        if self._sender is not None:
            if self._failure is None and not self._sender.done():
                with contextlib.suppress(TimeoutError, WorkerUnauthorized):
                    await asyncio.wait_for(self.flush(), timeout)
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        lost = len(self._pending) + len(self._inflight)
        if lost:
            logger.error(
                "%d reported event(s) could not be delivered to %s; the server re-issues "
                "their commands when the claims expire",
                lost,
                self.base_url,
            )
        await self._http.aclose()

    # -- claims ----------------------------------------------------------------------

    async def claim(self, command_id: str, lease_seconds: float) -> Claim | None:
        """Claim a command; None when it is not ours to run (held elsewhere, done, gone).

        Raises ``WorkerUnauthorized``, ``ServerUnreachable`` after ``claim_budget`` seconds
        of retries, or ``StoreError`` for an answer that makes no sense."""
        response = await self._lease(command_id, "claim", lease_seconds, self.claim_budget)
        if response is None:
            return None
        try:
            data = response.json()
            return Claim(RunTool.from_dict(data["command"]), int(data.get("attempt") or 1))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"the server's claim answer for {command_id} is not a command: {exc}"
            ) from exc

    async def heartbeat(self, command_id: str, lease_seconds: float, budget: float) -> bool:
        """Extend the claim; False when it was lost (expired and taken, or cancelled).

        Raises ``WorkerUnauthorized`` or ``ServerUnreachable`` after ``budget`` seconds."""
        return await self._lease(command_id, "heartbeat", lease_seconds, budget) is not None

    async def _lease(
        self, command_id: str, action: str, lease_seconds: float, budget: float
    ) -> httpx.Response | None:
        """POST a claim or heartbeat; None when the command is not (or no longer) ours
        (404/409). Raises ``WorkerUnauthorized``, ``ServerUnreachable``, or ``StoreError``
        for another refusal."""
        response = await self._post(
            command_path(command_id, action),
            {"worker_id": self.worker_id, "lease_seconds": lease_seconds},
            budget=budget,
        )
        _raise_if_unauthorized(response)
        if response.status_code in (404, 409):
            logger.debug("%s of %s refused, not ours: %s", action, command_id, _detail(response))
            return None
        if response.is_error:
            raise StoreError(
                f"the server refused the {action} of command {command_id}: "
                f"{response.status_code} {_detail(response)}"
            )
        return response

    def lost(self, command_id: str) -> asyncio.Event:
        """An event set once the server refuses reports on ``command_id`` because this
        worker's token holds no claim on it (its claim expired and went to another worker,
        or the command ended): stop running the command then; its events are dropped.
        Call :meth:`forget` once the command is over."""
        self._watchers[command_id] = self._watchers.get(command_id, 0) + 1
        return self._lost.setdefault(command_id, asyncio.Event())

    def forget(self, command_id: str) -> None:
        """Stop watching ``command_id`` for refused reports (see :meth:`lost`); the
        watch ends when every caller of :meth:`lost` has forgotten it (a worker may run a
        command again, claimed anew, while its first run is ending)."""
        left = self._watchers.get(command_id, 0) - 1
        if left > 0:
            self._watchers[command_id] = left
            return
        self._watchers.pop(command_id, None)
        self._lost.pop(command_id, None)

    async def credential(
        self, command_id: str, name: str, budget: float = CREDENTIAL_BUDGET
    ) -> dict[str, Any] | None:
        """The fields and kind (``{name, kind, data}``) of credential ``name`` as the server
        stores it, for the command this worker holds; None when the server does not store
        it or the command does not name it (the worker's own sources are asked next).

        Raises ``WorkerUnauthorized`` (401), ``ClaimLost`` (409: the claim is not this
        worker's any more) or ``ServerUnreachable`` after ``budget`` seconds."""
        path = f"{command_path(command_id, 'credentials')}/{quote(name, safe='')}"
        response = await self._post(path, {"worker_id": self.worker_id}, budget=budget)
        if response.status_code == 401:
            _raise_if_unauthorized(response)
        if response.status_code in (403, 404, 422):
            logger.debug("credential %s is not the server's to give: %s", name, _detail(response))
            return None
        if response.status_code == 409:
            raise ClaimLost(
                f"credential {name!r} was refused: {_detail(response)}; the command goes to "
                "another worker"
            )
        if response.is_error:
            raise StoreError(
                f"the server refused credential {name!r}: {response.status_code} "
                f"{_detail(response)}"
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
            raise StoreError(f"the server's answer for credential {name!r} is not a credential")
        return data

    # -- reports ---------------------------------------------------------------------

    async def report(self, events: Sequence[Event], *, tag: str | None = None) -> None:
        """Buffer events for sending; ``tag`` (the command id) lets :meth:`discard` drop
        them while unsent. Waits while the buffer is full (the server is not answering);
        raises ``WorkerUnauthorized`` once the server refused the token. Events of a
        command whose reports were refused (see :meth:`lost`) are dropped at once."""
        self._raise_failure()
        refused = self._lost.get(tag) if tag is not None else None
        if refused is not None and refused.is_set():
            return
        if len(self._pending) >= MAX_BUFFER:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: len(self._pending) < MAX_BUFFER or self._failure is not None
                )
            self._raise_failure()
        now = asyncio.get_running_loop().time()
        for event in events:
            self._seq += 1
            self._pending.append(_Entry(self._seq, tag, event, now))
        self._wakeup.set()

    async def discard(self, tag: str) -> int:
        """Drop the unsent events reported with ``tag``; returns how many."""
        kept = deque(entry for entry in self._pending if entry.tag != tag)
        dropped = len(self._pending) - len(kept)
        if dropped:
            self._pending = kept
            self._wakeup.set()
            await self._notify()
        return dropped

    async def flush(self) -> None:
        """Return once every event reported so far was accepted (or refused and dropped).

        Sends the waiting batch at once. Raises ``WorkerUnauthorized`` if the token was
        refused; waits (retrying) for as long as the server is unreachable."""
        target = self._seq
        if self._settled() >= target:
            self._raise_failure()
            return
        self._urgent_upto = max(self._urgent_upto, target)
        self._wakeup.set()
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._settled() >= target or self._failure is not None
            )
        self._raise_failure()

    @property
    def buffered(self) -> int:
        """Events reported and not yet accepted."""
        return len(self._pending) + len(self._inflight)

    def _settled(self) -> int:
        """The highest sequence number up to which every event is delivered or dropped."""
        waiting = [entries[0].seq for entries in (self._inflight, self._pending) if entries]
        return min(waiting) - 1 if waiting else self._seq

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _send_forever(self) -> None:
        try:
            while True:
                await self._batch_ready()
                count = min(len(self._pending), self.batch_size)
                self._inflight = [self._pending.popleft() for _ in range(count)]
                try:
                    await self._deliver([entry.event for entry in self._inflight])
                except WorkerUnauthorized:
                    raise
                except Exception:  # the sender must outlive any one batch
                    logger.exception("%d reported event(s) dropped", len(self._inflight))
                finally:
                    self._inflight = []
                    await self._notify()
        except WorkerUnauthorized as exc:
            logger.error("%s", exc)
            self._failure = exc
            await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _batch_ready(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wakeup.clear()
            wait: float | None = None
            if self._pending:
                first = self._pending[0]
                if (
                    len(self._pending) >= self.batch_size
                    or first.seq <= self._urgent_upto
                    or self._closing
                ):
                    return
                wait = first.at + self.flush_interval - loop.time()
                if wait <= 0:
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    async def _deliver(self, events: list[Event]) -> None:
        response = await self._post(
            "/api/events/batch", {"events": [event.to_dict() for event in events]}, budget=None
        )
        _raise_if_unauthorized(response)
        if response.is_success:
            return
        refused = _refused_commands(response)
        if refused:
            kept = [event for event in events if command_id_of(event) not in refused]
            if len(kept) < len(events):  # never loops: each round sends fewer events
                await self._give_up(refused, _detail(response))
                if kept:
                    await self._deliver(kept)
                return
        if len(events) > 1:
            half = len(events) // 2
            await self._deliver(events[:half])
            await self._deliver(events[half:])
            return
        event = events[0]
        logger.error(
            "the server refused event %s (%s of execution %s): %s %s; it is dropped",
            event.event_id,
            event.event_type,
            event.execution_id,
            response.status_code,
            _detail(response),
        )

    async def _give_up(self, refused: set[str], detail: str) -> None:
        """The server refused reports on these commands: not ours any more. Drop their
        waiting events and tell whoever watches them (:meth:`lost`)."""
        logger.warning(
            "the server refused the reports on %s, this worker's token holds no claim on "
            "them; their events are dropped: %s",
            ", ".join(sorted(refused)),
            detail,
        )
        for command_id in refused:
            watched = self._lost.get(command_id)
            if watched is not None:
                watched.set()
        kept = deque(entry for entry in self._pending if command_id_of(entry.event) not in refused)
        if len(kept) < len(self._pending):
            self._pending = kept
            await self._notify()

    async def _post(self, path: str, body: Any, *, budget: float | None) -> httpx.Response:
        """POST until an answer that is not a transient failure; ``budget`` seconds of
        retrying at most (None: for ever). Raises ``ServerUnreachable``."""
        loop = asyncio.get_running_loop()
        deadline = None if budget is None else loop.time() + budget
        delay = self.backoff.initial
        while True:
            try:
                response = await self._http.post(path, json=body)
            except httpx.TransportError as exc:
                failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                pause = delay
            else:
                if response.status_code not in _RETRYABLE:
                    return response
                failure = f"{response.status_code} {_detail(response)}"
                pause = max(delay, _retry_after(response, self.backoff.maximum))
            if deadline is not None and loop.time() + pause > deadline:
                raise ServerUnreachable(
                    f"no usable answer from the API server at {self.base_url} for POST {path}"
                    f" ({failure}); check that it is running and healthy"
                )
            logger.warning("POST %s failed (%s); retrying in %.2fs", path, failure, pause)
            await asyncio.sleep(pause)
            delay = self.backoff.next(delay)


def _raise_if_unauthorized(response: httpx.Response) -> None:
    if response.status_code in (401, 403):
        raise WorkerUnauthorized(
            f"the worker token lacks the worker role ({response.status_code} "
            f"{_detail(response)}); create one with `noetl-agent tokens create --name NAME "
            "--kind agent --role worker` on the server's host and pass it with --token"
        )


def _refused_commands(response: httpx.Response) -> set[str]:
    """The commands a 409 answer to a report names as not held by this token."""
    if response.status_code != 409:
        return set()
    try:
        document = response.json()
    except ValueError:
        return set()
    named = document.get("commands") if isinstance(document, dict) else None
    if not isinstance(named, list):
        return set()
    return {item for item in named if isinstance(item, str)}


def _detail(response: httpx.Response) -> str:
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict) and document.get("detail"):
        return str(document["detail"])
    return response.text[:300] or response.reason_phrase


def _retry_after(response: httpx.Response, cap: float) -> float:
    try:
        return min(float(response.headers.get("Retry-After", 0)), cap)
    except ValueError:
        return 0.0
