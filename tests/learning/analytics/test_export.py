"""Exporting the event log: incremental, resumable, idempotent, flattened for SQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.adapters.memory import MemoryEventStore
from engine.adapters.sqlite.stores import SqliteDatabase
from engine.ports import EventStore
from learning.analytics.export import Exporter, error_class, reason_class
from learning.analytics.service import Analytics
from learning.analytics.store import ClickHouseStore
from tests.conformance.conftest import fresh_postgres, require_postgres
from tests.learning.analytics.history import KEY_ERROR, OK, TIMEOUT, History, http


async def _rows(analytics: Analytics, sql: str) -> list[dict[str, Any]]:
    return (await analytics.query(sql, refresh=False)).records()


@pytest.mark.parametrize(
    ("kind", "code", "expected"),
    [
        ("http", 503, "http_503"),
        ("timeout", None, "timeout"),
        ("connection", None, "connection"),
        ("python", "KeyError", "KeyError"),
        ("sql", "40P01", "sql_40P01"),
        ("validation", 1, "validation_1"),
        (None, None, None),
    ],
)
def test_error_classes(kind: str | None, code: Any, expected: str | None) -> None:
    assert error_class(kind, code) == expected


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("http_503", "http_503"),
        ("python_KeyError", "KeyError"),
        ("timeout", "timeout"),
        (None, None),
    ],
)
def test_retry_reasons_map_to_the_same_classes(reason: str | None, expected: str | None) -> None:
    assert reason_class(reason) == expected


async def test_export_is_incremental_and_never_writes_a_row_twice(
    events_db: SqliteDatabase, analytics: Analytics
) -> None:
    first = History("exec-1")
    first.step("fetch", [http(503), OK], pool="cpu", wall_ms=120)
    await events_db.events.append(first.events)

    report = await analytics.export()
    assert (report.read, report.exported) == (len(first.events), len(first.events))
    assert (await analytics.export()).exported == 0  # nothing new

    second = History("exec-2")
    second.step("fetch", [OK])
    await events_db.events.append(second.events)
    assert (await analytics.export()).exported == len(second.events)
    # A full rescan reads everything again and still writes nothing twice.
    rescan = await analytics.export(full=True)
    assert rescan.read == len(first.events) + len(second.events) and rescan.exported == 0

    counts = await _rows(
        analytics,
        "SELECT execution_id, count() AS n, uniqExact(seq) AS seqs FROM events"
        " GROUP BY execution_id ORDER BY execution_id",
    )
    assert counts == [
        {"execution_id": "exec-1", "n": len(first.events), "seqs": len(first.events)},
        {"execution_id": "exec-2", "n": len(second.events), "seqs": len(second.events)},
    ]


async def test_a_new_exporter_resumes_from_what_the_store_holds(
    events_db: SqliteDatabase, store: ClickHouseStore
) -> None:
    history = History("exec-1")
    history.step("fetch", [TIMEOUT, TIMEOUT, OK])
    await events_db.events.append(history.events[:5])
    # Small batches, as after a crash part-way: the state lives in the analytics table.
    assert (await Exporter(events_db.events, store, batch=2).export()).exported == 5
    await events_db.events.append(history.events[5:])
    resumed = await Exporter(events_db.events, store, batch=2).export()
    assert resumed.exported == len(history.events) - 5
    again = await Exporter(events_db.events, store, batch=3, lookback=0).export(full=True)
    assert again.exported == 0


async def test_rows_lift_what_the_learners_need_out_of_the_payload(
    events_db: SqliteDatabase, analytics: Analytics
) -> None:
    history = History("exec-1", playbook="shop/orders", version=3)
    history.step("fetch", [http(503), OK], pool="gpu", wall_ms=250, cpu_ms=40, peak_rss_kb=9000)
    history.step("parse", [KEY_ERROR])
    # A later exporter never sees the request event: it asks the event store instead.
    await events_db.events.append(history.events[:2])
    await Exporter(events_db.events, analytics.store).export()
    await events_db.events.append(history.events[2:])
    await Exporter(events_db.events, analytics.store, batch=2).export()

    rows = await _rows(
        analytics,
        "SELECT event_type, playbook_path, playbook_version, step, step_run_id, tool, pool,"
        " attempt, attempts, status, error_class, error_kind, error_code, http_status, reason,"
        " wall_ms, cpu_ms, peak_rss_kb, usage_scope, final FROM events ORDER BY seq",
    )
    assert {(r["playbook_path"], r["playbook_version"]) for r in rows} == {("shop/orders", 3)}
    by_type: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for row in rows:
        by_type.setdefault((row["step"], row["event_type"]), []).append(row)
    fetched = by_type[("fetch", "tool.processed")][0]
    assert (
        fetched
        | {
            "pool": "gpu",
            "attempts": 2,
            "status": "success",
            "wall_ms": 250.0,
            "cpu_ms": 40.0,
            "peak_rss_kb": 9000,
            "usage_scope": "tool",
            "final": True,
            "tool": "http",
            "step_run_id": "fetch#1",
        }
        == fetched
    )
    retry = by_type[("fetch", "retry.started")][0]
    assert (retry["reason"], retry["error_class"], retry["attempt"]) == ("http_503", "http_503", 2)
    assert by_type[("fetch", "tool.started")][0]["pool"] == "gpu"
    failed = by_type[("parse", "step.finished")][0]
    assert (failed["status"], failed["error_class"], failed["error_kind"]) == (
        "error",
        "KeyError",
        "python",
    )
    parsed = by_type[("parse", "tool.processed")][0]
    assert (parsed["error_code"], parsed["http_status"]) == ("KeyError", None)


@asynccontextmanager
async def _event_store(backend: str, tmp_path: Path) -> AsyncIterator[EventStore]:
    if backend == "memory":
        yield MemoryEventStore()
    elif backend == "sqlite":
        db = SqliteDatabase.open(tmp_path / "other.db")
        try:
            yield db.events
        finally:
            db.close()
    else:
        async with fresh_postgres(await require_postgres()) as pg:
            yield pg.events


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres"])
async def test_every_event_store_exports_alike(
    backend: str, store: ClickHouseStore, tmp_path: Path
) -> None:
    async with _event_store(backend, tmp_path) as events:
        first, second = History("exec-a"), History("exec-b")
        first.step("fetch", [http(503), OK], pool="gpu")
        second.step("fetch", [KEY_ERROR])
        await events.append(first.events)
        analytics = Analytics(events, store)
        assert (await analytics.export()).exported == len(first.events)
        await events.append(second.events)
        stats = await analytics.step_statistics("shop/orders", "fetch")
        assert (stats.runs, stats.failed) == (2, 1)
        assert (await analytics.export(full=True)).exported == 0
