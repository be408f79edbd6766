"""Conformance suite of the ``EventStore`` port, run against every backend.

The last tests are SQLite-only: persistence across reopening, schema and pragmas, and
two connections (as two processes) appending to one execution.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.adapters.sqlite import SqliteDatabase
from engine.core.events import (
    PLAYBOOK_EXECUTION_REQUESTED,
    PLAYBOOK_PAUSED,
    PLAYBOOK_PROCESSED,
    PLAYBOOK_RESUMED,
    STEP_STARTED,
    TOOL_PROCESSED,
    Event,
)
from engine.errors import NotFound, StoreError
from engine.ports import EventStore


def make(
    execution_id: str,
    n: int,
    event_type: str = STEP_STARTED,
    *,
    timestamp: str | None = None,
    payload: dict[str, Any] | None = None,
    **fields: Any,
) -> Event:
    """Event number ``n`` of ``execution_id`` (its id is derived from both)."""
    return Event(
        event_id=f"{execution_id}/e{n}",
        event_type=event_type,
        execution_id=execution_id,
        timestamp=timestamp or f"2026-01-17T23:11:{n % 60:02d}Z",
        payload={"n": n} if payload is None else payload,
        **fields,
    )


def requested(execution_id: str, timestamp: str, **payload: Any) -> Event:
    body = {"playbook_path": "examples/hello", "playbook_version": 1, **payload}
    return make(execution_id, 0, PLAYBOOK_EXECUTION_REQUESTED, timestamp=timestamp, payload=body)


def seqs(events: list[Event]) -> list[int | None]:
    return [event.seq for event in events]


# --- append and read ---------------------------------------------------------------------


async def test_append_assigns_seq_from_one_per_execution(event_store: EventStore) -> None:
    batch = [make("a", 1), make("b", 1), make("a", 2), make("a", 3), make("b", 2)]

    stored = await event_store.append(batch)

    assert [(e.execution_id, e.seq) for e in stored] == [
        ("a", 1),
        ("b", 1),
        ("a", 2),
        ("a", 3),
        ("b", 2),
    ]
    assert [e.with_seq(0) for e in stored] == [e.with_seq(0) for e in batch]
    assert seqs(await event_store.read("a")) == [1, 2, 3]
    assert seqs(await event_store.read("b")) == [1, 2]


async def test_seq_continues_across_batches(event_store: EventStore) -> None:
    await event_store.append([make("a", 1), make("a", 2)])
    stored = await event_store.append([make("a", 3)])
    await event_store.append([make("a", 4), make("a", 5)])

    assert seqs(stored) == [3]
    assert seqs(await event_store.read("a")) == [1, 2, 3, 4, 5]


async def test_seq_given_by_the_caller_is_ignored(event_store: EventStore) -> None:
    stored = await event_store.append([make("a", 1, seq=42)])

    assert seqs(stored) == [1]


async def test_empty_batch_returns_empty_list(event_store: EventStore) -> None:
    assert await event_store.append([]) == []
    assert await event_store.read_all() == []


async def test_reappending_a_stored_event_returns_the_stored_copy(event_store: EventStore) -> None:
    first = make("a", 1, payload={"v": "original"})
    await event_store.append([first, make("a", 2)])
    resent = make("a", 1, payload={"v": "resent"})

    result = await event_store.append([resent, make("a", 3)])

    assert seqs(result) == [1, 3]
    assert result[0].payload == {"v": "original"}
    assert seqs(await event_store.read("a")) == [1, 2, 3]
    assert len(await event_store.read_all()) == 3


async def test_duplicates_inside_one_batch_are_stored_once(event_store: EventStore) -> None:
    result = await event_store.append([make("a", 1), make("a", 2), make("a", 1), make("a", 3)])

    assert seqs(result) == [1, 2, 1, 3]
    assert result[2] == result[0]
    assert [e.event_id for e in await event_store.read("a")] == ["a/e1", "a/e2", "a/e3"]


async def test_same_event_id_in_two_executions_is_two_events(event_store: EventStore) -> None:
    one = Event(event_id="x", event_type=STEP_STARTED, execution_id="a", timestamp="t")
    two = Event(event_id="x", event_type=STEP_STARTED, execution_id="b", timestamp="t")

    result = await event_store.append([one, two])

    assert seqs(result) == [1, 1]
    assert len(await event_store.read_all()) == 2


async def test_every_field_and_payload_round_trip_exactly(event_store: EventStore) -> None:
    payload: dict[str, Any] = {
        "inputs": {"city": "Zürich", "emoji": "🌧", "quote": 'say "hi"\n'},
        "output": {"temp_f": 51.25, "rain": False, "big": 2**62, "neg": -7, "none": None},
        "list": [1, "two", [3.5, {"four": []}], {}],
        "empty": "",
    }
    event = Event(
        event_id="01JH-tool",
        event_type=TOOL_PROCESSED,
        execution_id="exec-1",
        timestamp="2026-01-17T23:11:22.123456Z",
        entity_type="tool",
        entity_id="http.fetch_weather",
        parent_id="step:fetch:run:7",
        step_run_id="run-7",
        iteration=3,
        attempt=2,
        status="success",
        duration_ms=312,
        payload=payload,
    )

    await event_store.append([event])
    [read] = await event_store.read("exec-1")

    assert read == event.with_seq(1)
    assert read.to_dict() == event.with_seq(1).to_dict()
    assert Event.from_dict(read.to_dict()) == read


async def test_absent_optional_fields_stay_absent(event_store: EventStore) -> None:
    event = Event(event_id="e", event_type=STEP_STARTED, execution_id="a", timestamp="t")

    await event_store.append([event])

    assert await event_store.read("a") == [event.with_seq(1)]


async def test_mutating_a_returned_event_does_not_change_the_log(event_store: EventStore) -> None:
    await event_store.append([make("a", 1, payload={"items": [1]})])
    [read] = await event_store.read("a")
    read.payload["items"].append(2)

    assert (await event_store.read("a"))[0].payload == {"items": [1]}


@pytest.mark.parametrize(
    "payload",
    [
        {"when": object()},
        {"tags": {"a", "b"}},
        {"blob": b"bytes"},
        {"ratio": math.nan},
        {"ratio": math.inf},
    ],
    ids=["object", "set", "bytes", "nan", "inf"],
)
async def test_non_json_payload_raises_and_stores_nothing_of_the_batch(
    event_store: EventStore, payload: dict[str, Any]
) -> None:
    await event_store.append([make("a", 1)])
    batch = [
        requested("b", "2026-01-01T00:00:00Z"),
        make("a", 2),
        make("a", 3, payload=payload),
        make("a", 4),
    ]

    with pytest.raises(StoreError, match=r"a/e3.*not JSON"):
        await event_store.append(batch)

    assert seqs(await event_store.read("a")) == [1]
    assert await event_store.read("b") == []
    assert len(await event_store.read_all()) == 1
    with pytest.raises(NotFound):
        await event_store.get_execution("b")
    assert seqs(await event_store.append([make("a", 2)])) == [2]


async def test_payload_that_is_not_a_dict_raises(event_store: EventStore) -> None:
    bad = Event(
        event_id="e",
        event_type=STEP_STARTED,
        execution_id="a",
        timestamp="t",
        payload=[1, 2],  # type: ignore[arg-type]
    )

    with pytest.raises(StoreError, match="must be a dict"):
        await event_store.append([bad])


async def test_read_after_seq(event_store: EventStore) -> None:
    await event_store.append([make("a", n) for n in range(1, 6)])

    assert seqs(await event_store.read("a", after_seq=0)) == [1, 2, 3, 4, 5]
    assert seqs(await event_store.read("a", after_seq=3)) == [4, 5]
    assert await event_store.read("a", after_seq=5) == []
    assert await event_store.read("a", after_seq=99) == []


async def test_read_unknown_execution_is_empty(event_store: EventStore) -> None:
    await event_store.append([make("a", 1)])

    assert await event_store.read("nope") == []


async def test_read_all_follows_append_order_across_executions(event_store: EventStore) -> None:
    await event_store.append([make("a", 1), make("b", 1)])
    await event_store.append([make("a", 2)])
    await event_store.append([make("a", 1)])  # duplicate: no new position
    await event_store.append([make("c", 1), make("b", 2)])

    everything = await event_store.read_all()

    assert [e.event_id for _, e in everything] == ["a/e1", "b/e1", "a/e2", "c/e1", "b/e2"]
    positions = [position for position, _ in everything]
    assert positions == sorted(positions)
    assert len(set(positions)) == 5
    assert all(e.seq is not None for _, e in everything)


async def test_read_all_pages_with_after_global_and_limit(event_store: EventStore) -> None:
    await event_store.append([make(f"x{n % 3}", n) for n in range(1, 11)])

    pages: list[list[str]] = []
    cursor = 0
    while page := await event_store.read_all(after_global=cursor, limit=4):
        pages.append([e.event_id for _, e in page])
        cursor = page[-1][0]

    assert [len(page) for page in pages] == [4, 4, 2]
    assert [eid for page in pages for eid in page] == [f"x{n % 3}/e{n}" for n in range(1, 11)]
    assert await event_store.read_all(after_global=cursor) == []


# --- executions listing -------------------------------------------------------------------


async def test_requested_event_creates_a_running_execution(event_store: EventStore) -> None:
    await event_store.append(
        [
            requested(
                "e1",
                "2026-01-01T10:00:00Z",
                playbook_path="examples/weather",
                playbook_version=3,
                parent_execution_id="parent-1",
            ),
            make("e1", 1),
        ]
    )

    summary = await event_store.get_execution("e1")

    assert summary.execution_id == "e1"
    assert summary.playbook_path == "examples/weather"
    assert summary.playbook_version == 3
    assert summary.parent_execution_id == "parent-1"
    assert summary.status == "running"
    assert summary.started_at == "2026-01-01T10:00:00Z"
    assert summary.finished_at is None
    assert summary.error is None


async def test_requested_event_without_version_or_parent(event_store: EventStore) -> None:
    event = make(
        "e1",
        0,
        PLAYBOOK_EXECUTION_REQUESTED,
        timestamp="2026-01-01T10:00:00Z",
        payload={"playbook_path": "draft.yaml", "playbook_version": None},
    )
    await event_store.append([event])

    summary = await event_store.get_execution("e1")

    assert summary.playbook_version is None
    assert summary.parent_execution_id is None


@pytest.mark.parametrize(
    ("status", "payload", "expected", "error"),
    [
        ("success", {}, "completed", None),
        ("error", {"error": {"kind": "python", "message": "boom"}}, "failed", "boom"),
        ("error", {}, "failed", None),
        ("cancelled", {}, "cancelled", None),
        (None, {"status": "cancelled"}, "cancelled", None),
        ("error", {"status": "cancelled", "error": {"message": "stop"}}, "cancelled", "stop"),
    ],
    ids=["success", "error-message", "error-bare", "cancelled", "payload-cancelled", "both"],
)
async def test_processed_event_finishes_the_execution(
    event_store: EventStore,
    status: str | None,
    payload: dict[str, Any],
    expected: str,
    error: str | None,
) -> None:
    await event_store.append([requested("e1", "2026-01-01T10:00:00Z")])
    processed = make(
        "e1",
        9,
        PLAYBOOK_PROCESSED,
        timestamp="2026-01-01T10:05:00Z",
        status=status,
        payload=payload,
    )

    await event_store.append([processed])
    summary = await event_store.get_execution("e1")

    assert summary.status == expected
    assert summary.finished_at == "2026-01-01T10:05:00Z"
    assert summary.error == error
    assert summary.started_at == "2026-01-01T10:00:00Z"


async def test_pause_and_resume_move_the_status(event_store: EventStore) -> None:
    await event_store.append([requested("e1", "2026-01-01T10:00:00Z")])

    await event_store.append([make("e1", 1, PLAYBOOK_PAUSED, status="paused")])
    assert (await event_store.get_execution("e1")).status == "paused"

    await event_store.append([make("e1", 2, PLAYBOOK_RESUMED)])
    assert (await event_store.get_execution("e1")).status == "running"

    await event_store.append([make("e1", 3, PLAYBOOK_PROCESSED, status="success")])
    summary = await event_store.get_execution("e1")
    assert summary.status == "completed"
    assert summary.finished_at is not None


async def test_whole_lifecycle_in_one_batch(event_store: EventStore) -> None:
    await event_store.append(
        [
            requested("e1", "2026-01-01T10:00:00Z"),
            make("e1", 1),
            make("e1", 2, PLAYBOOK_PROCESSED, status="success"),
        ]
    )

    assert (await event_store.get_execution("e1")).status == "completed"


async def test_resending_lifecycle_events_changes_nothing(event_store: EventStore) -> None:
    request = requested("e1", "2026-01-01T10:00:00Z")
    pause = make("e1", 1, PLAYBOOK_PAUSED)
    await event_store.append([request, pause])
    await event_store.append([make("e1", 2, PLAYBOOK_RESUMED)])

    await event_store.append([request, pause])

    summary = await event_store.get_execution("e1")
    assert summary.status == "running"
    assert summary.started_at == "2026-01-01T10:00:00Z"


async def test_list_executions_newest_first(event_store: EventStore) -> None:
    await event_store.append([requested("old", "2026-01-01T09:00:00Z")])
    await event_store.append([requested("new", "2026-01-03T09:00:00Z")])
    await event_store.append([requested("mid", "2026-01-02T09:00:00Z")])
    await event_store.append([requested("tie-1", "2026-01-02T12:00:00Z")])
    await event_store.append([requested("tie-2", "2026-01-02T12:00:00Z")])

    listing = await event_store.list_executions()

    assert [s.execution_id for s in listing] == ["new", "tie-2", "tie-1", "mid", "old"]


async def test_list_executions_filters_by_status_and_limits(event_store: EventStore) -> None:
    for n in range(1, 7):
        await event_store.append([requested(f"e{n}", f"2026-01-0{n}T00:00:00Z")])
    for n in (2, 4, 6):
        await event_store.append([make(f"e{n}", 1, PLAYBOOK_PROCESSED, status="success")])
    await event_store.append([make("e5", 1, PLAYBOOK_PAUSED)])

    completed = await event_store.list_executions(status="completed")
    running = await event_store.list_executions(status="running")

    assert [s.execution_id for s in completed] == ["e6", "e4", "e2"]
    assert [s.execution_id for s in running] == ["e3", "e1"]
    assert [s.execution_id for s in await event_store.list_executions(limit=2)] == ["e6", "e5"]
    assert await event_store.list_executions(status="failed") == []


async def test_list_executions_when_empty(event_store: EventStore) -> None:
    await event_store.append([make("no-request", 1)])

    assert await event_store.list_executions() == []


async def test_get_unknown_execution_raises_not_found(event_store: EventStore) -> None:
    with pytest.raises(NotFound) as caught:
        await event_store.get_execution("x")

    assert str(caught.value) == (
        "execution 'x' not found; list executions with `noetl-agent executions list`"
    )


# --- volume -------------------------------------------------------------------------------


async def test_ten_thousand_events_in_batches_of_five(event_store: EventStore) -> None:
    executions = [f"exec-{k}" for k in range(7)]
    for k, execution_id in enumerate(executions):
        await event_store.append([requested(execution_id, f"2026-01-01T00:00:0{k}Z")])
    total = 10_000
    counts = dict.fromkeys(executions, 0)
    batch: list[Event] = []
    for n in range(1, total + 1):
        execution_id = executions[n % len(executions)]
        counts[execution_id] += 1
        batch.append(make(execution_id, n, TOOL_PROCESSED, status="success"))
        if len(batch) == 5:
            await event_store.append(batch)
            batch = []

    for execution_id in executions:
        events = await event_store.read(execution_id)
        assert seqs(events) == list(range(1, counts[execution_id] + 2))
    everything = await event_store.read_all(limit=total + 100)
    assert len(everything) == total + len(executions)
    assert [e.event_id for _, e in everything[len(executions) :]] == [
        f"{executions[n % len(executions)]}/e{n}" for n in range(1, total + 1)
    ]
    assert len(await event_store.list_executions(status="running")) == len(executions)


# --- SQLite only --------------------------------------------------------------------------


async def test_sqlite_store_survives_reopening(sqlite_path: Path) -> None:
    db = SqliteDatabase.open(sqlite_path)
    first = await db.events.append(
        [requested("e1", "2026-01-01T00:00:00Z"), make("e1", 1, payload={"k": [1, 2.5, None]})]
    )
    await db.events.close()

    again = SqliteDatabase.open(sqlite_path)
    try:
        assert await again.events.read("e1") == first
        assert (await again.events.get_execution("e1")).status == "running"
        more = await again.events.append([make("e1", 2), make("e1", 1)])
        assert seqs(more) == [3, 2]
        assert [p for p, _ in await again.events.read_all()] == [1, 2, 3]
    finally:
        again.close()


async def test_sqlite_closed_store_raises_store_error(sqlite_path: Path) -> None:
    db = SqliteDatabase.open(sqlite_path)
    await db.events.close()
    await db.events.close()

    with pytest.raises(StoreError, match="is closed"):
        await db.events.read("e1")
    with pytest.raises(StoreError, match="is closed"):
        await db.events.append([make("e1", 1)])


def test_sqlite_open_configures_and_migrates_idempotently(sqlite_path: Path) -> None:
    first = SqliteDatabase.open(sqlite_path)
    first.close()
    db = SqliteDatabase.open(sqlite_path)
    db.close()

    assert sqlite_path.exists()
    conn = sqlite3.connect(sqlite_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
        assert versions == [1]
        indexes = {
            row[0]: row[1]
            for row in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
            )
        }
    finally:
        conn.close()
    assert "UNIQUE INDEX events_execution_seq ON events (execution_id, seq)" in str(indexes)
    assert "UNIQUE INDEX events_execution_event_id ON events (execution_id, event_id)" in str(
        indexes
    )
    assert {
        "events_execution_type",
        "events_execution_entity",
        "events_type_timestamp",
    } <= indexes.keys()


def test_sqlite_connection_pragmas(sqlite_path: Path) -> None:
    db = SqliteDatabase.open(sqlite_path)
    try:
        with db.reading() as conn:
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
            assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
        assert db.schema_version == 1
    finally:
        db.close()


def test_sqlite_refuses_a_newer_schema(sqlite_path: Path) -> None:
    SqliteDatabase.open(sqlite_path).close()
    conn = sqlite3.connect(sqlite_path)
    with conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 'later')")
    conn.close()

    with pytest.raises(StoreError, match=r"schema version 999.*upgrade"):
        SqliteDatabase.open(sqlite_path)


async def test_sqlite_two_connections_interleaved_share_one_seq(sqlite_path: Path) -> None:
    one = SqliteDatabase.open(sqlite_path)
    two = SqliteDatabase.open(sqlite_path)
    try:
        for n in range(1, 41, 2):
            await one.events.append([make("shared", n)])
            await two.events.append([make("shared", n + 1), make("shared", n)])

        events = await one.events.read("shared")
        assert seqs(events) == list(range(1, 41))
        assert [e.event_id for e in events] == [f"shared/e{n}" for n in range(1, 41)]
        assert await two.events.read("shared") == events
    finally:
        one.close()
        two.close()


def test_sqlite_concurrent_writers_never_share_a_seq(sqlite_path: Path) -> None:
    SqliteDatabase.open(sqlite_path).close()
    writers, batches, size = 3, 60, 3
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    async def write(worker: int) -> None:
        db = SqliteDatabase(sqlite_path)
        try:
            start.wait(timeout=10)
            for b in range(batches):
                await db.events.append(
                    [make("shared", (worker * batches + b) * size + i) for i in range(size)]
                )
        finally:
            db.close()

    def run(worker: int) -> None:
        try:
            asyncio.run(write(worker))
        except BaseException as e:  # reported by the assertion below
            failures.append(e)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    db = SqliteDatabase(sqlite_path)
    try:
        events = asyncio.run(db.events.read("shared"))
    finally:
        db.close()
    total = writers * batches * size
    assert seqs(events) == list(range(1, total + 1))
    assert len({e.event_id for e in events}) == total
