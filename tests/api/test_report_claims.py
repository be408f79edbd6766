"""Reports are bound to claims on the distributed stack (real PostgreSQL and NATS): only the
token whose claim holds a command may report its events, the holder's re-sends are taken,
and a refused report stores nothing and completes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from engine.core import events as ev
from engine.core.commands import RunTool
from engine.core.events import Event
from engine.errors import Conflict
from engine.runtime.tool_runner import ToolRunner
from engine.tools.registry import ToolRegistry
from engine.worker.remote import HttpWorkerRemote
from noetl_agent.client import error_from
from noetl_agent.errors import ClaimNotHeld
from noetl_agent.tokens import PostgresTokenStore
from tests.api.conftest import HELLO
from tests.distributed_stack import (
    BASE_URL,
    DistributedStack,
    command_path,
    distributed_stack,
    started_note,
)

APPROVAL_FIRST = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: approvalfirst, path: api/approvalfirst}
workflow:
  - step: start
    tool: {kind: approval, prompt: "Go?"}
"""


@pytest.fixture
async def stack() -> AsyncIterator[DistributedStack]:
    async with distributed_stack() as started:
        started.secrets["worker-2"] = await PostgresTokenStore(started.db).create(
            "worker-2", "agent", ["worker"]
        )
        yield started


@pytest.fixture
async def api(stack: DistributedStack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.client() as client:
        yield client


async def _claimed(
    api: httpx.AsyncClient, stack: DistributedStack, command_id: str, who: str, worker_id: str
) -> RunTool:
    answer = await api.post(
        command_path(command_id, "claim"), json={"worker_id": worker_id}, headers=stack.auth(who)
    )
    assert answer.status_code == 200, answer.text
    return RunTool.from_dict(answer.json()["command"])


async def _run(command: RunTool) -> list[Event]:
    """The events a worker reports for ``command``, its final ``tool.processed`` last."""
    registry = ToolRegistry()
    reported: list[Event] = []

    async def keep(events: list[Event]) -> None:
        reported.extend(events)

    try:
        await ToolRunner(registry).run(command, keep)
    finally:
        await registry.aclose()
    assert reported[-1].event_type == ev.TOOL_PROCESSED
    return reported


def _batch(events: list[Event]) -> dict[str, Any]:
    return {"events": [event.to_dict() for event in events]}


async def _stored_ids(stack: DistributedStack, execution_id: str) -> list[str]:
    return [event.event_id for event in await stack.engine.events.read(execution_id)]


async def _heartbeat(
    api: httpx.AsyncClient, stack: DistributedStack, command_id: str, who: str, worker_id: str
) -> httpx.Response:
    return await api.post(
        command_path(command_id, "heartbeat"),
        json={"worker_id": worker_id},
        headers=stack.auth(who),
    )


async def test_another_token_cannot_finish_a_command_and_the_holder_can_resend(api, stack):
    note = await started_note(stack, HELLO)
    command = await _claimed(api, stack, note.command_id, "worker", "w1")
    reported = await _run(command)
    final = reported[-1]

    for path, body in (("/api/events/batch", _batch(reported)), ("/api/events", final.to_dict())):
        refused = await api.post(path, json=body, headers=stack.auth("worker-2"))
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert problem["type"] == "/problems/conflict"
        assert problem["commands"] == [note.command_id]
        assert "token 'worker-2' holds no claim" in problem["detail"]
        assert "is claimed by 'w1 (token worker)', not by token 'worker-2'" in problem["detail"]
        assert "handed to another worker, where the step runs again" in problem["detail"]
        error = error_from(refused)  # what the Python client raises
        assert isinstance(error, ClaimNotHeld) and isinstance(error, Conflict)
        assert error.commands == [note.command_id]
    assert not {e.event_id for e in reported} & set(await _stored_ids(stack, note.execution_id))
    assert (await stack.store.counts()).get(("cpu", "claimed")) == 1  # not marked done
    assert (await _heartbeat(api, stack, note.command_id, "worker", "w1")).status_code == 200

    accepted = await api.post(
        "/api/events/batch", json=_batch(reported), headers=stack.auth("worker")
    )
    assert accepted.status_code == 200, accepted.text
    outcome = await stack.engine.wait(note.execution_id, timeout=10)
    assert outcome.status == "completed"
    done = await _heartbeat(api, stack, note.command_id, "worker", "w1")
    assert done.status_code == 409 and "is done" in done.json()["detail"]
    log = await _stored_ids(stack, note.execution_id)

    # The answer got lost: the holder sends the same batch again, and it is stored once.
    again = await api.post("/api/events/batch", json=_batch(reported), headers=stack.auth("worker"))
    assert again.status_code == 200, again.text
    assert await _stored_ids(stack, note.execution_id) == log
    assert log.count(final.event_id) == 1

    late = await api.post("/api/events/batch", json=_batch([final]), headers=stack.auth("worker-2"))
    assert late.status_code == 409
    assert "is done under the claim of 'w1 (token worker)'" in late.json()["detail"]
    assert await _stored_ids(stack, note.execution_id) == log


async def test_a_report_after_the_claim_went_to_another_token_is_refused(api, stack):
    note = await started_note(stack, HELLO)
    first = await api.post(
        command_path(note.command_id, "claim"),
        json={"worker_id": "w1", "lease_seconds": 1},
        headers=stack.auth("worker"),
    )
    assert first.status_code == 200, first.text
    reported = await _run(RunTool.from_dict(first.json()["command"]))
    async with asyncio.timeout(10):  # the lease runs out, then worker-2 gets the command
        while True:
            second = await api.post(
                command_path(note.command_id, "claim"),
                json={"worker_id": "w2"},
                headers=stack.auth("worker-2"),
            )
            if second.status_code == 200:
                break
            assert second.status_code == 409, second.text
            await asyncio.sleep(0.1)
    assert second.json()["attempt"] == 2

    late = await api.post("/api/events/batch", json=_batch(reported), headers=stack.auth("worker"))
    assert late.status_code == 409, late.text
    assert late.json()["commands"] == [note.command_id]
    detail = late.json()["detail"]
    assert "claimed by 'w2 (token worker-2)', not by token 'worker'" in detail
    assert "its claim expired and was handed to another worker" in detail
    assert "Stop running these commands and drop their events" in detail
    assert not {e.event_id for e in reported} & set(await _stored_ids(stack, note.execution_id))
    assert (await _heartbeat(api, stack, note.command_id, "worker-2", "w2")).status_code == 200

    rerun = await _run(RunTool.from_dict(second.json()["command"]))
    taken = await api.post("/api/events/batch", json=_batch(rerun), headers=stack.auth("worker-2"))
    assert taken.status_code == 200, taken.text
    assert (await stack.engine.wait(note.execution_id, timeout=10)).status == "completed"


async def test_an_admin_token_reports_only_on_its_own_claims(api, stack):
    note = await started_note(stack, HELLO)
    command = await _claimed(api, stack, note.command_id, "worker", "w1")
    reported = await _run(command)
    refused = await api.post(
        "/api/events/batch", json=_batch(reported), headers=stack.auth("admin")
    )
    assert refused.status_code == 409, refused.text
    assert "not by token 'admin'" in refused.json()["detail"]
    assert (await stack.store.counts()).get(("cpu", "claimed")) == 1


async def test_a_worker_cannot_decide_an_approval_by_reporting_its_tool(api, stack):
    operator = stack.auth("operator")
    registered = await api.post(
        "/api/catalog/register", json={"content": APPROVAL_FIRST}, headers=operator
    )
    assert registered.status_code == 200, registered.text
    started = await api.post("/api/execute", json={"path": "api/approvalfirst"}, headers=operator)
    execution_id = started.json()["execution_id"]
    async with asyncio.timeout(10):
        while not await _pending(api, stack, execution_id):
            await asyncio.sleep(0.05)
    forged = Event(
        event_id=f"{execution_id}:start#1:forged",
        event_type=ev.TOOL_PROCESSED,
        execution_id=execution_id,
        timestamp="2026-01-01T00:00:00Z",
        entity_type="tool",
        entity_id="start.approval",
        step_run_id="start#1",
        status=ev.STATUS_SUCCESS,
        payload={"output": {"approved": True}},
    )
    refused = await api.post(
        "/api/events/batch", json=_batch([forged]), headers=stack.auth("worker")
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["commands"] == [f"{execution_id}:start#1"]
    assert "was handed to workers" in refused.json()["detail"]
    assert forged.event_id not in await _stored_ids(stack, execution_id)
    assert await _pending(api, stack, execution_id)  # still waiting for a person


async def _pending(api: httpx.AsyncClient, stack: DistributedStack, execution_id: str) -> bool:
    listed = await api.get("/api/approvals", headers=stack.auth("viewer"))
    return any(item["execution_id"] == execution_id for item in listed.json())


async def test_the_worker_drops_a_lost_commands_events_and_delivers_the_rest(api, stack):
    mine = await started_note(stack, HELLO)
    theirs = await started_note(stack, HELLO.replace("n: 1", "n: 2"))
    held = await _run(await _claimed(api, stack, mine.command_id, "worker", "w1"))
    lost = await _run(await _claimed(api, stack, theirs.command_id, "worker-2", "w2"))
    remote = HttpWorkerRemote(
        BASE_URL,
        stack.secrets["worker"],
        worker_id="w1",
        flush_interval=60,  # one batch, sent by flush()
        transport=httpx.ASGITransport(app=stack.app),
    )
    remote.start()
    try:
        watched = {mine.command_id: remote.lost(mine.command_id)}
        watched[theirs.command_id] = remote.lost(theirs.command_id)
        await remote.report(lost, tag=theirs.command_id)
        await remote.report(held, tag=mine.command_id)
        await remote.flush()
        assert watched[theirs.command_id].is_set()
        assert not watched[mine.command_id].is_set()
        assert remote.buffered == 0
        # Anything more it reports on the lost command is dropped at once.
        await remote.report(lost, tag=theirs.command_id)
        assert remote.buffered == 0
    finally:
        await remote.aclose()
    assert (await stack.engine.wait(mine.execution_id, timeout=10)).status == "completed"
    assert set(e.event_id for e in held) <= set(await _stored_ids(stack, mine.execution_id))
    assert not {e.event_id for e in lost} & set(await _stored_ids(stack, theirs.execution_id))
    assert (await _heartbeat(api, stack, theirs.command_id, "worker-2", "w2")).status_code == 200


async def test_a_worker_id_cannot_pass_for_another_tokens_claim(api, stack):
    note = await started_note(stack, HELLO)
    command = await _claimed(api, stack, note.command_id, "worker-2", "w1 (token worker)")
    reported = await _run(command)
    posing = await api.post(
        "/api/events/batch", json=_batch(reported), headers=stack.auth("worker")
    )
    assert posing.status_code == 409, posing.text
    assert "claimed by 'w1 (token worker) (token worker-2)'" in posing.json()["detail"]
    holder = await api.post(
        "/api/events/batch", json=_batch(reported), headers=stack.auth("worker-2")
    )
    assert holder.status_code == 200, holder.text
    assert (await stack.engine.wait(note.execution_id, timeout=10)).status == "completed"
