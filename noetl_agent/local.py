"""The embedded stack: one SQLite file, in-process workers, credentials on disk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from engine.adapters.credentials import (
    ChainCredentialProvider,
    EnvCredentialProvider,
    FileCredentialProvider,
)
from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from noetl_agent.config import noetl_home


@asynccontextmanager
async def local_engine(home: Path | None = None) -> AsyncIterator[Engine]:
    """Open the embedded engine under ``home`` (default ``$NOETL_HOME``) and close it after."""
    root = home or noetl_home()
    db = SqliteDatabase.open(root / "noetl.db")
    credentials = ChainCredentialProvider(
        [FileCredentialProvider(root / "credentials.json"), EnvCredentialProvider()]
    )
    engine = Engine(db.events, db.catalog, credentials=credentials, lock_dir=root / "locks")
    try:
        yield engine
    finally:
        await engine.aclose()
        db.close()
