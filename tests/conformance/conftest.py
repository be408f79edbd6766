"""Fixtures that give every conformance test a fresh store of each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.adapters.memory import MemoryCatalogStore, MemoryEventStore
from engine.adapters.sqlite import SqliteDatabase
from engine.ports import CatalogStore, EventStore

STORE_BACKENDS = ["memory", "sqlite"]


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    """Where a SQLite test database lives (its directory does not exist yet)."""
    return tmp_path / "store" / "noetl.db"


@pytest.fixture(params=STORE_BACKENDS)
async def event_store(
    request: pytest.FixtureRequest, sqlite_path: Path
) -> AsyncIterator[EventStore]:
    """A fresh, empty event store of each backend."""
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
    if request.param == "memory":
        memory = MemoryCatalogStore()
        yield memory
        await memory.close()
    else:
        db = SqliteDatabase.open(sqlite_path)
        yield db.catalog
        db.close()
