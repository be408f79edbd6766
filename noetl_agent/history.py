"""Execution history search for one stack: the learning layer wired to its stores.

:class:`History` holds the indexer and the searcher of one event store and catalog and
answers asynchronously (the model and local Qdrant work runs in a thread). The index is
opened on first use, so a server starts without waiting for Qdrant or the model:

- ``NOETL_QDRANT_URL`` set: that Qdrant server (``NOETL_QDRANT_API_KEY``), collections
  named ``$NOETL_QDRANT_PREFIX_<kind>`` (prefix ``noetl`` by default);
- otherwise qdrant-client local mode in ``$NOETL_HOME/qdrant`` (one process at a time).

Secrets of every credential the stack can list are masked before anything is embedded.
``NOETL_INDEXER=off`` keeps a server from indexing in the background.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.adapters.credentials import EnvCredentialProvider
from engine.ports import CatalogStore, EventStore
from learning.offload import offload
from noetl_agent.config import noetl_home
from noetl_agent.local import local_credential_sources

if TYPE_CHECKING:
    from engine.adapters.postgres import PostgresDatabase
    from engine.runtime.embedded import Engine
    from learning.anomalies import DurationAnomaly
    from learning.clusters import ErrorCluster
    from learning.indexer import BackgroundIndexer, Indexer, IndexReport
    from learning.search import Hit, Searcher
    from learning.secrets_mask import ListableCredentials
    from learning.vector_store import IndexLocation

QDRANT_URL_ENV = "NOETL_QDRANT_URL"
QDRANT_KEY_ENV = "NOETL_QDRANT_API_KEY"
QDRANT_PREFIX_ENV = "NOETL_QDRANT_PREFIX"
INDEXER_ENV = "NOETL_INDEXER"
# Positions PostgreSQL can make visible out of order (ids drawn before commit) are
# re-read this far back; documents already stored are not embedded again.
POSTGRES_OVERLAP = 200


def index_location(home: Path | None = None) -> IndexLocation:
    """Where the vector index of ``home`` (default ``$NOETL_HOME``) lives (see above)."""
    from learning.vector_store import DEFAULT_PREFIX, IndexLocation

    prefix = os.environ.get(QDRANT_PREFIX_ENV) or DEFAULT_PREFIX
    url = os.environ.get(QDRANT_URL_ENV)
    if url:
        return IndexLocation.server(url, os.environ.get(QDRANT_KEY_ENV) or None, prefix)
    return IndexLocation.local((home or noetl_home()) / "qdrant", prefix)


def indexing_enabled() -> bool:
    """Whether a server indexes in the background (``NOETL_INDEXER`` is not off)."""
    return os.environ.get(INDEXER_ENV, "on").strip().lower() not in {"off", "0", "false", "no"}


class History:
    """Index and search the execution history of one event store and catalog."""

    def __init__(
        self,
        events: EventStore,
        catalog: CatalogStore,
        location: IndexLocation,
        *,
        credentials: Sequence[ListableCredentials] = (),
        source: str = "events",
        overlap: int = 0,
    ) -> None:
        self.events = events
        self.catalog = catalog
        self.location = location
        self.credentials = list(credentials)
        self.source = source
        self.overlap = overlap
        self._indexer: Indexer | None = None
        self._searcher: Searcher | None = None

    def __repr__(self) -> str:
        return f"History({self.location.describe()})"

    def _open(self) -> tuple[Indexer, Searcher]:
        if self._indexer is None or self._searcher is None:
            from learning.indexer import Indexer
            from learning.search import Searcher
            from learning.vector_store import VectorStore

            store = VectorStore.open(self.location)
            self._indexer = Indexer(
                self.events,
                self.catalog,
                store,
                credentials=self.credentials,
                source=self.source,
                overlap=self.overlap,
            )
            self._searcher = Searcher(store)
        return self._indexer, self._searcher

    async def _parts(self) -> tuple[Indexer, Searcher]:
        if self._indexer is not None and self._searcher is not None:
            return self._indexer, self._searcher
        return await offload(self._open)

    async def index(self) -> IndexReport:
        """Index what is new in the event log."""
        indexer, _ = await self._parts()
        return await indexer.run_once()

    async def search(
        self,
        text: str,
        *,
        kind: str | None = None,
        filters: Mapping[str, Any] | None = None,
        k: int = 10,
    ) -> list[Hit]:
        """Hits closest in meaning to ``text``, best first (``search_history``)."""
        _, searcher = await self._parts()
        return await offload(lambda: searcher.search_history(text, kind, filters, k))

    async def similar_failures(
        self, *, execution_id: str | None = None, text: str | None = None, k: int = 5
    ) -> list[Hit]:
        """Past failures like the execution's failure, or like an error text."""
        _, searcher = await self._parts()
        if execution_id:
            await self.events.get_execution(execution_id)  # NotFound for an unknown id
            if await self.failure_of(execution_id) is None:
                await self.index()  # it may have failed since the last pass
        return await offload(
            lambda: searcher.similar_failures(execution_id=execution_id, text=text, k=k)
        )

    async def failure_of(self, execution_id: str) -> Hit | None:
        """The execution's own indexed failure, or None."""
        _, searcher = await self._parts()
        return await offload(lambda: searcher.failure_of(execution_id))

    async def failure_and_similar(self, execution_id: str, *, k: int = 5) -> dict[str, Any]:
        """``{execution_id, failure, similar}``: the execution's own indexed failure (or
        None) and up to ``k`` past failures of other executions like it, as dicts."""
        hits = await self.similar_failures(execution_id=execution_id, k=k)
        failure = await self.failure_of(execution_id)
        return {
            "execution_id": execution_id,
            "failure": failure.to_dict() if failure else None,
            "similar": [hit.to_dict() for hit in hits],
        }

    async def similar_playbooks(self, description: str, *, k: int = 5) -> list[Hit]:
        _, searcher = await self._parts()
        return await offload(lambda: searcher.similar_playbooks(description, k))

    async def clusters(
        self, *, threshold: float | None = None, min_count: int = 1, playbook: str | None = None
    ) -> list[ErrorCluster]:
        """Failures grouped by meaning, largest group first."""
        from learning.clusters import DEFAULT_THRESHOLD, error_clusters

        _, searcher = await self._parts()
        limit = DEFAULT_THRESHOLD if threshold is None else threshold
        return await offload(
            lambda: error_clusters(
                searcher.store, threshold=limit, min_count=min_count, playbook=playbook
            )
        )

    async def anomalies(
        self,
        *,
        playbook: str | None = None,
        step: str | None = None,
        threshold: float | None = None,
        min_history: int | None = None,
    ) -> list[DurationAnomaly]:
        """Step runs whose duration is far from their step's usual, worst first."""
        from learning.anomalies import DEFAULT_THRESHOLD, MIN_HISTORY, duration_anomalies

        _, searcher = await self._parts()
        return await offload(
            lambda: duration_anomalies(
                searcher.store,
                playbook=playbook,
                step=step,
                threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
                min_history=MIN_HISTORY if min_history is None else min_history,
            )
        )


def start_indexing(
    engine: Engine, history: History, *, delay: float = 1.0
) -> BackgroundIndexer | None:
    """Index ``history`` in the background after each batch of ``engine``'s events (and
    once now); None when ``NOETL_INDEXER`` is off. Stop it with ``aclose``."""
    if not indexing_enabled():
        return None
    from learning.indexer import BackgroundIndexer

    background = BackgroundIndexer(history.index, delay=delay)
    engine.subscribe(background.notify)
    background.start()
    return background


def embedded_history(events: EventStore, catalog: CatalogStore, home: Path) -> History:
    """The history of the embedded stack's stores under ``home``, masking every local
    credential source."""
    return History(
        events, catalog, index_location(home), credentials=local_credential_sources(home)
    )


def distributed_history(
    db: PostgresDatabase, credentials: ListableCredentials, home: Path | None = None
) -> History:
    """The history of a distributed stack's schema, masking ``credentials`` (its encrypted
    store) and ``NOETL_CREDENTIAL_*``; the server and ``indexer --database`` must agree
    on ``source`` and ``overlap`` to share one index position."""
    return History(
        db.events,
        db.catalog,
        index_location(home),
        credentials=[credentials, EnvCredentialProvider()],
        source=f"postgres:{db.schema}",
        overlap=POSTGRES_OVERLAP,
    )


@asynccontextmanager
async def local_history(home: Path | None = None) -> AsyncIterator[History]:
    """The history of the embedded stack under ``home`` (default ``$NOETL_HOME``)."""
    from engine.adapters.sqlite.stores import SqliteDatabase

    root = home or noetl_home()
    db = SqliteDatabase.open(root / "noetl.db")
    try:
        yield embedded_history(db.events, db.catalog, root)
    finally:
        db.close()


@asynccontextmanager
async def postgres_history(
    database_url: str, schema: str = "noetl", home: Path | None = None
) -> AsyncIterator[History]:
    """The history of a distributed stack's PostgreSQL schema (credentials from its
    ``credential`` table, under the key of ``home``)."""
    from engine.adapters.credential_store import CredentialKey, EncryptedCredentialStore
    from engine.adapters.postgres import PostgresDatabase

    db = await PostgresDatabase.open(database_url, schema=schema, max_size=2)
    try:
        await db.migrate()
        credentials = EncryptedCredentialStore.postgres(
            db, CredentialKey.from_environment(home or noetl_home())
        )
        yield distributed_history(db, credentials, home)
    finally:
        await db.close()
