"""The vector index: one Qdrant collection per document kind, plus the indexer's cursor.

    VectorStore.open(IndexLocation.local(path))     qdrant-client local mode, a folder
    VectorStore.open(IndexLocation.server(url))     a Qdrant server; the same calls

Collections are ``<prefix>_failures``, ``<prefix>_steps``, ``<prefix>_executions`` and
``<prefix>_playbooks`` (384 dimensions), so the usual searches need no payload filter
(local mode filters by scanning in Python). Vectors are unit length (the embedder
normalises them), so collections compare them by dot product, which is their cosine
similarity without local mode re-normalising every stored vector on each query. Every
document has a ``text`` vector; a failure also has a ``message`` vector of its error
message alone, which compares failures with each other better than the whole text does.
``<prefix>_state`` holds the indexer's position in the event log, so the cursor lives and
dies with the vectors.

Local mode keeps each collection in a SQLite file and writes each point in its own
transaction; with SQLite's default journal every one of them waits for the disk (about
10 ms on a virtual disk: slower than embedding the document). Each collection's file is
therefore switched to a write-ahead log with ``synchronous=NORMAL`` (consistent after a
crash, with no flush per point), and :meth:`VectorStore.set_cursor` checkpoints the
collections (which flushes them) before it moves the cursor, so a power loss can drop
recent points only together with the position that covered them.

Local mode allows one client per folder per process (and one process per folder): every
:class:`VectorStore` of a folder shares one client and one lock, and a folder held by
another process raises :class:`IndexUnavailable` saying so. Calls are synchronous;
async callers run them in a thread.
"""

from __future__ import annotations

import atexit
import contextlib
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learning.embedder import DIMENSION
from learning.errors import IndexUnavailable

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

KINDS = ("failures", "steps", "executions", "playbooks")
TEXT = "text"  # the vector of a document's whole text
VECTORS: dict[str, tuple[str, ...]] = {"failures": (TEXT, "message")}  # other kinds: TEXT
DEFAULT_PREFIX = "noetl"
NAMESPACE = uuid.UUID("6f1c1a52-3c1e-4f57-9a43-8d0c1c9a8e21")  # point ids are uuid5 of keys
_KEYWORD_FIELDS = ("execution_id", "playbook_path", "step", "status", "tool_kind")
_TIMEOUT = 30  # seconds for one call to a Qdrant server


@dataclass(frozen=True, slots=True)
class IndexLocation:
    """Where the index lives: a local folder or a server URL, and the collection prefix."""

    path: Path | None = None
    url: str | None = None
    api_key: str | None = None
    prefix: str = DEFAULT_PREFIX

    @classmethod
    def local(cls, path: Path, prefix: str = DEFAULT_PREFIX) -> IndexLocation:
        return cls(path=Path(path), prefix=prefix)

    @classmethod
    def server(
        cls, url: str, api_key: str | None = None, prefix: str = DEFAULT_PREFIX
    ) -> IndexLocation:
        return cls(url=url, api_key=api_key, prefix=prefix)

    def describe(self) -> str:
        return f"Qdrant at {self.url}" if self.url else f"the local index in {self.path}"

    @property
    def key(self) -> str:
        return self.url or str(Path(self.path or ".").resolve())


@dataclass(frozen=True, slots=True)
class Point:
    """A stored document: its id, payload and (when asked for) one of its vectors."""

    id: str
    payload: dict[str, Any]
    score: float | None = None
    vector: list[float] | None = None


def point_id(kind: str, key: str) -> str:
    """The stable id of a document: the same document always lands on the same point."""
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{key}"))


@dataclass(eq=False)
class _Shared:
    client: QdrantClient
    lock: threading.RLock


_clients: dict[str, _Shared] = {}
_clients_lock = threading.Lock()


@contextlib.contextmanager
def _translated(location: IndexLocation) -> Iterator[None]:
    """Qdrant client errors as ``IndexUnavailable``."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        yield
    except (ResponseHandlingException, UnexpectedResponse, ConnectionError) as exc:
        raise IndexUnavailable(
            f"{location.describe()} did not answer ({exc}); start it or unset "
            "NOETL_QDRANT_URL to use the local index"
        ) from exc


def close_all() -> None:
    """Close every client this process opened (registered to run at exit: a local-mode
    client closed by the garbage collector during shutdown complains loudly)."""
    with _clients_lock:
        opened = list(_clients.values())
        _clients.clear()
    for shared in opened:
        with shared.lock, contextlib.suppress(Exception):
            shared.client.close()


def _open_client(location: IndexLocation) -> _Shared:
    with _clients_lock:
        shared = _clients.get(location.key)
        if shared is not None:
            return shared
        if not _clients:
            atexit.register(close_all)
        from qdrant_client import QdrantClient

        if location.url:
            client = QdrantClient(url=location.url, api_key=location.api_key, timeout=_TIMEOUT)
        else:
            assert location.path is not None
            location.path.mkdir(parents=True, exist_ok=True)
            try:
                client = QdrantClient(path=str(location.path))
            except RuntimeError as exc:
                raise IndexUnavailable(
                    f"{location.describe()} is in use by another process (a running "
                    "`noetl-agent server` or `noetl-agent indexer`?); search through the "
                    "server with --server URL, or stop that process"
                ) from exc
        shared = _Shared(client, threading.RLock())
        _clients[location.key] = shared
        return shared


class VectorStore:
    """Upsert, query and scan documents of each kind in Qdrant."""

    def __init__(self, location: IndexLocation, shared: _Shared) -> None:
        self.location = location
        self._client = shared.client
        self._lock = shared.lock
        self._ready: set[str] = set()
        self._unflushed: set[str] = set()  # local collections written since the last flush

    @classmethod
    def open(cls, location: IndexLocation) -> VectorStore:
        """A store on ``location``; raise ``IndexUnavailable`` when it cannot be opened."""
        return cls(location, _open_client(location))

    def __repr__(self) -> str:
        return f"VectorStore({self.location.describe()})"

    def collection(self, kind: str) -> str:
        return f"{self.location.prefix}_{kind}"

    # ------------------------------------------------------------------ collections

    def _ensure(
        self,
        name: str,
        size: int,
        *,
        vectors: Sequence[str] = (),
        keyword_fields: Sequence[str] = (),
    ) -> None:
        if name in self._ready:
            return
        from qdrant_client import models

        if self._client.collection_exists(name):
            self._check(name, vectors)
        else:
            params = models.VectorParams(size=size, distance=models.Distance.DOT)
            config = {vector: params for vector in vectors} if vectors else params
            self._client.create_collection(name, vectors_config=config)
            if self.location.url:  # local mode has no payload indexes
                for field in keyword_fields:
                    self._client.create_payload_index(
                        name, field, field_schema=models.PayloadSchemaType.KEYWORD
                    )
        self._opened(name)

    def _exists(self, name: str) -> bool:
        if name in self._ready:
            return True
        if not self._client.collection_exists(name):
            return False
        kind = name.removeprefix(f"{self.location.prefix}_")
        self._check(name, vector_names(kind) if kind in KINDS else ())
        self._opened(name)
        return True

    def _opened(self, name: str) -> None:
        """Note ``name`` as checked; in local mode, switch its file to a write-ahead log."""
        self._ready.add(name)
        connection = _local_file(self._client, name)
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")

    def _flush(self) -> None:
        """Local mode: write the log of every collection written since the last flush
        into its file, and flush both to disk."""
        for name in sorted(self._unflushed):
            connection = _local_file(self._client, name)
            if connection is not None:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._unflushed.clear()

    def _check(self, name: str, vectors: Sequence[str]) -> None:
        """Refuse a collection whose vectors are not the ones this version stores."""
        configured = self._client.get_collection(name).config.params.vectors
        found = sorted(configured) if isinstance(configured, dict) else []
        if found != sorted(vectors):
            expected = sorted(vectors) or "unnamed"
            raise IndexUnavailable(
                f"collection {name!r} of {self.location.describe()} was built by another "
                f"version (vectors {found or 'unnamed'}, expected {expected}); delete it "
                "(locally: remove the folder) and run `noetl-agent indexer --once` to "
                "build it again"
            )

    # ------------------------------------------------------------------ documents

    def upsert(
        self,
        kind: str,
        items: Sequence[tuple[str, Mapping[str, Sequence[float]], Mapping[str, Any]]],
    ) -> None:
        """Store ``(id, vectors by name, payload)`` items in ``kind``'s collection,
        replacing points of the same id. Every vector the kind has must be given, of
        unit length (as the embedder makes them)."""
        if not items:
            return
        from qdrant_client import models

        name = self.collection(kind)
        points = [
            models.PointStruct(
                id=pid,
                vector={key: list(value) for key, value in vectors.items()},
                payload=dict(payload),
            )
            for pid, vectors, payload in items
        ]
        with self._lock, _translated(self.location):
            self._ensure(
                name, DIMENSION, vectors=vector_names(kind), keyword_fields=_KEYWORD_FIELDS
            )
            self._client.upsert(name, points=points, wait=True)
            self._unflushed.add(name)

    def existing(self, kind: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored in ``kind``'s collection."""
        if not ids:
            return set()
        name = self.collection(kind)
        with self._lock, _translated(self.location):
            if not self._exists(name):
                return set()
            records = self._client.retrieve(name, ids=list(ids), with_payload=False)
        return {str(record.id) for record in records}

    def query(
        self,
        kind: str,
        vector: Sequence[float],
        *,
        limit: int,
        match: Mapping[str, Any] | None = None,
        using: str = TEXT,
    ) -> list[Point]:
        """The ``limit`` documents of ``kind`` whose ``using`` vector is nearest, best
        first, optionally only those whose payload equals ``match`` on every key."""
        name = self.collection(kind)
        with self._lock, _translated(self.location):
            if not self._exists(name):
                return []
            response = self._client.query_points(
                name,
                query=list(vector),
                using=using,
                limit=limit,
                query_filter=_filter(match),
                with_payload=True,
            )
        return [
            Point(str(point.id), dict(point.payload or {}), score=float(point.score))
            for point in response.points
        ]

    def scan(
        self,
        kind: str,
        *,
        match: Mapping[str, Any] | None = None,
        with_vectors: bool = False,
        using: str = TEXT,
        page: int = 256,
    ) -> list[Point]:
        """Every document of ``kind`` (optionally matching ``match``), in no set order,
        with its ``using`` vector when ``with_vectors``."""
        name = self.collection(kind)
        found: list[Point] = []
        offset: Any = None
        with self._lock, _translated(self.location):
            if not self._exists(name):
                return []
            while True:
                records, offset = self._client.scroll(
                    name,
                    scroll_filter=_filter(match),
                    limit=page,
                    offset=offset,
                    with_payload=True,
                    with_vectors=[using] if with_vectors else False,
                )
                for record in records:
                    vector = _named(record.vector, using)
                    found.append(Point(str(record.id), dict(record.payload or {}), vector=vector))
                if offset is None:
                    return found

    def count(self, kind: str) -> int:
        name = self.collection(kind)
        with self._lock, _translated(self.location):
            if not self._exists(name):
                return 0
            return int(self._client.count(name, exact=True).count)

    # ------------------------------------------------------------------ cursor

    def cursor(self, source: str) -> int:
        """The indexer's position in the event log of ``source`` (0 before the first run).
        The state collection is made here when missing, so that moving the cursor at the
        end of a page is one small write."""
        name = self.collection("state")
        with self._lock, _translated(self.location):
            self._ensure(name, 1)
            records = self._client.retrieve(name, ids=[point_id("cursor", source)])
        if not records:
            return 0
        return int((records[0].payload or {}).get("position", 0))

    def set_cursor(self, source: str, position: int) -> None:
        from qdrant_client import models

        name = self.collection("state")
        point = models.PointStruct(
            id=point_id("cursor", source),
            vector=[1.0],
            payload={"source": source, "position": position},
        )
        with self._lock, _translated(self.location):
            self._ensure(name, 1)
            self._flush()  # the points this position covers reach the disk first
            self._client.upsert(name, points=[point], wait=True)


def vector_names(kind: str) -> tuple[str, ...]:
    """The named vectors of a kind's documents."""
    return VECTORS.get(kind, (TEXT,))


def _local_file(client: QdrantClient, name: str) -> sqlite3.Connection | None:
    """The SQLite connection of a local-mode collection (None on a server, or when this
    qdrant-client keeps its local collections differently)."""
    collections = getattr(getattr(client, "_client", None), "collections", None)
    collection = collections.get(name) if isinstance(collections, dict) else None
    connection = getattr(getattr(collection, "storage", None), "storage", None)
    return connection if isinstance(connection, sqlite3.Connection) else None


def _named(vectors: Any, using: str) -> list[float] | None:
    if isinstance(vectors, dict):
        value = vectors.get(using)
        return [float(x) for x in value] if isinstance(value, list) else None
    return None


def _filter(match: Mapping[str, Any] | None) -> Any:
    if not match:
        return None
    from qdrant_client import models

    return models.Filter(
        must=[
            models.FieldCondition(key=key, match=models.MatchValue(value=value))
            for key, value in match.items()
        ]
    )
