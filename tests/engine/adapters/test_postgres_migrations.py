"""PostgreSQL backend: migrations, concurrency and what only PostgreSQL does.

The port's behaviour is covered by ``tests/conformance``; these tests run against the real
server too, each in a schema of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.adapters.postgres import PostgresDatabase
from engine.adapters.postgres.migrations import LATEST_VERSION, quote_schema
from engine.core.events import PLAYBOOK_EXECUTION_REQUESTED, STEP_STARTED, Event
from engine.errors import StoreError
from tests.conformance.conftest import fresh_postgres, require_postgres

TABLES = {"schema_version", "event", "execution", "catalog", "credential", "api_token", "command"}


def make(execution_id: str, name: str, payload: dict[str, Any] | None = None) -> Event:
    return Event(
        event_id=f"{execution_id}/{name}",
        event_type=STEP_STARTED,
        execution_id=execution_id,
        timestamp="2026-01-17T23:11:22.5Z",
        payload={"name": name} if payload is None else payload,
    )


@pytest.fixture
async def dsn() -> str:
    return await require_postgres()


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[PostgresDatabase]:
    async with fresh_postgres(dsn) as database:
        yield database


async def _fetch(db: PostgresDatabase, sql: str, *args: Any) -> list[Any]:
    async with db.pool.acquire() as conn:
        return list(await conn.fetch(sql, *args))


# --- migrations ---------------------------------------------------------------------------


async def test_migrate_creates_every_table_and_index(dsn: str) -> None:
    async with fresh_postgres(dsn, migrate=False) as db:
        assert await db.schema_version() == 0

        assert await db.migrate() == LATEST_VERSION

        assert await db.schema_version() == LATEST_VERSION
        tables = await _fetch(
            db,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
            db.schema,
        )
        assert {row["table_name"] for row in tables} == TABLES
        indexes = {
            row["indexname"]: row["indexdef"].replace(f"{db.schema}.", "")
            for row in await _fetch(
                db, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1", db.schema
            )
        }
        definitions = set(indexes.values())
        for expected in (
            "CREATE UNIQUE INDEX event_execution_seq ON event USING btree (execution_id, seq)",
            "CREATE UNIQUE INDEX event_execution_event_id ON event USING btree"
            " (execution_id, event_id)",
            "CREATE INDEX event_execution_type ON event USING btree (execution_id, event_type)",
            "CREATE INDEX event_execution_entity ON event USING btree"
            " (execution_id, entity_type, entity_id)",
            'CREATE INDEX event_type_timestamp ON event USING btree (event_type, "timestamp")',
            "CREATE UNIQUE INDEX catalog_pkey ON catalog USING btree (path, version)",
            "CREATE UNIQUE INDEX credential_pkey ON credential USING btree (name)",
            "CREATE UNIQUE INDEX api_token_token_hash_key ON api_token USING btree (token_hash)",
            "CREATE UNIQUE INDEX command_pkey ON command USING btree (command_id)",
            "CREATE INDEX command_status_claim ON command USING btree (status, claim_expires_at)",
            "CREATE INDEX command_execution ON command USING btree (execution_id)",
            "CREATE UNIQUE INDEX execution_execution_id_key ON execution USING btree"
            " (execution_id)",
        ):
            assert expected in definitions, (expected, sorted(definitions))


async def test_column_types_of_the_distributed_tables(db: PostgresDatabase) -> None:
    rows = await _fetch(
        db,
        "SELECT table_name, column_name, udt_name FROM information_schema.columns"
        " WHERE table_schema = $1",
        db.schema,
    )
    types = {(row["table_name"], row["column_name"]): row["udt_name"] for row in rows}

    assert types[("event", "id")] == "int8"
    assert types[("event", "timestamp")] == "timestamptz"
    assert types[("event", "payload")] == "jsonb"
    assert types[("catalog", "registered_at")] == "timestamptz"
    assert types[("credential", "ciphertext")] == "bytea"
    assert types[("api_token", "roles")] == "_text"
    assert types[("api_token", "revoked_at")] == "timestamptz"
    assert types[("command", "body")] == "jsonb"
    assert types[("command", "claim_expires_at")] == "timestamptz"
    assert {column for table, column in types if table == "command"} == {
        "command_id",
        "execution_id",
        "step_run_id",
        "iteration",
        "pool",
        "body",
        "status",
        "attempts",
        "claimed_by",
        "claim_expires_at",
        "created_at",
        "updated_at",
    }


async def test_migrating_again_is_a_no_op(db: PostgresDatabase) -> None:
    await db.events.append([make("e1", "a")])
    before = await _fetch(db, f"SELECT * FROM {quote_schema(db.schema)}.schema_version")

    assert await db.migrate() == LATEST_VERSION
    assert await db.migrate() == LATEST_VERSION

    after = await _fetch(db, f"SELECT * FROM {quote_schema(db.schema)}.schema_version")
    assert after == before
    assert [row["version"] for row in after] == [LATEST_VERSION]
    assert await db.events.read("e1") == [make("e1", "a").with_seq(1)]


async def test_concurrent_migrations_of_a_fresh_schema_all_succeed(dsn: str) -> None:
    async with fresh_postgres(dsn, migrate=False) as first:
        others = [await PostgresDatabase.open(dsn, schema=first.schema) for _ in range(3)]
        try:
            versions = await asyncio.gather(first.migrate(), *(db.migrate() for db in others))
        finally:
            for db in others:
                await db.close()

        assert versions == [LATEST_VERSION] * 4
        rows = await _fetch(
            first, f"SELECT version FROM {quote_schema(first.schema)}.schema_version"
        )
        assert [row["version"] for row in rows] == [LATEST_VERSION]


async def test_a_newer_schema_is_refused(db: PostgresDatabase) -> None:
    async with db.pool.acquire() as conn:
        await conn.execute(
            f"INSERT INTO {quote_schema(db.schema)}.schema_version (version, description)"
            " VALUES (999, 'later')"
        )

    with pytest.raises(StoreError, match=r"schema version 999.*upgrade"):
        await db.migrate()


async def test_stores_before_migrating_say_to_migrate(dsn: str) -> None:
    async with fresh_postgres(dsn, migrate=False) as db:
        with pytest.raises(StoreError, match=r"not set up; run PostgresDatabase\.migrate\(\)"):
            await db.events.read("e1")
        with pytest.raises(StoreError, match="migrate"):
            await db.catalog.list()


# --- concurrency --------------------------------------------------------------------------


async def test_concurrent_appends_to_one_execution_get_unique_gap_free_seqs(dsn: str) -> None:
    writers, batches, size = 4, 15, 4
    async with fresh_postgres(dsn) as one:
        two = await PostgresDatabase.open(dsn, schema=one.schema, max_size=4)
        try:

            async def write(db: PostgresDatabase, worker: int) -> list[Event]:
                stored: list[Event] = []
                for b in range(batches):
                    batch = [make("shared", f"w{worker}b{b}i{i}") for i in range(size)]
                    # the same event from every writer, and a second execution, in an
                    # order that differs between writers
                    batch.append(make("shared", f"common{b}"))
                    other = [make("other", f"w{worker}b{b}")]
                    stored += await db.events.append(other + batch if worker % 2 else batch + other)
                return stored

            results = await asyncio.gather(
                *(write(one if w % 2 else two, w) for w in range(writers))
            )
            events = await one.events.read("shared")
        finally:
            await two.close()

    expected = writers * batches * size + batches
    assert [e.seq for e in events] == list(range(1, expected + 1))
    assert len({e.event_id for e in events}) == expected
    by_id = {e.event_id: e for e in events}
    for stored in results:
        for event in stored:
            if event.execution_id == "shared":
                assert by_id[event.event_id] == event


async def test_concurrent_registrations_of_one_path_get_consecutive_versions(
    dsn: str,
) -> None:
    async with fresh_postgres(dsn) as one:
        two = await PostgresDatabase.open(dsn, schema=one.schema, max_size=4)
        try:
            catalogs = [one.catalog, two.catalog] * 3
            new = await asyncio.gather(
                *(
                    catalog.register("p", "p", f"v{n}", description=None, source=None)
                    for n, catalog in enumerate(catalogs)
                )
            )
            same = await asyncio.gather(
                *(
                    catalog.register("q", "q", "same", description=None, source=None)
                    for catalog in catalogs
                )
            )
        finally:
            await two.close()

        assert sorted(entry.version for entry in new) == [1, 2, 3, 4, 5, 6]
        assert [e.version for e in await one.catalog.versions("p")] == [1, 2, 3, 4, 5, 6]
        assert {entry.version for entry in same} == {1}


# --- what only PostgreSQL does ------------------------------------------------------------


async def test_timestamps_are_kept_as_text_and_as_timestamptz(db: PostgresDatabase) -> None:
    plain = make("e1", "a")
    opaque = Event(event_id="b", event_type=STEP_STARTED, execution_id="e1", timestamp="later")
    naive = Event(
        event_id="c", event_type=STEP_STARTED, execution_id="e1", timestamp="2026-01-02T03:04:05"
    )
    await db.events.append([plain, opaque, naive])

    rows = await _fetch(
        db,
        f'SELECT timestamp_text, "timestamp" FROM {quote_schema(db.schema)}.event ORDER BY id',
    )

    assert [(row["timestamp_text"], row["timestamp"]) for row in rows] == [
        ("2026-01-17T23:11:22.5Z", datetime(2026, 1, 17, 23, 11, 22, 500000, tzinfo=UTC)),
        ("later", None),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ]
    assert [e.timestamp for e in await db.events.read("e1")] == [
        "2026-01-17T23:11:22.5Z",
        "later",
        "2026-01-02T03:04:05",
    ]


async def test_nul_characters_raise_store_error_and_store_nothing(db: PostgresDatabase) -> None:
    request = Event(
        event_id="r",
        event_type=PLAYBOOK_EXECUTION_REQUESTED,
        execution_id="e1",
        timestamp="2026-01-01T00:00:00Z",
        payload={"playbook_path": "p"},
    )

    with pytest.raises(StoreError, match="NUL"):
        await db.events.append([request, make("e1", "a", payload={"text": "a\x00b"})])

    assert await db.events.read("e1") == []
    assert await db.events.list_executions() == []


async def test_global_positions_follow_the_batch_order(db: PostgresDatabase) -> None:
    batch = [make(f"x{n % 3}", f"e{n}") for n in range(20)]
    await db.events.append(batch)

    everything = await db.events.read_all()

    assert [e.event_id for _, e in everything] == [e.event_id for e in batch]


async def test_closed_database_raises_store_error(db: PostgresDatabase) -> None:
    await db.events.close()
    await db.catalog.close()

    with pytest.raises(StoreError, match="is closed"):
        await db.events.read("e1")
    with pytest.raises(StoreError, match="is closed"):
        await db.catalog.get("p")


async def test_unreachable_server_raises_store_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="cannot connect") as caught:
        await PostgresDatabase.open(
            "postgresql://someone:s3cret@127.0.0.1:1/nowhere", connect_timeout=2
        )

    assert "s3cret" not in str(caught.value)
    assert "someone:***@127.0.0.1:1" in str(caught.value)


@pytest.mark.parametrize("schema", ["Noetl", "no-etl", "1st", "", "x" * 64, 'a"; DROP'])
async def test_unusable_schema_names_are_refused(schema: str) -> None:
    with pytest.raises(StoreError, match="not a usable schema name"):
        await PostgresDatabase.open("postgresql://postgres@127.0.0.1:1/x", schema=schema)
