"""The PostgreSQL event store's ways of appending a batch of worker events: one statement
for a small batch, COPY for a large one, the careful way when an event was stored before
or another writer got there first. Each keeps ``seq`` gap-free, stores a batch all or
none, and writes a payload decoded from a request as the text it came in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from engine.adapters.postgres import PostgresDatabase
from engine.adapters.postgres.stores import COPY_FROM, EVENT_COPY_COLUMNS
from engine.core.events import Event, JsonObject
from engine.errors import StoreError
from tests.conformance.conftest import fresh_postgres, require_postgres

SIZES = [1, COPY_FROM - 1, COPY_FROM, 3 * COPY_FROM]  # statement, statement, COPY, COPY


@pytest.fixture
async def db() -> AsyncIterator[PostgresDatabase]:
    async with fresh_postgres(await require_postgres(), max_size=8) as fresh:
        yield fresh


def _events(execution_id: str, first: int, count: int, **fields: object) -> list[Event]:
    return [
        Event(
            event_id=f"{execution_id}:{n}",
            event_type="tool.processed",
            execution_id=execution_id,
            timestamp="2026-12-01T00:00:00.000Z",
            **fields,  # type: ignore[arg-type]
        )
        for n in range(first, first + count)
    ]


@pytest.mark.parametrize("size", SIZES)
async def test_batches_are_numbered_in_order_and_repeats_stored_once(
    db: PostgresDatabase, size: int
) -> None:
    first = await db.events.append(_events("x", 0, size))
    assert [e.seq for e in first] == list(range(1, size + 1))
    # Half stored before, half new, and a repeat inside the batch.
    mixed = _events("x", size // 2, size) + _events("x", size // 2, 1)
    second = await db.events.append(mixed)
    assert [e.seq for e in second[: size - size // 2]] == [e.seq for e in first[size // 2 :]]
    assert [e.seq for e in second[size - size // 2 : size]] == list(
        range(size + 1, size + size // 2 + 1)
    )
    assert second[-1] == second[0]
    again = await db.events.append(_events("x", 0, size))
    assert again == first
    stored = await db.events.read("x")
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    assert len(stored) == size + size // 2


@pytest.mark.parametrize("size", SIZES)
async def test_a_batch_of_several_executions_numbers_each_after_its_own(
    db: PostgresDatabase, size: int
) -> None:
    await db.events.append(_events("a", 0, 2))
    pairs = zip(_events("a", 2, size), _events("b", 0, size), strict=True)
    batch = [e for pair in pairs for e in pair]
    stored = await db.events.append(batch)
    assert [e.seq for e in stored if e.execution_id == "a"] == list(range(3, size + 3))
    assert [e.seq for e in stored if e.execution_id == "b"] == list(range(1, size + 1))
    positions = [position for position, _ in await db.events.read_all(0, 10_000)]
    assert positions == sorted(positions)  # ids follow append order


async def test_concurrent_writers_of_one_execution_never_share_or_skip_a_seq(
    db: PostgresDatabase,
) -> None:
    async def writer(w: int) -> list[Event]:
        stored: list[Event] = []
        for k, size in enumerate([1, COPY_FROM, 3, COPY_FROM + 5, 2] * 2):
            stored += await db.events.append(_events("shared", 1000 * w + 100 * k, size))
        return stored

    results = await asyncio.gather(*(writer(w) for w in range(6)))
    seqs = sorted(e.seq or 0 for stored in results for e in stored)
    assert seqs == list(range(1, len(seqs) + 1))
    log = await db.events.read("shared")
    assert [e.seq for e in log] == seqs


@pytest.mark.parametrize("size", SIZES)
async def test_a_value_postgres_cannot_store_fails_the_whole_batch(
    db: PostgresDatabase, size: int
) -> None:
    cases = [
        (_events("bad", 0, 1, attempt=2**70), "integers must fit in 64 bits"),
        (_events("bad", 0, 1, payload={"text": "a\x00b"}), "cannot store NUL characters"),
        (
            _events("bad", 0, 1, payload=JsonObject({"text": "a\x00b"}, '{"text": "a\\u0000b"}')),
            "cannot store NUL characters",
        ),
        (_events("bad", 0, 1, payload={"v": float("nan")}), "not JSON"),
    ]
    for bad, message in cases:
        with pytest.raises(StoreError, match=message):
            await db.events.append(_events("bad", 1, size) + bad)
    assert await db.events.read("bad") == []
    fine = await db.events.append(_events("bad", 1, size))  # the store still works
    assert [e.seq for e in fine] == list(range(1, size + 1))


@pytest.mark.parametrize("size", SIZES)
async def test_a_kept_payload_is_stored_as_its_text_and_a_changed_one_as_it_is_now(
    db: PostgresDatabase, size: int
) -> None:
    kept = JsonObject({"a": [1, 2.5], "b": "é"}, '{ "b" : "\\u00e9", "a": [1, 2.5] }')
    changed = JsonObject({"a": 1}, '{"a": 1}')
    changed["a"] = 2  # the kept text is stale now, and dropped
    events = _events("p", 0, size, payload=kept) + _events("p", size, 1, payload=changed)
    await db.events.append(events)
    stored = await db.events.read("p")
    assert [e.payload for e in stored] == [{"a": [1, 2.5], "b": "é"}] * size + [{"a": 2}]


async def test_the_event_table_has_the_columns_appends_write_in_their_order(
    db: PostgresDatabase,
) -> None:
    # Appends send whole rows of the table's type: a column added to the table without
    # adding it to EVENT_COPY_COLUMNS (in the same place) would break every append.
    async with db.connection("read the event table's columns") as conn:
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = $1 AND table_name = 'event' ORDER BY ordinal_position",
            db.schema,
        )
    assert [row["column_name"] for row in columns] == ["id", *EVENT_COPY_COLUMNS]
