"""The embedded stack: one SQLite file, in-process workers, credentials encrypted in it.

Playbooks resolve credential names, in order, from the encrypted store (table
``credentials`` of ``noetl.db``), from a plain ``credentials.json`` left by earlier
versions (read only; ``noetl-agent credentials import-file`` moves it into the store),
and from ``NOETL_CREDENTIAL_<NAME>`` environment variables.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.adapters.credential_store import CredentialKey, EncryptedCredentialStore
from engine.adapters.credentials import (
    ChainCredentialProvider,
    CredentialInfo,
    EnvCredentialProvider,
    FileCredentialProvider,
)
from engine.adapters.sqlite.stores import SqliteDatabase
from engine.errors import ToolConfigError
from engine.runtime.embedded import Engine
from engine.runtime.redaction import process_redactor
from noetl_agent.config import noetl_home

LEGACY_FILE = "credentials.json"


def local_credential_store(home: Path | None = None) -> EncryptedCredentialStore:
    """The encrypted credential store of ``home`` (default ``$NOETL_HOME``)."""
    root = home or noetl_home()
    return EncryptedCredentialStore.sqlite(root / "noetl.db", CredentialKey.from_environment(root))


def local_credential_sources(
    home: Path | None = None,
) -> list[EncryptedCredentialStore | FileCredentialProvider | EnvCredentialProvider]:
    """Where the embedded stack under ``home`` resolves credential names, in order (see
    above); each can also list its names, so their values can be masked."""
    root = home or noetl_home()
    return [
        local_credential_store(root),
        FileCredentialProvider(root / LEGACY_FILE),
        EnvCredentialProvider(),
    ]


@asynccontextmanager
async def local_engine(home: Path | None = None) -> AsyncIterator[Engine]:
    """Open the embedded engine under ``home`` (default ``$NOETL_HOME``) and close it after."""
    root = home or noetl_home()
    db = SqliteDatabase.open(root / "noetl.db")
    credentials = ChainCredentialProvider(local_credential_sources(root))
    engine = Engine(
        db.events,
        db.catalog,
        credentials=credentials,
        lock_dir=root / "locks",
        redactor=process_redactor(),
    )
    try:
        yield engine
    finally:
        await engine.aclose()
        db.close()


@dataclass(frozen=True, slots=True)
class Imported:
    """What ``import_file`` did: the names moved, and whether the plain file is gone."""

    names: list[str]
    removed: Path | None


class LocalCredentials:
    """The local credential store for synchronous callers (the CLI)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or noetl_home()
        self.store = local_credential_store(self.home)
        self.legacy = FileCredentialProvider(self.home / LEGACY_FILE)

    def set(self, name: str, kind: str, data: Mapping[str, Any]) -> None:
        """Encrypt and store ``name``."""
        asyncio.run(self.store.set(name, kind, data))

    def list(self) -> list[CredentialInfo]:
        """Names and kinds in the encrypted store."""
        return asyncio.run(self.store.list())

    def legacy_names(self) -> builtins.list[str]:
        """Names still in the plain ``credentials.json`` (empty when there is none)."""
        return [info.name for info in self.legacy.list()]

    def delete(self, name: str) -> bool:
        """Remove ``name`` from the store, and from a plain ``credentials.json`` too."""
        deleted = asyncio.run(self.store.delete(name))
        if self.legacy.path.exists() and self.legacy.delete(name):
            deleted = True
        return deleted

    def import_file(self, path: Path | None = None, *, keep: bool = False) -> Imported:
        """Encrypt every credential of a plain JSON file (``credentials.json`` by default)
        into the store, then delete the file unless ``keep``."""
        if path is not None and not path.exists():
            raise ToolConfigError(f"{path} does not exist; give the JSON file to import")
        source = self.legacy if path is None else FileCredentialProvider(path)

        async def move() -> list[str]:
            names = []
            for info in source.list():
                credential = await source.get(info.name)
                await self.store.set(info.name, credential.kind, dict(credential))
                names.append(info.name)
            return names

        names = asyncio.run(move())
        removed = None
        if not keep and source.path.exists():
            source.path.unlink()
            removed = source.path
        return Imported(names, removed)
