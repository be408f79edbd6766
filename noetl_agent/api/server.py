"""Serving the API: on the embedded stack (``serve``: one process, the SQLite file under
``home``, tools run in-process) or distributed (``serve_distributed``: PostgreSQL holds
events, catalog, tokens and commands; workers learn of commands through NATS JetStream,
claim them here and report their events here).

On start the engine picks up every execution a stopped process left running (and paused
ones whose approval timed out), then uvicorn serves the app on the same event loop.
SIGINT and SIGTERM stop the server gracefully; executions still running stay ``running``
in the log and the next start finishes them. Distributed, the outstanding commands of
those executions are announced to the workers again, and a reaper task re-announces
commands whose claim expired (a worker died) or that nobody claimed for a lease, and
fails the step of a command claimed ``max_claims`` times without a result. The
distributed server keeps credentials in PostgreSQL, encrypted, and hands a value only to
the worker holding a claim on a command that uses it. Both index the event log for
search in the background after each batch of events (``noetl_agent.history``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from engine.adapters.credential_store import CredentialKey, EncryptedCredentialStore
from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from engine.runtime.redaction import install_log_redaction, process_redactor
from noetl_agent.api.app import create_app
from noetl_agent.api.middleware import DEFAULT_MAX_BODY_BYTES
from noetl_agent.config import noetl_home
from noetl_agent.history import History, distributed_history, embedded_history, start_indexing
from noetl_agent.local import local_credential_store, local_engine
from noetl_agent.tokens import PostgresTokenStore, SqliteTokenStore, TokenStore

logger = logging.getLogger(__name__)
Announce = Callable[[str], None]
Extension = Callable[[FastAPI, str, int], contextlib.AbstractAsyncContextManager[None]]


class _Server(uvicorn.Server):
    """uvicorn's server without re-raising the stop signal after shutdown, so the engine
    behind it closes cleanly."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        stops = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in stops}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


async def serve(
    home: Path,
    host: str,
    port: int,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    announce: Announce = logger.info,
) -> None:
    """Serve the API for the state under ``home`` until SIGINT or SIGTERM."""
    install_log_redaction(process_redactor())
    async with local_engine(home) as engine:
        db = SqliteDatabase.open(home / "noetl.db")
        try:
            tokens = SqliteTokenStore(db)
            await _warn_without_tokens(tokens, announce)
            engine.prewarm()
            recovered = await engine.recover()
            if recovered:
                announce(f"resumed {len(recovered)} execution(s): {', '.join(recovered)}")
            history = embedded_history(engine.events, engine.catalog, home)
            app = create_app(
                engine,
                tokens,
                max_body_bytes=max_body_bytes,
                credentials=local_credential_store(home),
                history=history,
            )
            await _serve_app(app, engine, history, host, port, announce, f"for {home}")
        finally:
            db.close()


@dataclass(frozen=True, slots=True)
class Distributed:
    """Where the distributed mode keeps its state and announces commands, and its timing."""

    database_url: str
    nats_url: str
    schema: str = "noetl"
    stream: str = "NOETL_COMMANDS"
    subject_prefix: str = "noetl.commands"
    lease: float = 30.0  # a claim's lease when the worker names none; unclaimed re-announce
    reap_interval: float = 2.0  # seconds between reaper passes
    # Claims of a command whose workers die before it fails (None: ``MAX_CLAIMS`` of
    # ``engine.adapters.postgres.commands``, imported only when serving distributed).
    max_claims: int | None = None
    home: Path | None = None  # the credential key file's folder (default $NOETL_HOME)


async def serve_distributed(
    settings: Distributed,
    host: str,
    port: int,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    announce: Announce = logger.info,
) -> None:
    """Serve the API on PostgreSQL and NATS until SIGINT or SIGTERM.

    Migrates the schema first. Raises ``StoreError`` when either cannot be reached.
    Credentials are kept in the schema's ``credential`` table, encrypted under
    ``NOETL_CREDENTIAL_KEY`` or else the key file ``credential.key`` of ``settings.home``
    (``$NOETL_HOME``): every server of one database needs the same key."""
    from engine.adapters.nats.bus import NatsCommandBus
    from engine.adapters.postgres import (
        DistributedCommandQueue,
        PostgresCommandStore,
        PostgresDatabase,
    )
    from engine.adapters.postgres.commands import MAX_CLAIMS

    install_log_redaction(process_redactor())
    async with contextlib.AsyncExitStack() as stack:
        db = await PostgresDatabase.open(settings.database_url, schema=settings.schema)
        stack.push_async_callback(db.close)
        await db.migrate()
        bus = await NatsCommandBus.connect(
            settings.nats_url, stream=settings.stream, subject_prefix=settings.subject_prefix
        )
        stack.push_async_callback(bus.aclose)
        commands = PostgresCommandStore(db)
        max_claims = MAX_CLAIMS if settings.max_claims is None else settings.max_claims
        queue = DistributedCommandQueue(
            commands, bus, renotify_after=settings.lease, max_claims=max_claims
        )
        stack.push_async_callback(queue.aclose)
        engine = Engine(
            db.events, db.catalog, queue=queue, lock_dir=None, redactor=process_redactor()
        )
        stack.push_async_callback(engine.aclose)
        engine.subscribe(queue.observe)
        queue.report_to(engine.report)
        credentials = EncryptedCredentialStore.postgres(
            db, CredentialKey.from_environment(settings.home or noetl_home())
        )
        tokens = PostgresTokenStore(db)
        await _warn_without_tokens(tokens, announce, "--database URL ")
        recovered = await engine.recover()
        if recovered:
            again = await queue.renotify(recovered)
            announce(
                f"resumed {len(recovered)} execution(s): {', '.join(recovered)}; "
                f"{again} queued command(s) announced again"
            )
        reaper = asyncio.create_task(queue.run_reaper(settings.reap_interval), name="reaper")
        stack.push_async_callback(_stop_task, reaper)
        history = distributed_history(db, credentials, settings.home)
        app = create_app(
            engine,
            tokens,
            max_body_bytes=max_body_bytes,
            credentials=credentials,
            commands=commands,
            probes={"database": commands.ping, "nats": bus.ping},
            lease_seconds=settings.lease,
            history=history,
        )
        where = (
            f"on PostgreSQL schema {settings.schema!r}, announcing commands on NATS stream "
            f"{settings.stream}"
        )
        await _serve_app(app, engine, history, host, port, announce, where)


async def _warn_without_tokens(tokens: TokenStore, announce: Announce, options: str = "") -> None:
    if not await tokens.list():
        announce(
            "no API tokens yet: every /api request will get 401 until you create one with "
            f"`noetl-agent tokens create {options}--name NAME --kind human --role admin`"
        )


async def _serve_app(
    app: FastAPI,
    engine: Engine,
    history: History,
    host: str,
    port: int,
    announce: Announce,
    where: str,
) -> None:
    """Index ``history`` in the background and serve ``app`` until SIGINT or SIGTERM,
    with the server extensions mounted (``/mcp``; see ``_extensions``)."""
    indexing = start_indexing(engine, history)
    try:
        config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="info")
        async with contextlib.AsyncExitStack() as extensions:
            for extend in _extensions():
                await extensions.enter_async_context(extend(app, host, port))
            announce(f"serving http://{host}:{port} (OpenAPI at /docs) {where}")
            await _Server(config).serve()
    finally:
        if indexing is not None:
            await indexing.aclose()


def _extensions() -> list[Extension]:
    """The server extensions the layers above this one declare (entry point group
    ``noetl_agent.server_extensions`` of this distribution), so they plug in without this
    package importing them: each is called with the app, host and port before serving,
    may add routes (``mcp_server`` serves MCP at ``/mcp``), and returns a context kept
    open while the server runs. Run from a source tree never installed, there are none."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        found = distribution("noetl-agent").entry_points
    except PackageNotFoundError:
        return []
    return [plugin.load() for plugin in found.select(group="noetl_agent.server_extensions")]


async def _stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
