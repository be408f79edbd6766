"""PostgreSQL event store and catalog store: the backend of the distributed mode.

``await PostgresDatabase.open(dsn, schema="noetl")`` opens an asyncpg pool and exposes
the two stores as ``.events`` and ``.catalog``; ``await db.migrate()`` creates or updates
the tables (see ``migrations``), which a server does once at start.

Appending follows the SQLite adapter's rules (the lifecycle projection, payload encoding
and ``NotFound`` messages are the shared ones of ``engine.adapters.memory.stores``) with
what a server shared by many writers needs:

- A batch without lifecycle events is sent as one statement, one round trip in its own
  transaction: it takes the batch's locks (below), reads each execution's highest
  ``seq`` once and inserts the events numbered after it. It probes nothing else: the
  unique indexes on ``(execution_id, event_id)`` and ``(execution_id, seq)`` refuse it,
  storing nothing, when an event of the batch is stored already or another writer
  numbered events of the same execution since the statement began; the batch then takes
  the careful way below. So ``seq`` stays gap-free and unique.
- A larger batch (``COPY_FROM`` events and more, what workers report in bulk) streams in
  with binary ``COPY`` instead, in one transaction that holds the locks from ``BEGIN``,
  reads the highest ``seq`` values and copies the numbered events: four round trips, and
  PostgreSQL inserts the rows in bulk. An event stored before makes the unique index
  refuse the copy, and the batch takes the careful way.
- The careful way, and every batch with a lifecycle event: one transaction, ``BEGIN``
  together with a transaction-level advisory lock per execution of the batch (taken in
  a fixed order, so two writers never deadlock), a statement that skips the events
  already stored and numbers the others, then each new lifecycle event updates the
  ``execution`` row, ``COMMIT``. Holding the lock, no other writer can number events of
  those executions, and the statement runs under read committed, so it sees every event
  committed before. The one-statement way takes the same locks before it inserts, so it
  never slips into such a transaction.
- A statement gets the events as one array of the event table's row type (binary, one
  element per event): cheaper to encode and to decode than one array per column.
- Registering a catalog version likewise holds a lock on its path, so two servers
  registering one path at once get versions n and n + 1, or the same version when the
  content is the same.
- ``id`` (the global position of ``read_all``) follows append order within a batch and
  across batches of one writer. Ids are drawn before commit, so two writers committing
  out of order can make a reader that pages by position pass over an event committed
  late; such a reader should re-read recent positions.

Payloads go to the server as JSON text (``jsonb``; a ``JsonObject`` as the text it
carries) and come back as text; ``jsonb`` keeps values, not their spelling (keys are
reordered, and a float that JSON writes with an exponent, ``1e+16`` and up, comes back
as the integer it spells). Event timestamps are kept exactly as given, and also as
``timestamptz`` when they parse as ISO 8601.

Connections go back to the pool without the usual session reset: the stores keep no
session state (``SET LOCAL`` and transaction-level locks only); an open transaction is
still rolled back. They are opened with ``plan_cache_mode = force_custom_plan``: a
prepared statement is planned for its arguments and the tables as they are each time it
runs, never from a generic plan cached while the log was small (such a plan made appends
slower with every batch as the log grew). Errors of asyncpg and of the network become
``StoreError`` here.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg

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
from engine.adapters.postgres.migrations import advisory_key, apply_migrations, quote_schema
from engine.core.events import Event, JsonObject
from engine.errors import StoreError
from engine.ports import CatalogEntry, ExecutionSummary

DEFAULT_SCHEMA = "noetl"
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds to open one connection
DEFAULT_COMMAND_TIMEOUT = 30.0  # seconds for one statement, including waiting for a lock
_ACQUIRE_TIMEOUT = 30.0  # seconds to wait for a free pooled connection
_CLOSE_TIMEOUT = 10.0  # seconds for in-flight work before the pool is terminated
# What an append sent alone fails with when an event of it was stored before, or another
# writer of the same execution committed events after the statement's snapshot was taken.
_RACES = (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError)


class _StoredBefore(Exception):
    """A COPY met an event stored before (and stored nothing)."""


_EVENT_COLUMNS = (
    "id, execution_id, seq, event_id, event_type, timestamp_text, entity_type, entity_id,"
    " parent_id, step_run_id, iteration, attempt, status, duration_ms, payload::text AS payload"
)
COPY_FROM = 64  # new events from which a batch streams in with COPY
# The columns of the rows ``_rows`` makes (``id`` comes from its sequence).
EVENT_COPY_COLUMNS = (
    "execution_id",
    "seq",
    "event_id",
    "event_type",
    "timestamp",
    "timestamp_text",
    "entity_type",
    "entity_id",
    "parent_id",
    "step_run_id",
    "iteration",
    "attempt",
    "status",
    "duration_ms",
    "payload",
)
_INSERT_COLUMNS = ", ".join(f'"{c}"' for c in EVENT_COPY_COLUMNS)
# The highest ``seq`` of each execution of $1, in order (0 for one without events).
_HEADS = (
    "SELECT array_agg(COALESCE((SELECT max(e.seq) FROM {s}.event AS e"
    " WHERE e.execution_id = x.id), 0) ORDER BY x.n)"
    " FROM unnest($1::text[]) WITH ORDINALITY AS x (id, n)"
)
# The two statements below get $1 the batch (first occurrence of each (execution_id,
# event_id) only) as an array of the event table's row type, one element per event
# (``id`` NULL, ``seq`` the event's rank among the batch's events of its execution: 1,
# 2, ...); $2 the advisory lock keys of its executions in ascending order; $3 (the first
# only) its executions in order of first appearance. The locks are taken before anything
# is read or inserted (an uncorrelated subquery is evaluated before the first row of its
# query), so a statement sent alone never inserts while a locked transaction of the same
# execution is open. The log is only probed through scalar subqueries on unique keys,
# never joined: joined, a cached generic plan may hash the whole log, and appends slow
# down as it grows.
#
# ``_APPEND_NEW``: every event is new (else a unique index refuses the statement). Each
# execution's highest ``seq`` is read once; an event's ``seq`` is that plus its rank.
# Returns those highest ``seq`` values, in the order of $3.
_APPEND_NEW = f"""
WITH locked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(k) FROM unnest($2::bigint[]) AS k
),
heads AS MATERIALIZED (
    SELECT array_agg(
        COALESCE((SELECT max(e.seq) FROM {{s}}.event AS e WHERE e.execution_id = x.id), 0)
        ORDER BY x.n
    ) AS head
    FROM unnest($3::text[]) WITH ORDINALITY AS x (id, n)
    WHERE (SELECT count(*) FROM locked) >= 0
),
inserted AS (
    INSERT INTO {{s}}.event ({_INSERT_COLUMNS})
    SELECT b.execution_id, (SELECT head FROM heads)[array_position($3::text[], b.execution_id)]
            + b.seq,
        b.event_id, b.event_type, b."timestamp", b.timestamp_text, b.entity_type, b.entity_id,
        b.parent_id, b.step_run_id, b.iteration, b.attempt, b.status, b.duration_ms, b.payload
    FROM unnest($1::{{s}}.event[]) AS b
)
SELECT head FROM heads
"""
# ``_APPEND``: the careful way, for batches that may hold events stored before. One row
# comes back per element of $1, in order: ``stored_id`` (the global id) of an event
# stored before, else the ``seq`` given now.
_APPEND = f"""
WITH locked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(k) FROM unnest($2::bigint[]) AS k
),
batch AS MATERIALIZED (
    SELECT b.*,
        (SELECT e.id FROM {{s}}.event AS e
         WHERE e.execution_id = b.execution_id AND e.event_id = b.event_id) AS stored_id
    FROM unnest($1::{{s}}.event[]) WITH ORDINALITY AS b
),
numbered AS (
    SELECT batch.*,
        CASE WHEN stored_id IS NULL THEN
            count(*) FILTER (WHERE stored_id IS NULL)
                OVER (PARTITION BY execution_id ORDER BY ordinality)
            + COALESCE(
                (SELECT max(e.seq) FROM {{s}}.event AS e
                 WHERE e.execution_id = batch.execution_id),
                0
            )
        END AS new_seq
    FROM batch
),
inserted AS (
    INSERT INTO {{s}}.event ({_INSERT_COLUMNS})
    SELECT execution_id, new_seq, event_id, event_type, "timestamp", timestamp_text,
        entity_type, entity_id, parent_id, step_run_id, iteration, attempt, status,
        duration_ms, payload
    FROM numbered
    WHERE stored_id IS NULL AND (SELECT count(*) FROM locked) >= 0
    ORDER BY ordinality
)
SELECT stored_id, new_seq AS seq FROM numbered ORDER BY ordinality
"""
_READ_STORED = f"SELECT {_EVENT_COLUMNS} FROM {{s}}.event WHERE id = ANY($1::bigint[])"
_READ = (
    f"SELECT {_EVENT_COLUMNS} FROM {{s}}.event WHERE execution_id = $1 AND seq > $2 ORDER BY seq"
)
_READ_ALL = f"SELECT {_EVENT_COLUMNS} FROM {{s}}.event WHERE id > $1 ORDER BY id LIMIT $2"
_INSERT_EXECUTION = (
    "INSERT INTO {s}.execution (execution_id, playbook_path, playbook_version, status,"
    " started_at, parent_execution_id) VALUES ($1, $2, $3, $4, $5, $6)"
    " ON CONFLICT (execution_id) DO NOTHING"
)
_SET_STATUS = "UPDATE {s}.execution SET status = $1 WHERE execution_id = $2"
_SET_FINISHED = (
    "UPDATE {s}.execution SET status = $1, finished_at = $2, error = $3 WHERE execution_id = $4"
)
_EXECUTION_COLUMNS = (
    "execution_id, playbook_path, playbook_version, status, started_at, finished_at,"
    " parent_execution_id, error"
)
_LIST_EXECUTIONS = (
    f"SELECT {_EXECUTION_COLUMNS} FROM {{s}}.execution ORDER BY started_at DESC, id DESC LIMIT $1"
)
_LIST_EXECUTIONS_WITH_STATUS = (
    f"SELECT {_EXECUTION_COLUMNS} FROM {{s}}.execution WHERE status = $1"
    " ORDER BY started_at DESC, id DESC LIMIT $2"
)
_GET_EXECUTION = f"SELECT {_EXECUTION_COLUMNS} FROM {{s}}.execution WHERE execution_id = $1"
_CATALOG_COLUMNS = "path, version, name, content, registered_at, description, source"
_CATALOG_LATEST = (
    f"SELECT {_CATALOG_COLUMNS} FROM {{s}}.catalog WHERE path = $1 ORDER BY version DESC LIMIT 1"
)
_CATALOG_VERSION = f"SELECT {_CATALOG_COLUMNS} FROM {{s}}.catalog WHERE path = $1 AND version = $2"
_CATALOG_MAX_VERSION = "SELECT max(version) FROM {s}.catalog WHERE path = $1"
_CATALOG_INSERT = (
    f"INSERT INTO {{s}}.catalog ({_CATALOG_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
_CATALOG_VERSIONS = f"SELECT {_CATALOG_COLUMNS} FROM {{s}}.catalog WHERE path = $1 ORDER BY version"
_CATALOG_LIST = (
    f"SELECT DISTINCT ON (path) {_CATALOG_COLUMNS} FROM {{s}}.catalog ORDER BY path, version DESC"
)

# SQLSTATEs with a specific hint; classes 08 (connection) and 57 (operator intervention)
# are handled by prefix.
_MISSING_SCHEMA_SQLSTATES = frozenset({"42P01", "3F000"})  # undefined table, schema
_UNSTORABLE_TEXT_SQLSTATES = frozenset({"22P05", "22021"})  # NUL, invalid byte sequence


async def _keep_session(conn: Any) -> None:
    """Pool reset hook: nothing to reset, the stores keep no session state."""


class PostgresDatabase:
    """An asyncpg pool on one schema, shared by ``.events`` and ``.catalog``.

    ``pool`` is open to other adapters of the distributed mode; its connections come back
    without a session reset, so work done through it must not leave session state (use
    ``SET LOCAL`` and transaction-level locks).
    """

    def __init__(self, pool: Any, *, schema: str = DEFAULT_SCHEMA, where: str = "") -> None:
        """Wrap an open asyncpg ``pool``; ``open`` is the usual way to get one."""
        self._quoted = quote_schema(schema)
        self.pool = pool
        self.schema = schema
        self._where = where or "the configured server"
        self._closed = False
        self.events = PostgresEventStore(self)
        self.catalog = PostgresCatalogStore(self)

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> PostgresDatabase:
        """Open a pool of ``min_size`` to ``max_size`` connections to ``dsn``.

        Does not create or update tables: call ``migrate`` for that. Raises
        ``StoreError`` (never showing a password) when the server cannot be reached.
        """
        quote_schema(schema)
        where = _redact(dsn)
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=command_timeout,
                timeout=connect_timeout,
                reset=_keep_session,
                server_settings={"plan_cache_mode": "force_custom_plan"},
            )
        except ValueError as e:  # a malformed DSN or option (asyncpg's are ValueErrors too)
            raise StoreError(
                f"the PostgreSQL DSN {where} cannot be used: {_describe(e)}; "
                "use postgresql://user[:password]@host[:port]/database"
            ) from e
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as e:
            raise StoreError(
                f"cannot connect to the PostgreSQL store at {where}: {_describe(e)}; check "
                "that the server is running and that the DSN's user and database exist"
            ) from e
        return cls(pool, schema=schema, where=where)

    @property
    def closed(self) -> bool:
        return self._closed

    async def migrate(self) -> int:
        """Create or update the schema's tables; return the schema version now in place.

        Safe to call from several processes at once and when nothing is left to do.
        Raises ``StoreError`` when the database fails or its schema is newer than this
        program.
        """
        async with self.connection("migrate") as conn:
            return await apply_migrations(conn, self.schema)

    async def schema_version(self) -> int:
        """The highest migration applied to the schema, 0 when it has none."""
        async with self.connection("read the schema version") as conn:
            exists = await conn.fetchval(
                "SELECT to_regclass($1) IS NOT NULL", f"{self._quoted}.schema_version"
            )
            if not exists:
                return 0
            return int(
                await conn.fetchval(
                    f"SELECT COALESCE(max(version), 0) FROM {self._quoted}.schema_version"
                )
            )

    async def close(self) -> None:
        """Close the pool; both stores stop working. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self.pool.close(), _CLOSE_TIMEOUT)
        except TimeoutError:
            self.pool.terminate()

    def sql(self, template: str) -> str:
        """``template`` with ``{s}`` replaced by the quoted schema name."""
        return template.format(s=self._quoted)

    @asynccontextmanager
    async def connection(self, action: str) -> AsyncIterator[Any]:
        """A pooled connection, for work outside an explicit transaction."""
        if self._closed:
            raise StoreError(
                f"the PostgreSQL store (schema {self.schema!r}) is closed; open it again "
                "with PostgresDatabase.open(dsn)"
            )
        with self._translated(action):
            async with self.pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn:
                yield conn

    @asynccontextmanager
    async def transaction(
        self, action: str, lock_keys: Iterable[int] = (), *, flush: bool = True
    ) -> AsyncIterator[Any]:
        """One read-committed transaction holding the advisory locks ``lock_keys``.

        ``BEGIN`` and the locks go to the server in one round trip; the locks are taken
        in ascending order and released at commit or rollback. With ``flush=False`` the
        commit returns before its WAL reaches the disk (``synchronous_commit`` off for this
        transaction): visible to everyone at once, durable within PostgreSQL's
        ``wal_writer_delay`` or at the next flushed commit of any session, lost only if
        PostgreSQL itself crashes before that. Only for rows the caller can rebuild.
        """
        locks = "".join(f" SELECT pg_advisory_xact_lock({key});" for key in sorted(set(lock_keys)))
        relaxed = "" if flush else " SET LOCAL synchronous_commit TO off;"
        async with self.connection(action) as conn:
            try:
                await conn.execute(f"BEGIN ISOLATION LEVEL READ COMMITTED;{relaxed}{locks}")
                yield conn
            except BaseException:
                # A broken connection cannot roll back; the pool then discards it.
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    @contextlib.contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        try:
            yield
        except asyncpg.PostgresError as e:
            raise StoreError(
                f"PostgreSQL store (schema {self.schema!r}): {action} failed: {_describe(e)}; "
                f"{self._hint(e.sqlstate or '')}"
            ) from e
        except (asyncpg.InterfaceError, OSError, TimeoutError, OverflowError) as e:
            if isinstance(e, ValueError | OverflowError):  # asyncpg could not encode a value
                hint = "a value does not fit its column; integers must fit in 64 bits"
            elif isinstance(e, TimeoutError):
                hint = (
                    f"PostgreSQL at {self._where} did not answer within the command timeout; "
                    "check that it is reachable and not overloaded, then retry"
                )
            else:
                hint = f"check that PostgreSQL at {self._where} is reachable, then retry"
            raise StoreError(
                f"PostgreSQL store (schema {self.schema!r}): {action} failed: "
                f"{_describe(e)}; {hint}"
            ) from e

    def _hint(self, sqlstate: str) -> str:
        if sqlstate in _MISSING_SCHEMA_SQLSTATES:
            return (
                f"the schema {self.schema!r} is not set up; run PostgresDatabase.migrate() "
                "(the server does at start)"
            )
        if sqlstate in _UNSTORABLE_TEXT_SQLSTATES:
            return "PostgreSQL cannot store NUL characters (\\u0000); remove them and retry"
        if sqlstate[:2] == "22":
            return "a value does not fit its column; integers must fit in 64 bits"
        if sqlstate == "57014":
            return "the statement took longer than the command timeout; retry, or raise it"
        if sqlstate[:2] in {"08", "57"}:
            return f"check that PostgreSQL at {self._where} is reachable, then retry"
        if sqlstate[:2] == "40":
            return "the transaction conflicted with another one; retry"
        return "see the PostgreSQL server log for details"


class PostgresEventStore:
    """``EventStore`` in PostgreSQL; get one from ``PostgresDatabase.events``."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._append_sql = db.sql(_APPEND)
        self._append_new_sql = db.sql(_APPEND_NEW)
        self._heads_sql = db.sql(_HEADS)
        self._read_stored_sql = db.sql(_READ_STORED)
        self._read_sql = db.sql(_READ)
        self._read_all_sql = db.sql(_READ_ALL)
        self._insert_execution_sql = db.sql(_INSERT_EXECUTION)
        self._set_status_sql = db.sql(_SET_STATUS)
        self._set_finished_sql = db.sql(_SET_FINISHED)
        self._list_sql = db.sql(_LIST_EXECUTIONS)
        self._list_status_sql = db.sql(_LIST_EXECUTIONS_WITH_STATUS)
        self._get_sql = db.sql(_GET_EXECUTION)

    async def append(self, events: Sequence[Event]) -> list[Event]:
        """Store ``events`` in order, all or none; see ``EventStore.append``.

        Raises ``StoreError`` (storing nothing) when a payload is not JSON or the
        database fails.
        """
        if not events:
            return []
        # The first occurrence of each (execution_id, event_id) is sent; a repeat in the
        # batch gets whatever the first resolves to.
        unique: dict[tuple[str, str], Event] = {}
        for event in events:
            unique.setdefault((event.execution_id, event.event_id), event)
        batch = list(unique.values())
        executions = list(dict.fromkeys(event.execution_id for event in batch))
        lock_keys = sorted(advisory_key(self._db.schema, "event", e) for e in executions)
        rows = _rows(batch)
        if not any(event.event_type in LIFECYCLE_EVENT_TYPES for event in batch):
            if len(batch) >= COPY_FROM:
                stored = await self._copy_new(batch, rows, executions, lock_keys)
            else:
                stored = await self._insert_new(batch, rows, executions, lock_keys)
            if stored is not None:
                if len(stored) == len(events):
                    return stored
                found = {(e.execution_id, e.event_id): e for e in stored}
                return [found[(event.execution_id, event.event_id)] for event in events]
        # Holding the locks from ``BEGIN`` on, the statement sees every event of these
        # executions: no other writer inserts one (it takes the locks first), so this
        # cannot lose a race.
        records = [(None, *row) for row in rows]
        resolved: dict[tuple[str, str], Event] = {}
        async with self._db.transaction("append", lock_keys) as conn:
            fetched = await conn.fetch(self._append_sql, records, lock_keys)
            for new in await self._resolve(conn, batch, fetched, resolved):
                if new.event_type in LIFECYCLE_EVENT_TYPES:
                    await self._project(conn, new)
        return [resolved[(event.execution_id, event.event_id)] for event in events]

    async def _insert_new(
        self,
        batch: list[Event],
        rows: list[tuple[Any, ...]],
        executions: list[str],
        lock_keys: list[int],
    ) -> list[Event] | None:
        """Store ``batch`` with ``_APPEND_NEW``; None (storing nothing) when an event was
        stored before or another writer numbered events of these executions meanwhile."""
        async with self._db.connection("append") as conn:
            try:
                heads = await conn.fetchval(
                    self._append_new_sql, [(None, *row) for row in rows], lock_keys, executions
                )
            except _RACES:
                return None
        head = dict(zip(executions, heads, strict=True))
        return [
            event.with_seq(head[event.execution_id] + row[1])
            for event, row in zip(batch, rows, strict=True)
        ]

    async def _copy_new(
        self,
        batch: list[Event],
        rows: list[tuple[Any, ...]],
        executions: list[str],
        lock_keys: list[int],
    ) -> list[Event] | None:
        """Store ``batch`` with ``COPY`` holding the locks; None (storing nothing) when an
        event was stored before."""
        try:
            async with self._db.transaction("append", lock_keys) as conn:
                heads = await conn.fetchval(self._heads_sql, executions)
                head = dict(zip(executions, heads, strict=True))
                numbered = [(row[0], head[row[0]] + row[1], *row[2:]) for row in rows]
                try:
                    await conn.copy_records_to_table(
                        "event",
                        records=numbered,
                        columns=EVENT_COPY_COLUMNS,
                        schema_name=self._db.schema,
                    )
                except asyncpg.UniqueViolationError:
                    raise _StoredBefore from None
        except _StoredBefore:
            return None
        return [event.with_seq(row[1]) for event, row in zip(batch, numbered, strict=True)]

    async def _resolve(
        self,
        conn: Any,
        batch: Sequence[Event],
        rows: Sequence[Any],
        resolved: dict[tuple[str, str], Event],
    ) -> list[Event]:
        """Fill ``resolved`` from the rows of ``_APPEND`` (reading the events stored
        before); return the events stored now, in order."""
        fresh: list[Event] = []
        stored_ids: list[int] = []
        for event, row in zip(batch, rows, strict=True):
            if row["stored_id"] is not None:
                stored_ids.append(row["stored_id"])
                continue
            resolved[(event.execution_id, event.event_id)] = new = event.with_seq(row["seq"])
            fresh.append(new)
        if stored_ids:
            for row in await conn.fetch(self._read_stored_sql, stored_ids):
                resolved[(row["execution_id"], row["event_id"])] = _row_to_event(row)
        return fresh

    async def _project(self, conn: Any, event: Event) -> None:
        """Apply a lifecycle event to the ``execution`` table (inside the append)."""
        summary = requested_summary(event)
        if summary is not None:
            await conn.execute(
                self._insert_execution_sql,
                summary.execution_id,
                summary.playbook_path,
                summary.playbook_version,
                summary.status,
                summary.started_at,
                summary.parent_execution_id,
            )
            return
        change = status_change(event)
        if change is None:
            return
        if change.finished:
            await conn.execute(
                self._set_finished_sql,
                change.status,
                change.finished_at,
                change.error,
                event.execution_id,
            )
        else:
            await conn.execute(self._set_status_sql, change.status, event.execution_id)

    async def read(self, execution_id: str, after_seq: int = 0) -> list[Event]:
        """The execution's events with ``seq > after_seq`` in seq order; [] when unknown."""
        async with self._db.connection("read") as conn:
            rows = await conn.fetch(self._read_sql, execution_id, after_seq)
        return [_row_to_event(row) for row in rows]

    async def read_all(self, after_global: int = 0, limit: int = 1000) -> list[tuple[int, Event]]:
        """``(position, event)`` pairs with ``position > after_global``, oldest first."""
        if limit <= 0:
            return []
        async with self._db.connection("read all") as conn:
            rows = await conn.fetch(self._read_all_sql, after_global, limit)
        return [(row["id"], _row_to_event(row)) for row in rows]

    async def list_executions(
        self, *, status: str | None = None, limit: int = 50
    ) -> list[ExecutionSummary]:
        """Executions newest first (by ``started_at``, then by order of request)."""
        if limit <= 0:
            return []
        async with self._db.connection("list executions") as conn:
            if status is None:
                rows = await conn.fetch(self._list_sql, limit)
            else:
                rows = await conn.fetch(self._list_status_sql, status, limit)
        return [_row_to_summary(row) for row in rows]

    async def get_execution(self, execution_id: str) -> ExecutionSummary:
        """The execution's summary; raises ``NotFound`` for an unknown id."""
        async with self._db.connection("get execution") as conn:
            row = await conn.fetchrow(self._get_sql, execution_id)
        if row is None:
            raise execution_not_found(execution_id)
        return _row_to_summary(row)

    async def close(self) -> None:
        """Close the shared database (the catalog store too)."""
        await self._db.close()


class PostgresCatalogStore:
    """``CatalogStore`` in PostgreSQL; get one from ``PostgresDatabase.catalog``."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._latest_sql = db.sql(_CATALOG_LATEST)
        self._version_sql = db.sql(_CATALOG_VERSION)
        self._max_version_sql = db.sql(_CATALOG_MAX_VERSION)
        self._insert_sql = db.sql(_CATALOG_INSERT)
        self._versions_sql = db.sql(_CATALOG_VERSIONS)
        self._list_sql = db.sql(_CATALOG_LIST)

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
        lock = advisory_key(self._db.schema, "catalog", path)
        async with self._db.transaction("register", [lock]) as conn:
            row = await conn.fetchrow(self._latest_sql, path)
            if row is not None and row["content"] == content:
                return _row_to_entry(row)
            entry = CatalogEntry(
                path=path,
                version=1 if row is None else row["version"] + 1,
                name=name,
                content=content,
                registered_at=utc_now(),
                description=description,
                source=source,
            )
            await conn.execute(
                self._insert_sql,
                entry.path,
                entry.version,
                entry.name,
                entry.content,
                datetime.fromisoformat(entry.registered_at),
                entry.description,
                entry.source,
            )
        return entry

    async def get(self, path: str, version: int | None = None) -> CatalogEntry:
        """The latest or the given version; raises ``NotFound`` when either is missing."""
        async with self._db.connection("get playbook") as conn:
            if version is None:
                row = await conn.fetchrow(self._latest_sql, path)
            else:
                row = await conn.fetchrow(self._version_sql, path, version)
                if row is None:
                    latest = await conn.fetchval(self._max_version_sql, path)
                    raise catalog_not_found(path, version, latest)
        if row is None:
            raise catalog_not_found(path)
        return _row_to_entry(row)

    async def versions(self, path: str) -> builtins.list[CatalogEntry]:
        """Every version of ``path``, oldest first; raises ``NotFound`` for an unknown path."""
        async with self._db.connection("list versions") as conn:
            rows = await conn.fetch(self._versions_sql, path)
        if not rows:
            raise catalog_not_found(path)
        return [_row_to_entry(row) for row in rows]

    async def close(self) -> None:
        """Close the shared database (the event store too)."""
        await self._db.close()

    async def list(self) -> builtins.list[CatalogEntry]:
        """The latest version of every path, sorted by path."""
        async with self._db.connection("list playbooks") as conn:
            rows = await conn.fetch(self._list_sql)
        return [_row_to_entry(row) for row in rows]


def _rows(batch: Sequence[Event]) -> list[tuple[Any, ...]]:
    """The events as rows of ``EVENT_COPY_COLUMNS``, ``seq`` holding the event's rank among the
    batch's events of its execution (1, 2, ...)."""
    ranks: dict[str, int] = {}
    rows: list[tuple[Any, ...]] = []
    for event in batch:
        execution_id = event.execution_id
        ranks[execution_id] = rank = ranks.get(execution_id, 0) + 1
        rows.append(
            (
                execution_id,
                rank,
                event.event_id,
                event.event_type,
                _parse_timestamp(event.timestamp),
                event.timestamp,
                event.entity_type,
                event.entity_id,
                event.parent_id,
                event.step_run_id,
                event.iteration,
                event.attempt,
                event.status,
                event.duration_ms,
                _payload_text(event),
            )
        )
    return rows


def _payload_text(event: Event) -> str:
    """The payload as JSON text (the text a ``JsonObject`` carries, when it still does)."""
    payload = event.payload
    if type(payload) is JsonObject and payload.json is not None:
        return payload.json
    if type(payload) is dict and not payload:
        return "{}"
    return encode_payload(event)


def _parse_timestamp(text: str) -> datetime | None:
    """``text`` as an aware datetime (UTC when it names no offset); None if not ISO 8601."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _format_timestamp(value: datetime) -> str:
    """The ``utc_now`` spelling of ``value``: RFC 3339 in UTC with milliseconds."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _row_to_event(row: Any) -> Event:
    return Event(
        event_id=row["event_id"],
        event_type=row["event_type"],
        execution_id=row["execution_id"],
        timestamp=row["timestamp_text"],
        entity_type=row["entity_type"],
        entity_id=row["entity_id"],
        parent_id=row["parent_id"],
        step_run_id=row["step_run_id"],
        iteration=row["iteration"],
        attempt=row["attempt"],
        status=row["status"],
        duration_ms=row["duration_ms"],
        payload=decode_payload(row["payload"]),
        seq=row["seq"],
    )


def _row_to_summary(row: Any) -> ExecutionSummary:
    return ExecutionSummary(
        execution_id=row["execution_id"],
        playbook_path=row["playbook_path"],
        playbook_version=row["playbook_version"],
        status=row["status"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        parent_execution_id=row["parent_execution_id"],
        error=row["error"],
    )


def _row_to_entry(row: Any) -> CatalogEntry:
    return CatalogEntry(
        path=row["path"],
        version=row["version"],
        name=row["name"],
        content=row["content"],
        registered_at=_format_timestamp(row["registered_at"]),
        description=row["description"],
        source=row["source"],
    )


def _redact(dsn: str) -> str:
    """``dsn`` with any password masked, for messages."""
    masked = re.sub(r"(://[^:/@?#]*):[^@/?#]*@", r"\1:***@", dsn)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", masked)


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
