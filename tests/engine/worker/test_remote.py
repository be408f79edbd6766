"""The worker's HTTP side against a stand-in server on a local port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.core.commands import RunTool
from engine.core.events import Event
from engine.worker.remote import (
    BATCH_SIZE,
    Backoff,
    HttpWorkerRemote,
    ServerUnreachable,
    WorkerUnauthorized,
    command_path,
)
from tests.engine.worker.fake_server import (
    VIEWER_TOKEN,
    WORKER_TOKEN,
    FakeServer,
    free_port,
)

FAST = Backoff(initial=0.02, factor=2, maximum=0.2)


def _command(execution: str = "e1", step: str = "fetch", iteration: int | None = None) -> RunTool:
    return RunTool(
        execution_id=execution,
        step=step,
        step_run_id=f"{step}#1",
        tools=({"kind": "noop", "input": {"n": 1}},),
        step_input={"x": 1},
        context={"workload": {"n": 1}},
        iteration=iteration,
    )


def _event(n: int, execution: str = "e1") -> Event:
    return Event(
        event_id=f"{execution}:s#1:{n}",
        event_type="tool.started",
        execution_id=execution,
        timestamp="2024-05-01T00:00:00Z",
        step_run_id="s#1",
    )


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def _remote(url: str, token: str = WORKER_TOKEN, worker: str = "w1", **options: Any) -> Any:
    options.setdefault("backoff", FAST)
    return HttpWorkerRemote(url, token, worker_id=worker, **options)


@pytest.fixture
async def remote(server: FakeServer) -> AsyncIterator[HttpWorkerRemote]:
    remote = _remote(server.url)
    remote.start()
    try:
        yield remote
    finally:
        await remote.aclose()


def test_command_ids_are_one_path_segment() -> None:
    assert command_path("e1:fetch#1/3", "claim") == "/api/commands/e1%3Afetch%231%2F3/claim"


async def test_a_claim_hands_over_the_command(server: FakeServer, remote: HttpWorkerRemote) -> None:
    command = _command(iteration=3)  # the id holds ':', '#' and '/'
    command_id = server.add(command)
    claim = await remote.claim(command_id, lease_seconds=30)
    assert claim is not None and claim.attempt == 1
    assert claim.command == command
    assert server.claims == [(command_id, "w1")]


async def test_claims_of_commands_held_elsewhere_done_or_unknown_are_refused(
    server: FakeServer, remote: HttpWorkerRemote
) -> None:
    held, done = server.add(_command(step="a")), server.add(_command(step="b"))
    server.holders[held] = "w2"
    server.done.add(done)
    assert await remote.claim(held, 30) is None  # 409: someone else holds it
    assert await remote.claim(done, 30) is None  # 409: it is done
    assert await remote.claim("e1:nothing#1", 30) is None  # 404


async def test_heartbeats_say_whether_the_claim_is_still_held(
    server: FakeServer, remote: HttpWorkerRemote
) -> None:
    command_id = server.add(_command())
    assert await remote.claim(command_id, 30) is not None
    assert await remote.heartbeat(command_id, 30, budget=1) is True
    server.lost.add(command_id)
    assert await remote.heartbeat(command_id, 30, budget=1) is False


async def test_reports_go_out_in_batches_in_order(
    server: FakeServer, remote: HttpWorkerRemote
) -> None:
    for n in range(5):  # separate calls within the window travel together
        await remote.report([_event(n)])
    await server.wait_for(lambda: len(server.events) == 5)
    assert len(server.batches) == 1
    total = 5 + 2 * BATCH_SIZE + BATCH_SIZE // 2
    await remote.report([_event(n) for n in range(5, total)])
    await remote.flush()
    assert [len(batch) for batch in server.batches] == [5, BATCH_SIZE, BATCH_SIZE, BATCH_SIZE // 2]
    sent = [event["event_id"] for batch in server.batches for event in batch]
    assert sent == [f"e1:s#1:{n}" for n in range(total)]
    assert remote.buffered == 0


async def test_reports_are_retried_after_a_503(
    server: FakeServer, remote: HttpWorkerRemote
) -> None:
    server.fail_next_batches = 3
    await remote.report([_event(n) for n in range(3)])
    await remote.flush()
    assert server.refused_batches == 3
    assert [event["event_id"] for event in server.batches[0]] == [f"e1:s#1:{n}" for n in range(3)]


async def test_reports_wait_for_a_server_that_is_down_and_arrive_once_it_is_up() -> None:
    fake = FakeServer(port=free_port())
    remote = _remote(fake.url)
    remote.start()
    try:
        await remote.report([_event(1), _event(2)])
        flushed = asyncio.create_task(remote.flush())
        await asyncio.sleep(0.3)  # several refused connections
        assert not flushed.done()
        await fake.start()
        await asyncio.wait_for(flushed, 5)
        assert sorted(fake.events) == ["e1:s#1:1", "e1:s#1:2"]
    finally:
        await remote.aclose()
        await fake.stop()


async def test_a_refused_event_is_dropped_and_the_rest_of_its_batch_delivered(
    server: FakeServer, remote: HttpWorkerRemote
) -> None:
    server.unknown_executions.add("gone")
    await remote.report([_event(1), _event(2), _event(3, execution="gone"), _event(4)])
    await remote.flush()
    assert sorted(server.events) == ["e1:s#1:1", "e1:s#1:2", "e1:s#1:4"]


async def test_unsent_events_of_a_command_can_be_discarded(
    server: FakeServer,
) -> None:
    remote = _remote(server.url, flush_interval=60)
    remote.start()
    try:
        await remote.report([_event(1)], tag="a")
        await remote.report([_event(2)], tag="b")
        assert await remote.discard("a") == 1
        await remote.flush()
        assert list(server.events) == ["e1:s#1:2"]
    finally:
        await remote.aclose()


@pytest.mark.parametrize("token", [VIEWER_TOKEN, "not-a-token"])
async def test_a_token_without_the_worker_role_is_fatal(server: FakeServer, token: str) -> None:
    remote = _remote(server.url, token=token)
    remote.start()
    try:
        with pytest.raises(WorkerUnauthorized, match="the worker token lacks the worker role"):
            await remote.check()
        with pytest.raises(WorkerUnauthorized):
            await remote.claim(server.add(_command()), 30)
        await remote.report([_event(1)])
        with pytest.raises(WorkerUnauthorized):
            await remote.flush()
        with pytest.raises(WorkerUnauthorized):
            await remote.report([_event(2)])
    finally:
        await remote.aclose()


async def test_check_accepts_a_worker_token(server: FakeServer, remote: HttpWorkerRemote) -> None:
    await remote.check()


async def test_an_unreachable_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    remote = _remote(url, claim_budget=0.2)
    try:
        with pytest.raises(ServerUnreachable, match=f"cannot reach the API server at {url}"):
            await remote.check()
        with pytest.raises(ServerUnreachable, match="check that it is running"):
            await remote.claim("e1:a#1", 30)
    finally:
        await remote.aclose()


async def test_check_agrees_with_the_real_api_on_who_may_report(tmp_path: Path) -> None:
    from engine.adapters.sqlite.stores import SqliteDatabase
    from engine.runtime.embedded import Engine
    from noetl_agent.api import create_app
    from noetl_agent.tokens import SqliteTokenStore

    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    tokens = SqliteTokenStore(db)
    try:
        app = create_app(engine, tokens)
        worker = await tokens.create("w", "agent", ["worker"])
        viewer = await tokens.create("v", "human", ["viewer"])
        for token, allowed in ((worker, True), (viewer, False), ("unknown", False)):
            transport = httpx.ASGITransport(app=app)
            remote = _remote("http://noetl.test", token=token, transport=transport)
            try:
                if allowed:
                    await remote.check()
                else:
                    with pytest.raises(WorkerUnauthorized, match="lacks the worker role"):
                        await remote.check()
            finally:
                await remote.aclose()
    finally:
        await engine.aclose()
        db.close()
