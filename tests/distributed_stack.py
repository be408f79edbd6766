"""The distributed server in process, on the machine's real PostgreSQL and NATS.

``distributed_stack()`` gives a fresh schema and a JetStream stream of its own (both
removed afterwards), the command store and queue, an engine on them, PostgreSQL tokens for
each kind of principal and the app, reachable through ``stack.client()`` (httpx over
ASGI); ``started_note`` starts a playbook and takes the note of its first command.
``FakeWorker`` is a worker of the contract in a few lines: take a note, claim the command
over HTTP, run it with the tool runner and report its events over HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import FastAPI

from engine.adapters.credential_store import CredentialKey, EncryptedCredentialStore
from engine.adapters.nats.bus import CommandNote, NatsCommandBus
from engine.adapters.postgres import (
    DistributedCommandQueue,
    PostgresCommandStore,
    PostgresDatabase,
)
from engine.adapters.postgres.commands import MAX_CLAIMS
from engine.core.commands import RunTool
from engine.core.events import Event
from engine.runtime.embedded import Engine
from engine.runtime.tool_runner import ToolRunner
from engine.tools.registry import ToolRegistry
from noetl_agent.api import create_app
from noetl_agent.tokens import PostgresTokenStore
from tests.conformance.conftest import fresh_postgres, require_postgres
from tests.conftest import require_service
from tests.principals import create_tokens
from tests.processes import NATS_URL, port_open

CREDENTIAL_KEY = base64.urlsafe_b64encode(b"distributed-stack-test-key-32-by").decode()
BASE_URL = "http://noetl.test"


def nats_up() -> bool:
    return port_open(4222)


def command_path(command_id: str, action: str) -> str:
    return f"/api/commands/{quote(command_id, safe='')}/{action}"


@dataclass
class DistributedStack:
    db: PostgresDatabase
    bus: NatsCommandBus
    store: PostgresCommandStore
    queue: DistributedCommandQueue
    engine: Engine
    app: FastAPI
    secrets: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[who]}"}

    def client(self, who: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url=BASE_URL,
            headers=self.auth(who) if who else None,
        )


async def started_note(stack: DistributedStack, content: str) -> CommandNote:
    """Register and execute ``content`` as the operator; take (and ack) the note its first
    command got, which names the execution the server answered with."""
    async with stack.client("operator") as api:
        registered = await api.post("/api/catalog/register", json={"content": content})
        assert registered.status_code == 200, registered.text
        started = await api.post("/api/execute", json={"path": registered.json()["path"]})
        assert started.status_code == 202, started.text
    subscription = await stack.bus.subscribe("cpu")
    try:
        delivery = await subscription.next(timeout=5)
        assert delivery is not None, "no note was published"
        await delivery.ack()
    finally:
        await subscription.aclose()
    assert delivery.note.execution_id == started.json()["execution_id"], delivery.note
    return delivery.note


@contextlib.asynccontextmanager
async def distributed_stack(
    *, lease: float = 30.0, reap_interval: float | None = None, max_claims: int = MAX_CLAIMS
) -> AsyncIterator[DistributedStack]:
    """The stack; with ``reap_interval`` the reaper runs every that many seconds. Its
    credential store is encrypted under a key made for the stack (``CREDENTIAL_KEY``)."""
    require_service(nats_up(), "NATS with JetStream at 127.0.0.1:4222")
    dsn = await require_postgres()
    name = f"T_{uuid.uuid4().hex[:12]}"
    async with contextlib.AsyncExitStack() as stack:
        db = await stack.enter_async_context(fresh_postgres(dsn, max_size=12))
        bus = await NatsCommandBus.connect(NATS_URL, stream=name, subject_prefix=f"test.{name}")
        stack.push_async_callback(bus.aclose)
        stack.push_async_callback(bus.delete_stream)
        store = PostgresCommandStore(db)
        queue = DistributedCommandQueue(store, bus, renotify_after=lease, max_claims=max_claims)
        stack.push_async_callback(queue.aclose)
        engine = Engine(db.events, db.catalog, queue=queue)
        engine.subscribe(queue.observe)
        queue.report_to(lambda events: started.engine.report(events))
        credentials = EncryptedCredentialStore.postgres(db, CredentialKey(secret=CREDENTIAL_KEY))
        tokens = PostgresTokenStore(db)
        secrets = await create_tokens(tokens)
        app = create_app(
            engine,
            tokens,
            credentials=credentials,
            commands=store,
            probes={"database": store.ping, "nats": bus.ping},
            lease_seconds=lease,
        )
        started = DistributedStack(db, bus, store, queue, engine, app, secrets)

        async def close_engine() -> None:  # the one in place by then (a test may swap it)
            await started.engine.aclose()

        stack.push_async_callback(close_engine)
        if reap_interval is not None:
            reaper = asyncio.create_task(queue.run_reaper(reap_interval))
            stack.push_async_callback(_cancel, reaper)
        yield started


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@dataclass
class FakeWorker:
    """Claims and runs the commands of one pool; ``abandon`` names steps whose first
    claim it keeps without ever reporting (as if it died holding the claim)."""

    stack: DistributedStack
    worker_id: str
    pool: str = "cpu"
    lease: float = 30.0
    abandon: set[str] = field(default_factory=set)
    abandoned: list[str] = field(default_factory=list)
    claims: list[tuple[str, int]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name=f"fake-worker:{self.worker_id}")

    async def stop(self) -> None:
        """Stop between notes (a request cut off half-way could leave a query running)."""
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except TimeoutError:
                await _cancel(self._task)

    async def _serve(self) -> None:
        registry = ToolRegistry()
        subscription = await self.stack.bus.subscribe(self.pool)
        try:
            async with self.stack.client("worker") as http:
                runner = ToolRunner(registry)
                while not self._stopping:
                    delivery = await subscription.next(timeout=0.1)
                    if delivery is None:
                        continue
                    await self._handle(http, runner, delivery.note.command_id)
                    await delivery.ack()
        finally:
            await registry.aclose()

    async def _handle(self, http: httpx.AsyncClient, runner: ToolRunner, command_id: str) -> None:
        body = {"worker_id": self.worker_id, "lease_seconds": self.lease}
        response = await http.post(command_path(command_id, "claim"), json=body)
        if response.status_code in (404, 409):
            return
        assert response.status_code == 200, response.text
        claim = response.json()
        command = RunTool.from_dict(claim["command"])
        self.claims.append((command_id, int(claim["attempt"])))
        if command.step in self.abandon:
            self.abandon.discard(command.step)
            self.abandoned.append(command_id)
            return

        async def report(events: list[Event]) -> None:
            batch: dict[str, Any] = {"events": [event.to_dict() for event in events]}
            answer = await http.post("/api/events/batch", json=batch)
            assert answer.status_code == 200, answer.text

        await runner.run(command, report)
