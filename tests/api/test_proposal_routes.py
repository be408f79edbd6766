"""The review queue over HTTP: submit, read, decide (RFC 9457 problems for every refusal),
suggest from past runs, and the Python client's proposal methods."""

from __future__ import annotations

import httpx
import pytest

from engine.errors import Conflict, NotFound, PlaybookInvalid
from noetl_agent.client import AsyncClient
from noetl_agent.errors import Forbidden
from tests.api.conftest import HELLO, register, run_times
from tests.flaky_service import alternating_service

PATCH = [{"op": "replace", "path": "/workload/n", "value": 5}]
FLAKY = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: flaky, path: api/flaky}
workload: {base: ""}
workflow:
  - step: fetch
    tool: {kind: http, url: "{{ base }}/data"}
"""


def _body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "playbook": "api/hello",
        "step": "start",
        "kind": "timeout",
        "patch": PATCH,
        "rationale": "five is the right number",
    }
    return body | changes


async def _submit(api, stack, who: str = "operator", **changes: object) -> dict:
    response = await api.post("/api/proposals", json=_body(**changes), headers=stack.auth(who))
    assert response.status_code == 201, response.text
    return response.json()


async def test_submit_read_and_approve_a_proposal(api, stack):
    await register(api, stack, HELLO)
    made = await _submit(api, stack)
    assert made["id"].startswith("p-") and made["id"].endswith("-1")
    assert made["target"] == {"playbook": "api/hello", "version": 1, "step": "start"}
    assert (made["kind"], made["patch"], made["status"]) == ("timeout", PATCH, "pending")
    assert made["proposed_by"] == {"name": "operator", "kind": "agent"}
    assert made["evidence"] == {"source": "hand-written", "submitted_by": "operator"}
    assert " workload:\n-  n: 1\n+  n: 5\n" in made["diff"]
    assert (made["quorum"], made["decisions"], made["applied_version"]) == (1, [], None)
    assert made["expires_at"] > made["created_at"]

    viewer = stack.auth("viewer")
    assert (await api.get(f"/api/proposals/{made['id']}", headers=viewer)).json() == made
    assert [p["id"] for p in (await api.get("/api/proposals", headers=viewer)).json()] == [
        made["id"]
    ]
    pending = await api.get("/api/proposals", params={"status": "pending"}, headers=viewer)
    assert len(pending.json()) == 1
    applied = await api.get("/api/proposals", params={"status": "applied"}, headers=viewer)
    assert applied.json() == []

    url = f"/api/proposals/{made['id']}/decision"
    decided = await api.post(
        url, json={"approved": True, "comment": "ship"}, headers=stack.auth("approver")
    )
    assert decided.status_code == 200, decided.text
    result = decided.json()
    assert (result["status"], result["applied_version"]) == ("applied", 2)
    assert result["decisions"][0]["decided_by"] == "approver"
    entry = await api.get("/api/catalog/api/hello", headers=viewer)
    assert entry.json()["version"] == 2 and "n: 5" in entry.json()["content"]
    started = await api.post(
        "/api/execute", json={"path": "api/hello"}, headers=stack.auth("admin")
    )
    outcome = await stack.engine.wait(started.json()["execution_id"], timeout=10)
    assert outcome.result == {"n": 5}  # the next run uses the new version

    twice = await api.post(url, json={"approved": True}, headers=stack.auth("admin"))
    assert twice.status_code == 409
    assert twice.json()["type"] == "/problems/conflict"
    assert "already decided (applied)" in twice.json()["detail"]


async def test_refusals_are_problem_documents(api, stack):
    await register(api, stack, HELLO)
    own = await _submit(api, stack, "admin")
    url = f"/api/proposals/{own['id']}/decision"
    refused = await api.post(url, json={"approved": True}, headers=stack.auth("admin"))
    assert refused.status_code == 403
    assert "it proposed it" in refused.json()["detail"]
    agent = await api.post(url, json={"approved": True}, headers=stack.auth("agent-approver"))
    assert agent.status_code == 403 and "only a human approver" in agent.json()["detail"]

    no_comment = await api.post(url, json={"approved": False}, headers=stack.auth("approver"))
    assert no_comment.status_code == 422
    assert "rejection needs a comment" in no_comment.json()["detail"]
    missing = await api.post(
        "/api/proposals/p-unknown-1/decision",
        json={"approved": True},
        headers=stack.auth("approver"),
    )
    assert missing.status_code == 404 and missing.json()["type"] == "/problems/not-found"
    unknown = await api.get("/api/proposals/p-unknown-1", headers=stack.auth("viewer"))
    assert unknown.status_code == 404

    duplicate = await api.post("/api/proposals", json=_body(), headers=stack.auth("operator"))
    assert duplicate.status_code == 409 and own["id"] in duplicate.json()["detail"]
    bad_patch = await api.post(
        "/api/proposals",
        json=_body(patch=[{"op": "remove", "path": "/workflow/3"}]),
        headers=stack.auth("operator"),
    )
    assert bad_patch.status_code == 422
    problem = bad_patch.json()
    assert problem["type"] == "/problems/playbook-invalid"
    assert "index 3 is out of range" in problem["issues"][0]["message"]
    for body in (_body(kind="magic"), _body(patch=[]), _body(rationale=""), _body(extra=1)):
        answer = await api.post("/api/proposals", json=body, headers=stack.auth("operator"))
        assert answer.status_code == 422, body
    no_playbook = await api.post(
        "/api/proposals", json=_body(playbook="api/none"), headers=stack.auth("operator")
    )
    assert no_playbook.status_code == 404
    bad_status = await api.get(
        "/api/proposals", params={"status": "maybe"}, headers=stack.auth("viewer")
    )
    assert bad_status.status_code == 422

    rejected = await api.post(
        url, json={"approved": False, "comment": "no"}, headers=stack.auth("approver")
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert (await api.get("/api/catalog/api/hello", headers=stack.auth("viewer"))).json()[
        "version"
    ] == 1


async def test_a_stale_proposal_is_refused_with_409(api, stack):
    await register(api, stack, HELLO)
    made = await _submit(api, stack)
    await register(api, stack, HELLO.replace("n: 1", "n: 2"))
    shown = await api.get(f"/api/proposals/{made['id']}", headers=stack.auth("viewer"))
    assert shown.json()["status"] == "stale"
    refused = await api.post(
        f"/api/proposals/{made['id']}/decision",
        json={"approved": True},
        headers=stack.auth("approver"),
    )
    assert refused.status_code == 409
    assert "no longer the latest; suggest again" in refused.json()["detail"]


async def test_suggest_raises_proposals_from_past_runs(api, stack):
    path = await register(api, stack, FLAKY)
    with alternating_service() as base:  # every other request answers 503
        await run_times(api, stack, path, {"base": base}, 20)

    viewer = await api.post("/api/proposals/suggest", headers=stack.auth("viewer"))
    assert viewer.status_code == 403
    answer = await api.post(
        "/api/proposals/suggest", json={"playbook": path}, headers=stack.auth("operator")
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert set(report) == {"proposed", "pending", "suppressed", "evaluated"}
    [proposal] = report["proposed"]
    assert proposal["kind"] == "retry"
    assert proposal["target"] == {"playbook": path, "version": 1, "step": "fetch"}
    assert proposal["proposed_by"]["name"] == "learner:retry"
    assert proposal["requested_by"] == {"name": "operator", "kind": "agent"}
    assert proposal["evidence"]["similar_failures"] == {
        "available": False,
        "reason": "this stack has no search index",
    }
    assert "http_503" in proposal["rationale"]
    again = (await api.post("/api/proposals/suggest", headers=stack.auth("agent-admin"))).json()
    assert again["proposed"] == [] and [p["id"] for p in again["pending"]] == [proposal["id"]]
    unknown = await api.post(
        "/api/proposals/suggest", json={"playbook": "api/none"}, headers=stack.auth("operator")
    )
    assert unknown.status_code == 404


def _client(stack, who: str) -> AsyncClient:
    transport = httpx.ASGITransport(app=stack.app)
    return AsyncClient("http://noetl.test", stack.secrets[who], transport=transport)


async def test_the_python_client(stack):
    async with _client(stack, "admin") as admin, _client(stack, "operator") as operator:
        await admin.register(HELLO)
        made = await operator.submit_proposal(
            "api/hello", kind="timeout", patch=PATCH, rationale="why not", step="start"
        )
        assert made["status"] == "pending"
        assert [p["id"] for p in await admin.proposals()] == [made["id"]]
        assert await admin.proposals("rejected") == []
        assert (await admin.proposal(made["id"]))["diff"] == made["diff"]
        with pytest.raises(Forbidden, match="only a human approver"):
            await operator.decide_proposal(made["id"], approved=True)
        with pytest.raises(PlaybookInvalid):
            await operator.submit_proposal(
                "api/hello", kind="timeout", patch=[{"op": "remove", "path": "/x"}], rationale="x"
            )
        with pytest.raises(Conflict):
            await operator.submit_proposal(
                "api/hello", kind="timeout", patch=PATCH, rationale="y", step="start"
            )
        with pytest.raises(NotFound):
            await admin.proposal("p-none-1")
        decided = await admin.decide_proposal(made["id"], approved=True, comment="ok")
        assert decided["status"] == "applied" and decided["applied_version"] == 2
        report = await operator.suggest_proposals()
        assert report["proposed"] == []
