"""GET /api/approvals and POST /api/approvals/{id}/decision: only a human approver decides."""

from __future__ import annotations

from tests.api.conftest import GATE, start


async def test_a_human_approver_decides_and_the_execution_goes_on(api, stack):
    execution_id = await start(api, stack, GATE)
    approval_id = f"{execution_id}/review#1"
    pending = await api.get("/api/approvals", headers=stack.auth("viewer"))
    assert pending.status_code == 200
    assert [(a["approval_id"], a["step"], a["prompt"]) for a in pending.json()] == [
        (approval_id, "review", "Ship it?")
    ]

    url = f"/api/approvals/{execution_id}/review%231/decision"
    decided = await api.post(
        url, json={"approved": True, "comment": "go"}, headers=stack.auth("approver")
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["approval_id"] == approval_id
    assert decided.json()["decided_by"] == "approver"
    outcome = await stack.engine.wait(execution_id, timeout=5)
    assert outcome.status == "completed"
    assert outcome.result == {"shipped": True, "comment": "go"}
    assert (await api.get("/api/approvals", headers=stack.auth("viewer"))).json() == []

    twice = await api.post(url, json={"approved": False}, headers=stack.auth("admin"))
    assert twice.status_code == 409
    assert "already decided" in twice.json()["detail"]


async def test_agents_cannot_decide_even_with_the_role(api, stack):
    execution_id = await start(api, stack, GATE)
    url = f"/api/approvals/{execution_id}/review%231/decision"
    for who in ("agent-approver", "agent-admin", "operator"):
        refused = await api.post(url, json={"approved": True}, headers=stack.auth(who))
        assert refused.status_code == 403, who
        assert refused.json()["type"] == "/problems/forbidden"
    agent = await api.post(url, json={"approved": True}, headers=stack.auth("agent-approver"))
    assert "only a human approver" in agent.json()["detail"]
    assert len((await api.get("/api/approvals", headers=stack.auth("viewer"))).json()) == 1
    events = await stack.engine.events.read(execution_id)
    assert "approval.decided" not in [e.event_type for e in events]


async def test_unknown_approvals_and_bad_decisions(api, stack):
    execution_id = await start(api, stack, GATE)
    admin = stack.auth("admin")
    for url in (
        "/api/approvals/nope/review%231/decision",
        f"/api/approvals/{execution_id}/start%231/decision",
        "/api/approvals/no-slash/decision",
    ):
        response = await api.post(url, json={"approved": True}, headers=admin)
        assert response.status_code == 404, url
    url = f"/api/approvals/{execution_id}/review%231/decision"
    for body in ({"approved": "yes"}, {}, {"approved": True, "why": "x"}):
        response = await api.post(url, json=body, headers=admin)
        assert response.status_code == 422, body
    assert len((await api.get("/api/approvals", headers=admin)).json()) == 1
