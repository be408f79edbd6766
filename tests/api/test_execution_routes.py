"""POST /api/execute, GET /api/executions[/{id}[/events]], POST /api/executions/{id}/cancel."""

from __future__ import annotations

import asyncio

from tests.api.conftest import GATE, HELLO, register, start


async def test_execute_then_read_the_execution_and_its_events(api, stack):
    path = await register(api, stack, HELLO)
    operator = stack.auth("operator")
    started = await api.post(
        "/api/execute", json={"path": path, "workload": {"n": 5}}, headers=operator
    )
    assert started.status_code == 202
    execution_id = started.json()["execution_id"]
    assert started.json()["status"] == "running"
    assert started.headers["location"] == f"/api/executions/{execution_id}"
    await stack.engine.wait(execution_id, timeout=10)

    shown = await api.get(f"/api/executions/{execution_id}", headers=stack.auth("viewer"))
    assert shown.status_code == 200
    view = shown.json()
    assert view["status"] == "completed"
    assert view["result"] == {"n": 5}
    assert view["error"] is None
    assert [(s["step"], s["status"]) for s in view["steps"]] == [("start", "success")]

    events = (await api.get(f"/api/executions/{execution_id}/events", headers=operator)).json()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event_type"] == "playbook.execution.requested"
    assert events[-1]["event_type"] == "playbook.processed"
    tail = await api.get(
        f"/api/executions/{execution_id}/events", params={"after_seq": 3}, headers=operator
    )
    assert [e["seq"] for e in tail.json()] == list(range(4, len(events) + 1))

    listed = await api.get("/api/executions", params={"status": "completed"}, headers=operator)
    assert [row["execution_id"] for row in listed.json()] == [execution_id]
    none = await api.get("/api/executions", params={"status": "failed"}, headers=operator)
    assert none.json() == []


async def test_a_long_poll_returns_as_soon_as_the_next_event_arrives(api, stack):
    execution_id = await start(api, stack, GATE)  # paused at the approval
    last = len(await stack.engine.events.read(execution_id))
    url = f"/api/executions/{execution_id}/events"
    poll = asyncio.create_task(
        api.get(url, params={"after_seq": last, "wait": 20}, headers=stack.auth("viewer"))
    )
    await asyncio.sleep(0)  # the request is waiting
    await stack.engine.decide_approval(f"{execution_id}/review#1", approved=True, decided_by="t")
    response = await asyncio.wait_for(poll, 5)
    assert response.json()[0]["event_type"] == "approval.decided"


async def test_cancel_a_paused_execution_once(api, stack):
    execution_id = await start(api, stack, GATE)
    url = f"/api/executions/{execution_id}/cancel"
    cancelled = await api.post(url, json={"reason": "not today"}, headers=stack.auth("operator"))
    assert cancelled.status_code == 202
    outcome = await stack.engine.wait(execution_id, timeout=5)
    assert outcome.status == "cancelled"
    again = await api.post(url, headers=stack.auth("operator"))
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/conflict"


async def test_unknown_ids_and_bad_input(api, stack):
    operator = stack.auth("operator")
    for method, url in (
        ("GET", "/api/executions/nope"),
        ("GET", "/api/executions/nope/events"),
        ("POST", "/api/executions/nope/cancel"),
    ):
        response = await api.request(method, url, headers=operator)
        assert response.status_code == 404, url
        assert response.json()["type"] == "/problems/not-found"

    missing = await api.post("/api/execute", json={"path": "api/absent"}, headers=operator)
    assert missing.status_code == 404
    path = await register(api, stack, HELLO)
    for body in (
        {"path": path, "workload": [1, 2]},
        {"path": path, "version": 0},
        {"path": path, "priority": "high"},
        {},
    ):
        response = await api.post("/api/execute", json=body, headers=operator)
        assert response.status_code == 422, body
    wrong = await api.get("/api/executions", params={"status": "asleep"}, headers=operator)
    assert wrong.status_code == 422
    assert await stack.engine.events.list_executions() == []
