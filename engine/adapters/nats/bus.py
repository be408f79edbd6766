"""Command notifications over NATS JetStream.

The stream ``NOETL_COMMANDS`` holds small notes ``{execution_id, command_id, pool}`` on
subjects ``noetl.commands.<pool>``; each pool's workers share one durable pull consumer
with explicit acks, ``ack_wait`` and ``max_deliver``. A note carries ids only: the command
itself is claimed from the server, and PostgreSQL stays the source of truth. JetStream is
only how workers learn that there is work (it may lose an acknowledged message under its
default fsync policy; the server's reaper re-notifies what was not done).

``max_deliver`` (``MAX_DELIVER``) bounds how often JetStream hands out one note (a worker
died before acknowledging it, or released it because the server did not answer); it is
not what stops a poison command: every re-announcement is a new note, and the server
fails a command once it was claimed ``MAX_CLAIMS`` times (``postgres.commands``), well
below ``MAX_DELIVER``. The consumer's ``ack_wait`` and ``max_deliver`` follow the worker
that subscribed last: a worker whose settings differ from the durable consumer's updates
it (and says so), so the consumer never keeps a lease that no running worker uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import nats
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
from nats.js.errors import NotFoundError

from engine.errors import StoreError

logger = logging.getLogger(__name__)
_POOL = re.compile(r"^[A-Za-z0-9_-]+$")
RECONNECT_WAIT = 0.5  # seconds between attempts to reach NATS again
MAX_DELIVER = 20  # deliveries of one note at most


def check_pool(pool: str) -> str:
    """A pool name is one subject token: letters, digits, '_' and '-'."""
    if not _POOL.match(pool):
        raise ValueError(
            f"pool name '{pool}' is not allowed; "
            "use letters, digits, '_' or '-' (e.g. cpu, gpu-a100)"
        )
    return pool


async def _probe(url: str) -> None:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 4222
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError) as exc:
        raise StoreError(
            f"cannot reach NATS at {url}: {exc}; start nats-server with JetStream (-js) "
            "or set NOETL_NATS_URL"
        ) from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


class _ConnectionLog:
    """The connection's callbacks: an outage is logged once when it starts (with the first
    failed attempt) and once when it ends, not twice a second while NATS is away; the
    failed attempts in between go to the debug log."""

    def __init__(self) -> None:
        self.down = False
        self.failures = 0
        self.closing = False  # set by ``NatsCommandBus.aclose``: a disconnect is expected

    async def error(self, exc: Exception) -> None:
        if not self.down:
            logger.warning("NATS: %s", exc)
            return
        self.failures += 1
        if self.failures == 1:
            logger.warning("NATS: %s; retrying every %gs until it is back", exc, RECONNECT_WAIT)
        else:
            logger.debug("NATS: %s (attempt %d)", exc, self.failures)

    async def disconnected(self) -> None:
        if self.closing:
            return
        self.down, self.failures = True, 0
        logger.warning("NATS: disconnected; reconnecting")

    async def reconnected(self) -> None:
        self.down = False
        logger.info("NATS: reconnected after %d failed attempt(s)", self.failures)


@dataclass(frozen=True, slots=True)
class CommandNote:
    """What a notification says: which command of which execution, for which pool."""

    execution_id: str
    command_id: str
    pool: str

    def encode(self) -> bytes:
        return json.dumps(
            {"execution_id": self.execution_id, "command_id": self.command_id, "pool": self.pool}
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> CommandNote:
        raw = json.loads(data)
        return cls(str(raw["execution_id"]), str(raw["command_id"]), str(raw["pool"]))


class Delivery:
    """One delivered note; acknowledge it once the command is done (or not ours)."""

    def __init__(self, message: Any) -> None:
        self._message = message
        self.note = CommandNote.decode(message.data)
        self.deliveries = int(getattr(message.metadata, "num_delivered", 1) or 1)

    async def ack(self) -> None:
        await self._message.ack()

    async def nak(self, delay: float | None = None) -> None:
        await self._message.nak(delay=delay)

    async def in_progress(self) -> None:
        """Tell JetStream the command is still being worked on (resets ``ack_wait``)."""
        await self._message.in_progress()


class PoolSubscription:
    def __init__(self, subscription: JetStreamContext.PullSubscription) -> None:
        self._subscription = subscription

    async def next(self, timeout: float = 1.0) -> Delivery | None:
        """The next note for this pool, or None when none arrives within ``timeout``."""
        try:
            messages = await self._subscription.fetch(1, timeout=timeout)
        except NatsTimeout:
            return None
        return Delivery(messages[0]) if messages else None

    async def aclose(self) -> None:
        await self._subscription.unsubscribe()


class NatsCommandBus:
    """Publishes command notes and hands out per-pool pull subscriptions."""

    def __init__(
        self,
        client: nats.NATS,
        *,
        stream: str = "NOETL_COMMANDS",
        subject_prefix: str = "noetl.commands",
        ack_wait: float = 30.0,
        max_deliver: int = MAX_DELIVER,
    ) -> None:
        self._client = client
        self._js = client.jetstream()
        self.stream = stream
        self.prefix = subject_prefix
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver
        self._log: _ConnectionLog | None = None

    @classmethod
    async def connect(cls, url: str, **options: Any) -> NatsCommandBus:
        """Connect to ``url`` and make sure the stream exists; ``StoreError`` if unreachable.

        Once connected the client reconnects for ever, so a restarted NATS server is
        picked up again without restarting the process."""
        await _probe(url)
        log = _ConnectionLog()
        client = await nats.connect(
            url,
            connect_timeout=5,
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT,
            error_cb=log.error,
            disconnected_cb=log.disconnected,
            reconnected_cb=log.reconnected,
        )
        bus = cls(client, **options)
        bus._log = log
        await bus.ensure_stream()
        return bus

    @property
    def connected(self) -> bool:
        """Whether the client is connected now (it reconnects by itself when not)."""
        return bool(self._client.is_connected)

    def subject(self, pool: str) -> str:
        return f"{self.prefix}.{check_pool(pool)}"

    async def ensure_stream(self) -> None:
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.prefix}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=120.0,
        )
        try:
            await self._js.stream_info(self.stream)
        except NotFoundError:
            await self._js.add_stream(config)

    async def notify(self, note: CommandNote, *, attempt: int = 1, epoch: str = "") -> None:
        """Publish a note; the same (command, attempt, epoch) published twice is stored
        once. ``epoch`` tells apart the notes of a command stored anew (after the database
        lost it), which must not be taken for repeats of the first one."""
        msg_id = f"{note.command_id}@{attempt}" + (f"~{epoch}" if epoch else "")
        if not self.connected:  # a publish would wait its whole timeout
            raise StoreError(
                f"could not publish command {note.command_id} to NATS: not connected "
                "(the client reconnects by itself)"
            )
        try:
            await self._js.publish(
                self.subject(note.pool),
                note.encode(),
                headers={"Nats-Msg-Id": msg_id},
                timeout=5,
            )
        except NatsError as exc:  # timeouts, a closed connection, no stream to answer
            raise StoreError(f"could not publish command {note.command_id} to NATS: {exc}") from exc

    async def subscribe(self, pool: str) -> PoolSubscription:
        """The pool's shared durable pull consumer (created on first use)."""
        durable = f"workers-{check_pool(pool)}"
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            filter_subject=self.subject(pool),
        )
        subscription = await self._js.pull_subscribe(
            self.subject(pool), durable=durable, stream=self.stream, config=config
        )
        await self._reconcile(durable, config)
        return PoolSubscription(subscription)

    async def _reconcile(self, durable: str, config: ConsumerConfig) -> None:
        """Bring an existing durable consumer's ``ack_wait`` and ``max_deliver`` to this
        worker's (JetStream keeps the first creator's otherwise)."""
        try:
            info = await self._js.consumer_info(self.stream, durable)
        except NatsError as exc:
            logger.warning("could not read consumer %s: %s", durable, exc)
            return
        current = info.config
        if current.ack_wait == config.ack_wait and current.max_deliver == config.max_deliver:
            return
        logger.warning(
            "consumer %s had ack_wait %ss and max_deliver %s; now %ss and %s (from this worker)",
            durable,
            current.ack_wait,
            current.max_deliver,
            config.ack_wait,
            config.max_deliver,
        )
        current.ack_wait, current.max_deliver = config.ack_wait, config.max_deliver
        try:
            await self._js.add_consumer(self.stream, config=current)
        except NatsError as exc:
            logger.warning("could not update consumer %s: %s", durable, exc)

    async def ping(self, timeout: float = 5.0) -> None:
        """Raise ``StoreError`` unless NATS is connected and the stream answers."""
        if not self._client.is_connected:
            raise StoreError("not connected to NATS (reconnecting); check that it is running")
        try:
            await asyncio.wait_for(self._js.stream_info(self.stream), timeout)
        except NotFoundError:
            raise StoreError(
                f"the JetStream stream {self.stream} is missing; restart the server to create it"
            ) from None
        except (TimeoutError, NatsError) as exc:
            raise StoreError(
                f"JetStream did not answer for stream {self.stream}: {type(exc).__name__}"
                f"{': ' + str(exc) if str(exc) else ''}"
            ) from exc

    async def delete_stream(self) -> None:
        """Remove the stream and its consumers (tests, uninstall)."""
        with contextlib.suppress(NotFoundError):
            await self._js.delete_stream(self.stream)

    async def aclose(self) -> None:
        # Every publish was acknowledged already, so closing loses nothing; draining would
        # wait for pull requests that only time out.
        if self._log is not None:
            self._log.closing = True
        if not self._client.is_closed:
            await self._client.close()
