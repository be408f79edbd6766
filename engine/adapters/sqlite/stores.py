"""SQLite event store and catalog store: the embedded default backend.

One database file holds the event log, the execution listing and the playbook catalog.
``SqliteDatabase.open(path)`` opens it (WAL journal, ``synchronous=NORMAL``, foreign keys
on, a busy timeout), brings the schema up to date with the versioned migrations below
(recorded in ``schema_version``; applying them again is a no-op) and exposes the two
stores as ``.events`` and ``.catalog``, which share its one connection.

The async methods do their SQLite work synchronously on the calling thread. A local
append commits in tens of microseconds, less than a hop to a worker thread would cost,
so the event loop is held only briefly; the exception is a writer waiting for another
process's write lock, which waits up to the busy timeout.

Several processes may open the same file (a CLI approving while a runner runs). WAL lets
readers proceed while one process writes; every write is one ``BEGIN IMMEDIATE``
transaction, which takes the write lock before the next ``seq`` is read, so two writers
never give the same ``seq`` to one execution and a batch is stored whole or not at all.
SQLite errors are translated into ``StoreError`` at this edge.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.adapters.memory.stores import (
    LIFECYCLE_EVENT_TYPES,
    catalog_not_found,
    decode_payload,
    encode_payload,
    execution_not_found,
    requested_summary,
    status_change,
    utc_now,
)
from engine.core.events import Event
from engine.errors import StoreError
from engine.ports import CatalogEntry, ExecutionSummary

DEFAULT_BUSY_TIMEOUT = 10.0  # seconds a writer waits for another connection's lock

# Ordered, append-only: never edit a released migration, add a new one.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE events (
                id           INTEGER PRIMARY KEY AUTOINCREMENT,
                execution_id TEXT    NOT NULL,
                seq          INTEGER NOT NULL,
                event_id     TEXT    NOT NULL,
                event_type   TEXT    NOT NULL,
                timestamp    TEXT    NOT NULL,
                entity_type  TEXT,
                entity_id    TEXT,
                parent_id    TEXT,
                step_run_id  TEXT,
                iteration    INTEGER,
                attempt      INTEGER,
                status       TEXT,
                duration_ms  INTEGER,
                payload      TEXT    NOT NULL
            )
            """,
            "CREATE UNIQUE INDEX events_execution_seq ON events (execution_id, seq)",
            "CREATE UNIQUE INDEX events_execution_event_id ON events (execution_id, event_id)",
            "CREATE INDEX events_execution_type ON events (execution_id, event_type)",
            "CREATE INDEX events_execution_entity ON events (execution_id, entity_type, entity_id)",
            "CREATE INDEX events_type_timestamp ON events (event_type, timestamp)",
            """
            CREATE TABLE executions (
                id                  INTEGER PRIMARY KEY AUTOINCREMENT,
                execution_id        TEXT    NOT NULL UNIQUE,
                playbook_path       TEXT    NOT NULL,
                playbook_version    INTEGER,
                status              TEXT    NOT NULL,
                started_at          TEXT    NOT NULL,
                finished_at         TEXT,
                parent_execution_id TEXT,
                error               TEXT
            )
            """,
            "CREATE INDEX executions_started ON executions (started_at, id)",
            "CREATE INDEX executions_status_started ON executions (status, started_at, id)",
            """
            CREATE TABLE catalog (
                path          TEXT    NOT NULL,
                version       INTEGER NOT NULL CHECK (version >= 1),
                name          TEXT    NOT NULL,
                content       TEXT    NOT NULL,
                registered_at TEXT    NOT NULL,
                description   TEXT,
                source        TEXT,
                PRIMARY KEY (path, version)
            )
            """,
        ),
    ),
)

_EVENT_COLUMNS = (
    "id, execution_id, seq, event_id, event_type, timestamp, entity_type, entity_id,"
    " parent_id, step_run_id, iteration, attempt, status, duration_ms, payload"
)
_INSERT_EVENT = (
    "INSERT INTO events (execution_id, seq, event_id, event_type, timestamp, entity_type,"
    " entity_id, parent_id, step_run_id, iteration, attempt, status, duration_ms, payload)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_MAX_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE execution_id = ?"
_READ = f"SELECT {_EVENT_COLUMNS} FROM events WHERE execution_id = ? AND seq > ? ORDER BY seq"
_READ_ALL = f"SELECT {_EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?"
_INSERT_EXECUTION = (
    "INSERT INTO executions (execution_id, playbook_path, playbook_version, status,"
    " started_at, parent_execution_id) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (execution_id) DO NOTHING"
)
_SET_STATUS = "UPDATE executions SET status = ? WHERE execution_id = ?"
_SET_FINISHED = (
    "UPDATE executions SET status = ?, finished_at = ?, error = ? WHERE execution_id = ?"
)
_EXECUTION_COLUMNS = (
    "execution_id, playbook_path, playbook_version, status, started_at, finished_at,"
    " parent_execution_id, error"
)
_CATALOG_COLUMNS = "path, version, name, content, registered_at, description, source"
_CATALOG_LATEST = (
    f"SELECT {_CATALOG_COLUMNS} FROM catalog WHERE path = ? ORDER BY version DESC LIMIT 1"
)
_IN_CHUNK = 500  # bound parameters per IN (...) lookup


class SqliteDatabase:
    """One SQLite file and its connection, shared by ``.events`` and ``.catalog``."""

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> None:
        """Open ``path`` (created if missing, its directory must exist) and migrate it.

        Raises ``StoreError`` when the file cannot be opened or migrated.
        """
        self.path = str(path)
        self._lock = threading.RLock()
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise StoreError(
                f"cannot open the SQLite store {self.path}: {e}; "
                "check that the directory exists and is writable"
            ) from e
        try:
            with self._translated("configure"):
                self._configure(self._conn, busy_timeout)
                self._migrate(self._conn)
        except BaseException:
            self._conn.close()
            self._conn = None
            raise
        self.events = SqliteEventStore(self)
        self.catalog = SqliteCatalogStore(self)

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> SqliteDatabase:
        """Open ``path``, creating its parent directories first."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return cls(path, busy_timeout=busy_timeout)

    @property
    def schema_version(self) -> int:
        """The highest migration applied to the file."""
        with self.reading() as conn:
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the connection; both stores stop working. Closing twice is harmless."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads outside a write transaction."""
        with self._lock, self._translated("read"):
            yield self._connection()

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on exit, rolled back on error."""
        with self._lock, self._translated("write"):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(
                f"the SQLite store {self.path} is closed; open it again with "
                "SqliteDatabase.open(path)"
            )
        return self._conn

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            hint = (
                "another process held the write lock longer than the busy timeout; retry"
                if isinstance(e, sqlite3.OperationalError) and "locked" in str(e)
                else "check that the file is a noetl-agent database and is writable"
            )
            raise StoreError(f"SQLite store {self.path}: {action} failed: {e}; {hint}") from e

    @staticmethod
    def _configure(conn: sqlite3.Connection, busy_timeout: float) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        # Switching a new file to WAL can answer "locked" at once (without the busy handler)
        # while another process creates the same file: try again for a while.
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        known = MIGRATIONS[-1][0]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version"
                " (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            current = int(row[0])
            if current > known:
                raise StoreError(
                    f"the SQLite store {self.path} has schema version {current}, newer than "
                    f"this program knows ({known}); upgrade noetl-agent to open it"
                )
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, utc_now()),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _row_to_event(row: Sequence[Any]) -> Event:
    return Event(
        event_id=row[3],
        event_type=row[4],
        execution_id=row[1],
        timestamp=row[5],
        entity_type=row[6],
        entity_id=row[7],
        parent_id=row[8],
        step_run_id=row[9],
        iteration=row[10],
        attempt=row[11],
        status=row[12],
        duration_ms=row[13],
        payload=decode_payload(row[14]),
        seq=row[2],
    )


def _row_to_summary(row: Sequence[Any]) -> ExecutionSummary:
    return ExecutionSummary(
        execution_id=row[0],
        playbook_path=row[1],
        playbook_version=row[2],
        status=row[3],
        started_at=row[4],
        finished_at=row[5],
        parent_execution_id=row[6],
        error=row[7],
    )


def _row_to_entry(row: Sequence[Any]) -> CatalogEntry:
    return CatalogEntry(
        path=row[0],
        version=row[1],
        name=row[2],
        content=row[3],
        registered_at=row[4],
        description=row[5],
        source=row[6],
    )


class SqliteEventStore:
    """``EventStore`` in a SQLite file; get one from ``SqliteDatabase.events``."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    @property
    def path(self) -> str:
        """The SQLite file the events are in."""
        return self._db.path

    async def append(self, events: Sequence[Event]) -> list[Event]:
        """Store ``events`` in order in one transaction; see ``EventStore.append``.

        Raises ``StoreError`` (storing nothing) when a payload is not JSON or SQLite fails.
        """
        if not events:
            return []
        payloads = [encode_payload(event) for event in events]
        with self._db.writing() as conn:
            return self._append(conn, events, payloads)

    def _append(
        self, conn: sqlite3.Connection, events: Sequence[Event], payloads: list[str]
    ) -> list[Event]:
        wanted: dict[str, list[str]] = {}
        for event in events:
            wanted.setdefault(event.execution_id, []).append(event.event_id)
        stored: dict[tuple[str, str], Event] = {}
        next_seq: dict[str, int] = {}
        for execution_id, event_ids in wanted.items():
            for event in _stored_events(conn, execution_id, event_ids):
                stored[(execution_id, event.event_id)] = event
            next_seq[execution_id] = conn.execute(_MAX_SEQ, (execution_id,)).fetchone()[0] + 1

        result: list[Event] = []
        rows: list[tuple[Any, ...]] = []
        lifecycle: list[Event] = []
        for event, payload in zip(events, payloads, strict=True):
            key = (event.execution_id, event.event_id)
            existing = stored.get(key)
            if existing is not None:
                result.append(existing)
                continue
            seq = next_seq[event.execution_id]
            next_seq[event.execution_id] = seq + 1
            new = event.with_seq(seq)
            stored[key] = new
            result.append(new)
            rows.append(
                (
                    event.execution_id,
                    seq,
                    event.event_id,
                    event.event_type,
                    event.timestamp,
                    event.entity_type,
                    event.entity_id,
                    event.parent_id,
                    event.step_run_id,
                    event.iteration,
                    event.attempt,
                    event.status,
                    event.duration_ms,
                    payload,
                )
            )
            if event.event_type in LIFECYCLE_EVENT_TYPES:
                lifecycle.append(new)
        if rows:
            conn.executemany(_INSERT_EVENT, rows)
        for event in lifecycle:
            _project(conn, event)
        return result

    async def read(self, execution_id: str, after_seq: int = 0) -> list[Event]:
        """The execution's events with ``seq > after_seq`` in seq order; [] when unknown."""
        with self._db.reading() as conn:
            return [_row_to_event(row) for row in conn.execute(_READ, (execution_id, after_seq))]

    async def read_all(self, after_global: int = 0, limit: int = 1000) -> list[tuple[int, Event]]:
        """``(position, event)`` pairs with ``position > after_global``, oldest first."""
        if limit <= 0:
            return []
        with self._db.reading() as conn:
            rows = conn.execute(_READ_ALL, (after_global, limit)).fetchall()
        return [(row[0], _row_to_event(row)) for row in rows]

    async def list_executions(
        self, *, status: str | None = None, limit: int = 50
    ) -> list[ExecutionSummary]:
        """Executions newest first (by ``started_at``, then by order of request)."""
        if limit <= 0:
            return []
        where, params = ("", ()) if status is None else (" WHERE status = ?", (status,))
        sql = (
            f"SELECT {_EXECUTION_COLUMNS} FROM executions{where}"
            " ORDER BY started_at DESC, id DESC LIMIT ?"
        )
        with self._db.reading() as conn:
            rows = conn.execute(sql, (*params, limit)).fetchall()
        return [_row_to_summary(row) for row in rows]

    async def get_execution(self, execution_id: str) -> ExecutionSummary:
        """The execution's summary; raises ``NotFound`` for an unknown id."""
        sql = f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE execution_id = ?"
        with self._db.reading() as conn:
            row = conn.execute(sql, (execution_id,)).fetchone()
        if row is None:
            raise execution_not_found(execution_id)
        return _row_to_summary(row)

    async def close(self) -> None:
        """Close the shared database (the catalog store too)."""
        self._db.close()


def _stored_events(
    conn: sqlite3.Connection, execution_id: str, event_ids: list[str]
) -> Iterator[Event]:
    unique = list(dict.fromkeys(event_ids))
    for start in range(0, len(unique), _IN_CHUNK):
        chunk = unique[start : start + _IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE execution_id = ? AND event_id IN ({marks})"
        )
        for row in conn.execute(sql, (execution_id, *chunk)):
            yield _row_to_event(row)


def _project(conn: sqlite3.Connection, event: Event) -> None:
    """Apply a lifecycle event to the ``executions`` table (inside the append transaction)."""
    summary = requested_summary(event)
    if summary is not None:
        conn.execute(
            _INSERT_EXECUTION,
            (
                summary.execution_id,
                summary.playbook_path,
                summary.playbook_version,
                summary.status,
                summary.started_at,
                summary.parent_execution_id,
            ),
        )
        return
    change = status_change(event)
    if change is None:
        return
    if change.finished:
        conn.execute(
            _SET_FINISHED, (change.status, change.finished_at, change.error, event.execution_id)
        )
    else:
        conn.execute(_SET_STATUS, (change.status, event.execution_id))


class SqliteCatalogStore:
    """``CatalogStore`` in a SQLite file; get one from ``SqliteDatabase.catalog``."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def register(
        self,
        path: str,
        name: str,
        content: str,
        *,
        description: str | None = None,
        source: str | None = None,
    ) -> CatalogEntry:
        """Store the next version of ``path``; return the latest as is if ``content`` equals it."""
        with self._db.writing() as conn:
            row = conn.execute(_CATALOG_LATEST, (path,)).fetchone()
            if row is not None and row[3] == content:
                return _row_to_entry(row)
            entry = CatalogEntry(
                path=path,
                version=1 if row is None else row[1] + 1,
                name=name,
                content=content,
                registered_at=utc_now(),
                description=description,
                source=source,
            )
            conn.execute(
                f"INSERT INTO catalog ({_CATALOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.path,
                    entry.version,
                    entry.name,
                    entry.content,
                    entry.registered_at,
                    entry.description,
                    entry.source,
                ),
            )
        return entry

    async def get(self, path: str, version: int | None = None) -> CatalogEntry:
        """The latest or the given version; raises ``NotFound`` when either is missing."""
        with self._db.reading() as conn:
            if version is None:
                row = conn.execute(_CATALOG_LATEST, (path,)).fetchone()
            else:
                row = conn.execute(
                    f"SELECT {_CATALOG_COLUMNS} FROM catalog WHERE path = ? AND version = ?",
                    (path, version),
                ).fetchone()
                if row is None:
                    latest = conn.execute(
                        "SELECT MAX(version) FROM catalog WHERE path = ?", (path,)
                    ).fetchone()[0]
                    raise catalog_not_found(path, version, latest)
        if row is None:
            raise catalog_not_found(path)
        return _row_to_entry(row)

    async def versions(self, path: str) -> builtins.list[CatalogEntry]:
        """Every version of ``path``, oldest first; raises ``NotFound`` for an unknown path."""
        with self._db.reading() as conn:
            rows = conn.execute(
                f"SELECT {_CATALOG_COLUMNS} FROM catalog WHERE path = ? ORDER BY version",
                (path,),
            ).fetchall()
        if not rows:
            raise catalog_not_found(path)
        return [_row_to_entry(row) for row in rows]

    async def close(self) -> None:
        """Close the shared database (the event store too)."""
        self._db.close()

    async def list(self) -> builtins.list[CatalogEntry]:
        """The latest version of every path, sorted by path."""
        sql = (
            f"SELECT {_CATALOG_COLUMNS} FROM catalog AS c"
            " WHERE version = (SELECT MAX(version) FROM catalog WHERE path = c.path)"
            " ORDER BY path"
        )
        with self._db.reading() as conn:
            rows = conn.execute(sql).fetchall()
        return [_row_to_entry(row) for row in rows]
