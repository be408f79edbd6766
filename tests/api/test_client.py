"""The typed client against the in-process app: same results and error classes as the
embedded engine."""

from __future__ import annotations

import inspect
from typing import cast

import httpx
import pytest
from fastapi.testclient import TestClient

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.core.events import Event
from engine.errors import Conflict, NotFound, PlaybookInvalid
from engine.runtime.embedded import Engine
from noetl_agent.api import create_app
from noetl_agent.api.problems import TYPE_PREFIX
from noetl_agent.client import PROBLEM_PREFIX, AsyncClient, Client
from noetl_agent.errors import ApiError, Forbidden, ServerUnavailable, Unauthorized
from noetl_agent.tokens import MemoryTokenStore
from tests.api.conftest import GATE, HELLO, INVALID


def _client(stack, who: str | None) -> AsyncClient:
    transport = httpx.ASGITransport(app=stack.app)
    token = stack.secrets[who] if who else None
    return AsyncClient("http://noetl.test", token, transport=transport)


async def test_run_a_playbook_and_follow_it(stack):
    async with _client(stack, "admin") as api:
        entry = await api.register(HELLO)
        assert (entry.path, entry.version, entry.name) == ("api/hello", 1, "hello")
        started = await api.execute(entry.path, workload={"n": 4})
        seen: list[Event] = []
        outcome = await api.wait(started.execution_id, on_event=seen.append)

        assert outcome.to_dict() == {
            "execution_id": started.execution_id,
            "status": "completed",
            "result": {"n": 4},
            "error": None,
        }
        assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
        assert seen[-1].event_type == "playbook.processed"
        execution = await api.get_execution(started.execution_id)
        assert execution.status == "completed"
        assert execution.steps[0]["step"] == "start"
        assert len(await api.events(started.execution_id, after_seq=2)) == len(seen) - 2
        assert (await api.list_playbooks())[0]["path"] == "api/hello"
        assert (await api.get_playbook("api/hello", 1))["content"] == HELLO
        assert [row["execution_id"] for row in await api.list_executions()] == [
            started.execution_id
        ]


async def test_approvals_and_cancel(stack):
    async with _client(stack, "admin") as api:
        path = (await api.register(GATE)).path
        first = await api.execute(path)
        assert (await api.wait(first.execution_id)).status == "paused"
        pending = await api.approvals()
        assert [a.approval_id for a in pending] == [f"{first.execution_id}/review#1"]

        decision = await api.decide(pending[0].approval_id, approved=False, comment="no")
        assert decision.decided_by == "admin"
        outcome = await api.wait(first.execution_id)
        assert outcome.result == {"shipped": False}
        with pytest.raises(Conflict, match="already decided"):
            await api.decide(pending[0].approval_id, approved=True)

        second = await api.execute(path)
        await api.wait(second.execution_id)
        await api.cancel(second.execution_id, "changed my mind")
        assert (await api.wait(second.execution_id)).status == "cancelled"
        with pytest.raises(Conflict):
            await api.cancel(second.execution_id)


async def test_problem_documents_become_the_engines_errors(stack):
    assert PROBLEM_PREFIX == TYPE_PREFIX
    async with _client(stack, "admin") as api:
        with pytest.raises(PlaybookInvalid) as invalid:
            await api.register(INVALID)
        assert invalid.value.issues[0].path == "workflow[0].nxet"
        assert invalid.value.issues[0].line == 6
        assert "did you mean `next`" in str(invalid.value)
        with pytest.raises(NotFound, match="nope"):
            await api.get_execution("nope")
        with pytest.raises(NotFound):
            await api.execute("api/absent")
        with pytest.raises(ApiError) as too_large:
            await api.register("#" * (2 * 1024 * 1024))
        assert too_large.value.status == 413
        assert too_large.value.problem["limit_bytes"] == 1024 * 1024
    async with _client(stack, "agent-admin") as agent:
        path = (await agent.register(GATE)).path
        execution_id = (await agent.execute(path)).execution_id
        await agent.wait(execution_id)
        with pytest.raises(Forbidden, match="only a human approver"):
            await agent.decide(f"{execution_id}/review#1", approved=True)
    async with _client(stack, None) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.approvals()


async def test_an_unreachable_server_is_reported_as_such():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with (
        Client("http://127.0.0.1:9", "t", transport=httpx.MockTransport(refuse)) as api,
        pytest.raises(ServerUnavailable, match="noetl-agent server"),
    ):
        api.approvals()


def test_the_sync_client(tmp_path):
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    tokens = MemoryTokenStore()
    with TestClient(create_app(engine, tokens)) as http:
        portal = http.portal
        assert portal is not None  # set while the test client is open
        token = portal.call(tokens.create, "ann", "human", ["admin"])
        # TestClient subclasses httpx2.Client, which has the httpx.Client interface Client uses.
        with Client(token=token, http=cast(httpx.Client, http)) as api:
            path = api.register(GATE).path
            started = api.execute(path)
            assert api.wait(started.execution_id).status == "paused"
            (pending,) = api.approvals()
            api.decide(pending.approval_id, approved=True, comment="fine")
            outcome = api.wait(started.execution_id)
            assert outcome.result == {"shipped": True, "comment": "fine"}
            assert api.events(started.execution_id)[-1].event_type == "playbook.processed"
            with pytest.raises(NotFound):
                api.cancel("nope")
        portal.call(engine.aclose)
    db.close()


async def test_both_clients_have_the_same_methods():
    def methods(api: object) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(getattr(api, name))
            for name in dir(api)
            if not name.startswith("_") and name not in ("close", "aclose")
        }

    blocking, awaitable = Client(), AsyncClient()
    assert methods(blocking).keys() == methods(awaitable).keys() >= {"register", "wait"}
    for name, signature in methods(blocking).items():
        assert signature.parameters == methods(awaitable)[name].parameters, name
        assert getattr(blocking, name).__doc__ == getattr(awaitable, name).__doc__, name
        assert inspect.iscoroutinefunction(getattr(awaitable, name)), name
        assert not inspect.iscoroutinefunction(getattr(blocking, name)), name
    blocking.close()
    await awaitable.aclose()
