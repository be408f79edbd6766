"""Fixtures for the explanation tests: an embedded engine on SQLite whose history is
indexed for real (the bundled model, a local Qdrant folder), as the learning tests do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.adapters.credentials import EnvCredentialProvider
from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from learning.vector_store import IndexLocation
from noetl_agent.explain import Explainer
from noetl_agent.history import History
from tests.explain.playbooks import SECRET
from tests.learning.conftest import embedder  # noqa: F401  (the model, loaded once)

CREDENTIALS = {"NOETL_CREDENTIAL_WAREHOUSE": f'{{"user": "etl", "password": "{SECRET}"}}'}


@dataclass
class World:
    """An engine, its indexed history and an explainer over them."""

    engine: Engine
    db: SqliteDatabase
    history: History
    explainer: Explainer
    home: Path
    runs: dict[str, list[str]] = field(default_factory=dict)

    async def run(self, key: str, content: str, workload: dict[str, Any] | None = None) -> str:
        """Register and run ``content`` to its end; the id is kept under ``key``."""
        entry = await self.engine.register(content)
        execution_id = await self.engine.execute(entry.path, workload=workload)
        await self.engine.wait(execution_id, timeout=30)
        self.runs.setdefault(key, []).append(execution_id)
        return execution_id


@pytest.fixture
async def world(tmp_path: Path, embedder: Any) -> AsyncIterator[World]:  # noqa: F811
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    credentials = EnvCredentialProvider(CREDENTIALS)
    history = History(
        db.events, db.catalog, IndexLocation.local(tmp_path / "qdrant"), credentials=[credentials]
    )
    explainer = Explainer(db.events, db.catalog, history=history)
    try:
        yield World(engine, db, history, explainer, tmp_path)
    finally:
        await engine.aclose()
        db.close()
