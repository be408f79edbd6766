"""POST /api/events and /api/events/batch: a worker outside the engine reports over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from engine.adapters.memory.queue import MemoryCommandQueue
from engine.adapters.sqlite.stores import SqliteDatabase
from engine.core.events import Event
from engine.runtime.embedded import Engine
from engine.runtime.tool_runner import ToolRunner
from engine.tools.registry import ToolRegistry
from noetl_agent.api import create_app
from noetl_agent.tokens import MemoryTokenStore
from tests.api.conftest import HELLO


@pytest.fixture
async def queued(
    tmp_path: Path,
) -> AsyncIterator[tuple[Engine, MemoryCommandQueue, httpx.AsyncClient, dict[str, str]]]:
    """An engine that hands commands to a queue, and the app in front of it."""
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    queue = MemoryCommandQueue()
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks", queue=queue)
    tokens = MemoryTokenStore()
    worker = {"Authorization": f"Bearer {await tokens.create('w1', 'agent', ['worker'])}"}
    transport = httpx.ASGITransport(app=create_app(engine, tokens))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as api:
            yield engine, queue, api, worker
    finally:
        await engine.aclose()
        db.close()


async def _run_remotely(engine: Engine, queue: MemoryCommandQueue) -> tuple[str, list[Event]]:
    """Start HELLO and run its one command the way a remote worker would; return the
    execution id and the events the worker has to report."""
    entry = await engine.register(HELLO)
    execution_id = await engine.execute(entry.path)
    command = await asyncio.wait_for(queue.take("cpu"), 5)
    reported: list[Event] = []

    async def collect(events: list[Event]) -> None:
        reported.extend(events)

    registry = ToolRegistry()
    await ToolRunner(registry).run(command, collect)
    await registry.aclose()
    return execution_id, reported


async def test_reported_events_drive_the_execution_and_repeats_are_stored_once(queued):
    engine, queue, api, worker = queued
    execution_id, reported = await _run_remotely(engine, queue)
    assert [e.event_type for e in reported] == ["tool.started", "tool.processed"]

    one = await api.post("/api/events", json=reported[0].to_dict(), headers=worker)
    assert one.status_code == 200
    assert one.json() == {"accepted": 1}
    batch = {"events": [event.to_dict() for event in reported]}
    for _ in range(2):
        response = await api.post("/api/events/batch", json=batch, headers=worker)
        assert response.status_code == 200

    outcome = await engine.wait(execution_id, timeout=5)
    assert outcome.status == "completed"
    assert outcome.result == {"n": 1}
    stored = [e.event_id for e in await engine.events.read(execution_id)]
    assert len(stored) == len(set(stored))
    assert {e.event_id for e in reported} <= set(stored)
    metrics = (await api.get("/metrics")).text
    assert "noetl_worker_events_reported_total 5" in metrics


async def test_unknown_execution_is_404_and_nothing_of_the_batch_is_stored(queued):
    engine, queue, api, worker = queued
    execution_id, reported = await _run_remotely(engine, queue)
    before = len(await engine.events.read(execution_id))
    stray = reported[0].to_dict() | {"execution_id": "nope", "event_id": "nope:1"}

    single = await api.post("/api/events", json=stray, headers=worker)
    assert single.status_code == 404
    assert single.json()["type"] == "/problems/not-found"
    mixed = {"events": [reported[0].to_dict(), stray]}
    response = await api.post("/api/events/batch", json=mixed, headers=worker)
    assert response.status_code == 404
    assert len(await engine.events.read(execution_id)) == before
    assert await engine.events.read("nope") == []


async def test_workers_may_report_only_tool_events(queued):
    engine, queue, api, worker = queued
    execution_id, reported = await _run_remotely(engine, queue)
    before = len(await engine.events.read(execution_id))
    forged = reported[-1].to_dict() | {"event_type": "playbook.processed", "event_id": "x"}
    for body in (
        forged,
        reported[-1].to_dict() | {"surprise": True},
        {"event_id": "x"},
    ):
        response = await api.post("/api/events", json=body, headers=worker)
        assert response.status_code == 422, body
        assert response.json()["type"] == "/problems/invalid-request"
    assert "workers report only" in str(
        (await api.post("/api/events", json=forged, headers=worker)).json()["errors"]
    )
    empty = await api.post("/api/events/batch", json={"events": []}, headers=worker)
    assert empty.status_code == 422
    assert len(await engine.events.read(execution_id)) == before
