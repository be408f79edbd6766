"""Claim and heartbeat routes on the distributed stack (real PostgreSQL and NATS), the
completion of commands by reported events, and health and metrics of that stack."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest

from engine.adapters.nats.bus import CommandNote
from engine.core.commands import RunTool
from engine.core.events import Event
from engine.runtime.tool_runner import ToolRunner
from engine.tools.registry import ToolRegistry
from tests.api.conftest import HELLO
from tests.distributed_stack import (
    DistributedStack,
    command_path,
    distributed_stack,
    started_note,
)


@pytest.fixture
async def stack() -> AsyncIterator[DistributedStack]:
    async with distributed_stack() as started:
        yield started


@pytest.fixture
async def api(stack: DistributedStack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.client() as client:
        yield client


def _claim(worker_id: str, lease: float = 30) -> dict[str, object]:
    return {"worker_id": worker_id, "lease_seconds": lease}


async def test_a_note_names_a_command_one_worker_can_claim(api, stack):
    note = await started_note(stack, HELLO)
    execution_id = note.execution_id
    assert note == CommandNote(execution_id, f"{execution_id}:start#1", "cpu")
    path = command_path(note.command_id, "claim")

    won = await api.post(path, json=_claim("w1"), headers=stack.auth("worker"))

    assert won.status_code == 200, won.text
    assert won.json()["attempt"] == 1
    command = RunTool.from_dict(won.json()["command"])
    assert (command.execution_id, command.step, command.step_run_id) == (
        execution_id,
        "start",
        "start#1",
    )
    lost = await api.post(path, json=_claim("w2"), headers=stack.auth("worker"))
    assert lost.status_code == 409
    assert lost.headers["content-type"].startswith("application/problem+json")
    assert "claimed by worker 'w1 (token worker)'" in lost.json()["detail"]
    again = await api.post(path, json=_claim("w1"), headers=stack.auth("worker"))
    assert again.status_code == 200 and again.json()["attempt"] == 1
    # The same worker id under another token is another worker: a claim is held under the
    # token that made it.
    other = await api.post(path, json=_claim("w1"), headers=stack.auth("admin"))
    assert other.status_code == 409
    assert "claimed by worker 'w1 (token worker)'" in other.json()["detail"]


async def test_a_heartbeat_extends_the_holders_claim(api, stack):
    note = await started_note(stack, HELLO)
    claimed = await api.post(
        command_path(note.command_id, "claim"), json=_claim("w1", 5), headers=stack.auth("worker")
    )
    assert claimed.status_code == 200
    path = command_path(note.command_id, "heartbeat")

    beat = await api.post(path, json=_claim("w1", 300), headers=stack.auth("worker"))

    assert beat.status_code == 200, beat.text
    expires = datetime.fromisoformat(beat.json()["claim_expires_at"].replace("Z", "+00:00"))
    assert (expires - datetime.now(expires.tzinfo)).total_seconds() > 200
    stranger = await api.post(path, json=_claim("w2"), headers=stack.auth("worker"))
    assert stranger.status_code == 409
    impostor = await api.post(path, json=_claim("w1"), headers=stack.auth("agent-admin"))
    assert impostor.status_code == 409  # the worker id alone does not make the holder
    disguised = _claim("w1 (token worker)")  # spelling the holder out does not either
    posed = await api.post(path, json=disguised, headers=stack.auth("agent-admin"))
    assert posed.status_code == 409
    default = await api.post(path, json={"worker_id": "w1"}, headers=stack.auth("worker"))
    assert default.status_code == 200  # the server's lease


@pytest.mark.parametrize("who", ["viewer", "operator"])
@pytest.mark.parametrize("action", ["claim", "heartbeat"])
async def test_only_workers_may_claim_and_heartbeat(api, stack, who, action):
    note = await started_note(stack, HELLO)

    refused = await api.post(
        command_path(note.command_id, action), json=_claim("w1"), headers=stack.auth(who)
    )

    assert refused.status_code == 403
    assert "needs the worker role" in refused.json()["detail"]
    anonymous = await api.post(command_path(note.command_id, action), json=_claim("w1"))
    assert anonymous.status_code == 401


async def test_unknown_commands_and_bad_bodies(api, stack):
    unknown = await api.post(
        command_path("nope:start#1", "claim"), json=_claim("w1"), headers=stack.auth("worker")
    )
    assert unknown.status_code == 404
    assert "no command 'nope:start#1'" in unknown.json()["detail"]
    for body in ({"worker_id": "w1", "lease_seconds": 0.5}, {"lease_seconds": 30}, {}):
        bad = await api.post(
            command_path("nope:start#1", "claim"), json=body, headers=stack.auth("worker")
        )
        assert bad.status_code == 422, body


async def test_the_final_tool_event_completes_the_command(api, stack):
    note = await started_note(stack, HELLO)
    execution_id = note.execution_id
    claimed = await api.post(
        command_path(note.command_id, "claim"), json=_claim("w1"), headers=stack.auth("worker")
    )
    command = RunTool.from_dict(claimed.json()["command"])
    registry = ToolRegistry()
    reported: list[Event] = []

    async def keep(events: list[Event]) -> None:
        reported.extend(events)

    await ToolRunner(registry).run(command, keep)
    await registry.aclose()
    final = [e for e in reported if e.event_type == "tool.processed"]
    others = [e for e in reported if e.event_type != "tool.processed"]

    early = await api.post(
        "/api/events/batch",
        json={"events": [e.to_dict() for e in others]},
        headers=stack.auth("worker"),
    )
    assert early.status_code == 200
    assert (await stack.store.counts()).get(("cpu", "claimed")) == 1
    done = await api.post(
        "/api/events/batch",
        json={"events": [e.to_dict() for e in final]},
        headers=stack.auth("worker"),
    )
    assert done.status_code == 200, done.text

    outcome = await stack.engine.wait(execution_id, timeout=10)
    assert outcome.status == "completed"
    for action in ("claim", "heartbeat"):
        refused = await api.post(
            command_path(note.command_id, action), json=_claim("w1"), headers=stack.auth("worker")
        )
        assert refused.status_code == 409
        assert "is done" in refused.json()["detail"]
    assert await stack.store.counts() == {}


async def test_health_checks_the_database_and_nats(api, stack):
    healthy = await api.get("/health")
    assert healthy.status_code == 200, healthy.text
    assert healthy.json()["checks"] == {
        "event_store": "ok",
        "catalog": "ok",
        "tokens": "ok",
        "database": "ok",
        "nats": "ok",
    }
    await stack.bus.delete_stream()
    broken = await api.get("/health")
    assert broken.status_code == 503
    checks = broken.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["nats"].startswith("error: ") and "is missing" in checks["nats"]


async def test_metrics_show_the_queue_depth_per_pool(api, stack):
    await started_note(stack, HELLO)

    text = (await api.get("/metrics")).text

    assert "# TYPE noetl_command_queue_depth gauge" in text
    assert re.search(r'^noetl_command_queue_depth\{pool="cpu",status="queued"\} 1$', text, re.M)
    assert re.search(r'^noetl_command_queue_depth\{pool="cpu",status="claimed"\} 0$', text, re.M)


async def test_the_embedded_stack_hands_out_no_commands(tmp_path):
    from engine.adapters.sqlite.stores import SqliteDatabase
    from engine.runtime.embedded import Engine
    from noetl_agent.api import create_app
    from noetl_agent.tokens import MemoryTokenStore

    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog)
    tokens = MemoryTokenStore()
    secret = await tokens.create("w", "agent", ["worker"])
    transport = httpx.ASGITransport(app=create_app(engine, tokens))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as api:
            answer = await api.post(
                command_path("e:start#1", "claim"),
                json=_claim("w1"),
                headers={"Authorization": f"Bearer {secret}"},
            )
            metrics = (await api.get("/metrics")).text
    finally:
        await engine.aclose()
        db.close()
    assert answer.status_code == 404
    assert "embedded stack" in answer.json()["detail"]
    assert "noetl_command_queue_depth" not in metrics
