"""Fixtures that give every conformance test a fresh store of each backend.

PostgreSQL is the real server: ``NOETL_TEST_POSTGRES_DSN`` when set, else the ``test``
database on 127.0.0.1:5432 (the ``postgres`` database when ``test`` does not exist).
Each test gets a schema of its own, created by ``migrate()`` and dropped afterwards.
When the server is unreachable the PostgreSQL cases skip loudly (fail under CI=true).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from engine.adapters.memory import MemoryCatalogStore, MemoryEventStore
from engine.adapters.postgres import PostgresDatabase
from engine.adapters.sqlite import SqliteDatabase
from engine.ports import CatalogStore, EventStore
from tests.conftest import require_service

STORE_BACKENDS = ["memory", "sqlite", "postgres"]
POSTGRES_DSN_ENV = "NOETL_TEST_POSTGRES_DSN"
POSTGRES_DSNS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://postgres@127.0.0.1:5432/postgres",
)
_probed: dict[str, str | None] = {}  # "dsn" → the usable DSN or None, "problem" → why


async def _probe_postgres() -> tuple[str | None, str]:
    candidates = [os.environ[POSTGRES_DSN_ENV]] if os.environ.get(POSTGRES_DSN_ENV) else []
    problems: list[str] = []
    for dsn in candidates or POSTGRES_DSNS:
        try:
            conn = await asyncpg.connect(dsn, timeout=3)
        except asyncpg.InvalidCatalogNameError as e:  # no such database: try the next
            problems.append(f"{dsn}: {e}")
            continue
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            problems.append(f"{dsn}: {e!r}")
            break
        await conn.close()
        return dsn, ""
    return None, "; ".join(problems)


async def require_postgres() -> str:
    """The test server's DSN; skips the test (fails it under CI=true) when unreachable."""
    if "dsn" not in _probed:
        _probed["dsn"], _probed["problem"] = await _probe_postgres()
    dsn = _probed["dsn"]
    require_service(dsn is not None, f"PostgreSQL ({_probed['problem']})")
    assert dsn is not None
    return dsn


async def drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_postgres(
    dsn: str, *, migrate: bool = True, max_size: int = 4
) -> AsyncIterator[PostgresDatabase]:
    """A ``PostgresDatabase`` on a new, uniquely named schema, dropped on exit."""
    schema = f"t_{uuid.uuid4().hex}"
    db = await PostgresDatabase.open(dsn, schema=schema, min_size=1, max_size=max_size)
    try:
        if migrate:
            await db.migrate()
        yield db
    finally:
        if db.closed:
            await drop_schema(dsn, schema)
        else:
            async with db.pool.acquire() as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await db.close()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    """Where a SQLite test database lives (its directory does not exist yet)."""
    return tmp_path / "store" / "noetl.db"


@pytest.fixture(params=STORE_BACKENDS)
async def event_store(
    request: pytest.FixtureRequest, sqlite_path: Path
) -> AsyncIterator[EventStore]:
    """A fresh, empty event store of each backend."""
    if request.param == "postgres":
        async with fresh_postgres(await require_postgres()) as db:
            yield db.events
        return
    store: EventStore
    if request.param == "memory":
        store = MemoryEventStore()
    else:
        store = SqliteDatabase.open(sqlite_path).events
    yield store
    await store.close()


@pytest.fixture(params=STORE_BACKENDS)
async def catalog_store(
    request: pytest.FixtureRequest, sqlite_path: Path
) -> AsyncIterator[CatalogStore]:
    """A fresh, empty catalog store of each backend."""
    if request.param == "postgres":
        async with fresh_postgres(await require_postgres()) as pg:
            yield pg.catalog
    elif request.param == "memory":
        memory = MemoryCatalogStore()
        yield memory
        await memory.close()
    else:
        db = SqliteDatabase.open(sqlite_path)
        yield db.catalog
        db.close()
