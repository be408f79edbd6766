"""Fixtures for the learning tests: the real model (loaded once per session), real local
Qdrant folders, and engines on SQLite or PostgreSQL that run real playbooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from learning.embedder import SentenceEmbedder, shared_embedder
from learning.vector_store import IndexLocation, VectorStore


@pytest.fixture(scope="session")
def embedder() -> SentenceEmbedder:
    """The bundled model, loaded once for the whole session."""
    model = shared_embedder()
    model.embed(["warm up"])
    return model


@pytest.fixture
def store(tmp_path: Path) -> VectorStore:
    """A fresh local Qdrant index."""
    return VectorStore.open(IndexLocation.local(tmp_path / "qdrant"))


@dataclass
class Stack:
    """An engine and what it stores into."""

    engine: Engine
    backend: str

    async def run(self, content: str, workload: dict[str, Any] | None = None) -> str:
        """Register and run ``content`` to its end; return the execution id."""
        entry = await self.engine.register(content)
        execution_id = await self.engine.execute(entry.path, workload=workload)
        await self.engine.wait(execution_id, timeout=30)
        return execution_id


@asynccontextmanager
async def open_stack(backend: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """An embedded engine whose events and catalog live in SQLite or PostgreSQL."""
    if backend == "postgres":
        from tests.conformance.conftest import fresh_postgres, require_postgres

        async with fresh_postgres(await require_postgres()) as pg:
            engine = Engine(pg.events, pg.catalog, lock_dir=tmp_path / "locks")
            try:
                yield Stack(engine, backend)
            finally:
                await engine.aclose()
        return
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    try:
        yield Stack(engine, backend)
    finally:
        await engine.aclose()
        db.close()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """An embedded engine on a fresh SQLite file."""
    async with open_stack("sqlite", tmp_path) as opened:
        yield opened
