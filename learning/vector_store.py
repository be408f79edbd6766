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

Local mode keeps every vector of a collection in memory and answers a query by comparing
it with all of them. The client loads stored vectors as 64-bit floats and compares them
with a 64-bit copy of the query; those of a collection made in this process are 32-bit,
and a 64-bit query makes numpy convert the whole matrix on every query. The vectors come
from a 32-bit model, so each opened local collection's vectors are kept as 32-bit floats
(half the memory, nothing lost; the memory freed goes back to the system) and queried
with a 32-bit query (:class:`_LocalSearch`): the scan ``query_points`` runs in local mode,
with numpy's BLAS on one thread, sorting only the best scores. Both rely on
qdrant-client's local-mode internals (``QdrantLocal.collections``,
``LocalCollection.vectors``, ``search``, ``payload``, ``ids_inv`` and its mask of
filtered and deleted points): they are checked before use, and where they differ the
collection's ``search`` or the public ``query_points`` is used and the vectors are left
as they are.

Local mode allows one client per folder per process (and one process per folder): every
:class:`VectorStore` of a folder shares one client and one lock, and a folder held by
another process raises :class:`IndexUnavailable` saying so. Calls are synchronous;
async callers run them in a thread.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import ctypes
import functools
import inspect
import logging
import sqlite3
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
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
logger = logging.getLogger(__name__)
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
        search = _LocalSearch.of(self._client, name)
        if search is not None and search.compact():
            _release_free_memory()

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
        items = list({pid: (pid, v, p) for pid, v, p in items}.values())  # the last wins
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
        names = vector_names(kind)
        with self._lock, _translated(self.location):
            self._ensure(name, DIMENSION, vectors=names, keyword_fields=_KEYWORD_FIELDS)
            replaced = self._client.retrieve(
                name, ids=[pid for pid, _, _ in items], with_payload=False, with_vectors=True
            )
            self._client.upsert(name, points=points, wait=True)
            self._unflushed.add(name)
            for using in names:
                added = [vectors[using] for _, vectors, _ in items]
                removed = [v for r in replaced if (v := _named(r.vector, using)) is not None]
                self._move_sum(kind, using, added, removed)

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
            search = _LocalSearch.of(self._client, name)
            if search is not None:
                return search(vector, using=using, limit=limit, query_filter=_filter(match))
            points = self._client.query_points(
                name,
                query=list(vector),
                using=using,
                limit=limit,
                query_filter=_filter(match),
                with_payload=True,
            ).points
        return _scored(points)

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

    # ------------------------------------------------------------------ centroids

    def vectors(self, kind: str, ids: Sequence[str], using: str = TEXT) -> dict[str, list[float]]:
        """The ``using`` vectors of the documents ``ids`` of ``kind`` that are stored."""
        if not ids:
            return {}
        name = self.collection(kind)
        with self._lock, _translated(self.location):
            if not self._exists(name):
                return {}
            records = self._client.retrieve(
                name, ids=list(ids), with_payload=False, with_vectors=[using]
            )
        return {str(r.id): v for r in records if (v := _named(r.vector, using)) is not None}

    def centroid(self, kind: str, using: str = TEXT) -> tuple[list[float], int] | None:
        """The mean of the ``using`` vectors of ``kind``'s documents, and how many there
        are; None when there are none. The first call sums the stored vectors (one pass
        over them) into the state collection, and from then on upserts keep that sum. It
        is made again whenever it counts other documents than are stored: a crash between
        storing points and their sum, two processes indexing into one Qdrant server."""
        name = self.collection(kind)
        with self._lock, _translated(self.location):
            if not self._exists(name):
                return None
            found = self._read_sum(kind, using)
            stored = int(self._client.count(name, exact=True).count)
            if found is None or found[1] != stored:
                logger.info(
                    "summing the %s vectors of %d %s documents (the kept sum counts %s)",
                    using,
                    stored,
                    kind,
                    "none" if found is None else found[1],
                )
                found = self._sum_of_stored(kind, using)
                self._write_sum(kind, using, *found)
        total, count = found
        if count <= 0:
            return None
        return [value / count for value in total], count

    def _sum_id(self, kind: str, using: str) -> str:
        return point_id("sum", f"{kind}/{using}")

    def _read_sum(self, kind: str, using: str) -> tuple[list[float], int] | None:
        name = self.collection("state")
        self._ensure(name, 1)
        records = self._client.retrieve(name, ids=[self._sum_id(kind, using)])
        if not records:
            return None
        payload = records[0].payload or {}
        return [float(x) for x in payload.get("sum") or []], int(payload.get("count") or 0)

    def _write_sum(self, kind: str, using: str, total: Sequence[float], count: int) -> None:
        from qdrant_client import models

        self._ensure(self.collection("state"), 1)
        point = models.PointStruct(
            id=self._sum_id(kind, using),
            vector=[1.0],
            payload={"kind": kind, "vector": using, "sum": list(total), "count": count},
        )
        self._client.upsert(self.collection("state"), points=[point], wait=True)

    def _sum_of_stored(self, kind: str, using: str) -> tuple[list[float], int]:
        import numpy as np

        total = np.zeros(DIMENSION)
        count = 0
        offset: Any = None
        while True:
            records, offset = self._client.scroll(
                self.collection(kind), limit=1024, offset=offset, with_vectors=[using]
            )
            found = [v for record in records if (v := _named(record.vector, using)) is not None]
            if found:
                total += np.asarray(found).sum(axis=0)
                count += len(found)
            if offset is None:
                return total.tolist(), count

    def _move_sum(
        self,
        kind: str,
        using: str,
        added: Sequence[Sequence[float]],
        removed: Sequence[Sequence[float]],
    ) -> None:
        """Add ``added`` to the kept sum of ``kind``'s ``using`` vectors and take
        ``removed`` (the vectors they replaced) out; a sum nobody asked for
        (:meth:`centroid`) is not kept."""
        import numpy as np

        found = self._read_sum(kind, using)
        if found is None:
            return
        total = np.asarray(found[0])
        if added:
            total = total + np.asarray(added).sum(axis=0)
        if removed:
            total = total - np.asarray(removed).sum(axis=0)
        self._write_sum(kind, using, total.tolist(), found[1] + len(added) - len(removed))

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


def _local_collection(client: QdrantClient, name: str) -> Any:
    """The local-mode collection object of ``name`` (None on a server, on a closed
    client, or when this qdrant-client keeps its local collections differently)."""
    local = getattr(client, "_client", None)
    collections = getattr(local, "collections", None)
    if not isinstance(collections, dict) or getattr(local, "closed", True) is not False:
        return None
    return collections.get(name)


def _local_file(client: QdrantClient, name: str) -> sqlite3.Connection | None:
    """The SQLite connection of a local-mode collection (None on a server, or when this
    qdrant-client keeps its local collections differently)."""
    collection = _local_collection(client, name)
    connection = getattr(getattr(collection, "storage", None), "storage", None)
    return connection if isinstance(connection, sqlite3.Connection) else None


_SEARCH_PARAMETERS = ("query_vector", "query_filter", "limit", "with_payload")


class _LocalSearch:
    """A local-mode collection's search, with a query of its vectors' type.

    ``query_points`` turns the query into 64-bit floats before it hands it to
    ``LocalCollection.search``; against 32-bit vectors numpy then converts the whole
    matrix on every query. Here the query has the matrix's own type, and a dot-product
    vector is scanned directly (:meth:`_top`): the collection's scores and mask (filter,
    deleted points) and payload copies, but only the ``limit`` best are sorted, where the
    collection's search sorts every score. Other vectors go to the collection's search."""

    def __init__(self, search: Any, vectors: dict[str, Any], collection: Any = None) -> None:
        self.search = search
        self.vectors = vectors
        self.collection = collection  # set where the top-k scan below can read it

    @classmethod
    def of(cls, client: QdrantClient, name: str) -> _LocalSearch | None:
        """The search of ``name`` where this qdrant-client's local mode has the expected
        shape, else None (the caller then uses the public API)."""
        collection = _local_collection(client, name)
        if collection is None:
            return None
        if not _searchable(type(collection)):
            return None
        vectors = getattr(collection, "vectors", None)
        if not isinstance(vectors, dict) or not all(map(_is_matrix, vectors.values())):
            return None
        scannable = all(
            callable(getattr(collection, attribute, None))
            for attribute in ("_payload_and_non_deleted_mask", "get_vector_params")
        ) and isinstance(getattr(collection, "ids_inv", None), list)
        scannable = scannable and isinstance(getattr(collection, "payload", None), list)
        return cls(collection.search, vectors, collection if scannable else None)

    def compact(self) -> bool:
        """Keep the dense vectors as 32-bit floats (local mode loads them as 64-bit);
        whether any were converted."""
        import numpy as np

        converted = False
        for name, matrix in list(self.vectors.items()):
            if matrix.dtype == np.float64:
                self.vectors[name] = matrix.astype(np.float32)
                converted = True
        return converted

    def __call__(
        self, vector: Sequence[float], *, using: str, limit: int, query_filter: Any
    ) -> list[Point]:
        import numpy as np

        matrix = self.vectors.get(using)  # an unknown name: the search says so
        query = np.asarray(vector, dtype=np.float32 if matrix is None else matrix.dtype)
        with _BLAS_LIMIT, _one_blas_thread()():
            if matrix is not None and self._dot(using):
                return self._top(matrix, query, using, limit, query_filter)
            found: list[Any] = self.search(
                query_vector=(using, query),
                query_filter=query_filter,
                limit=limit,
                with_payload=True,
            )
        return _scored(found)

    def _dot(self, using: str) -> bool:
        """Whether the top-k scan can answer for ``using``: a dot-product vector of a
        collection whose internals it reads."""
        from qdrant_client import models

        if self.collection is None:
            return False
        try:
            params = self.collection.get_vector_params(using)
        except (KeyError, ValueError):
            return False
        return getattr(params, "distance", None) == models.Distance.DOT

    def _top(
        self, matrix: Any, query: Any, using: str, limit: int, query_filter: Any
    ) -> list[Point]:
        """The collection's search without its full sort: the same scores and mask
        (filter, deleted points), then only the ``limit`` best are ordered. Sorting every
        score took a quarter of a query over 100k points."""
        import numpy as np

        collection = self.collection
        payloads = collection.payload
        scores = matrix[: len(payloads)] @ query
        mask = collection._payload_and_non_deleted_mask(query_filter, vector_name=using)
        candidates = np.flatnonzero(mask) if not mask.all() else None
        if candidates is not None:
            scores = scores[candidates]
        count = min(limit, len(scores))
        if count <= 0:
            return []
        best = np.argpartition(scores, len(scores) - count)[len(scores) - count :]
        best = best[np.argsort(-scores[best], kind="stable")]
        found = []
        for index in best:
            row = int(index if candidates is None else candidates[index])
            payload = copy.deepcopy(payloads[row])  # the stored one must stay as it is
            found.append(Point(str(collection.ids_inv[row]), payload, score=float(scores[index])))
        return found


# The BLAS thread limit is the process's, not a thread's: searches that overlap (in two
# index folders) would restore it out of order, so the limited section is taken in turn.
_BLAS_LIMIT = threading.Lock()


@functools.cache
def _one_blas_thread() -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """A context in which numpy's BLAS runs on one thread (none where ``threadpoolctl`` is
    missing). A query's matrix-vector product is bound by memory bandwidth, so a second
    thread gains little on an idle machine; on a busy one the call waits for a thread
    that is not running (measured: 100k vectors, about a third slower with two)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext
    import numpy  # noqa: F401  (the controller finds the BLAS libraries loaded so far)

    return functools.partial(ThreadpoolController().limit, limits=1, user_api="blas")


_searchable_types: dict[type, bool] = {}


def _searchable(collection_type: type) -> bool:
    """Whether this local collection class has the ``search`` :class:`_LocalSearch` calls."""
    known = _searchable_types.get(collection_type)
    if known is None:
        search = getattr(collection_type, "search", None)
        try:
            parameters = inspect.signature(search).parameters if callable(search) else {}
        except (TypeError, ValueError):
            parameters = {}
        known = all(name in parameters for name in _SEARCH_PARAMETERS)
        _searchable_types[collection_type] = known
    return known


def _release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc only). Local mode builds each
    collection's vectors from lists of Python floats when it opens a folder, and those
    freed lists otherwise stay resident (about 1 GB with 100k failures)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _scored(points: Sequence[Any]) -> list[Point]:
    """qdrant-client's scored points as :class:`Point` s."""
    return [
        Point(str(point.id), dict(point.payload or {}), score=float(point.score))
        for point in points
    ]


def _is_matrix(value: Any) -> bool:
    import numpy as np

    return isinstance(value, np.ndarray) and value.ndim == 2


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
