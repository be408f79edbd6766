"""Who may call what: every role against every endpoint, and requests without a token."""

from __future__ import annotations

import pytest

from tests.api.conftest import HELLO, PRINCIPALS

EVENT = {
    "event_id": "x:1",
    "event_type": "tool.started",
    "execution_id": "x",
    "timestamp": "2024-01-01T00:00:00Z",
}
# (method, url, body, who may call it)
ENDPOINTS = [
    ("GET", "/api/catalog", None, "viewer"),
    ("GET", "/api/catalog/api/hello", None, "viewer"),
    ("POST", "/api/catalog/register", {"content": HELLO}, "operator"),
    ("POST", "/api/execute", {"path": "api/absent"}, "operator"),
    ("GET", "/api/executions", None, "viewer"),
    ("GET", "/api/executions/x", None, "viewer"),
    ("GET", "/api/executions/x/events", None, "viewer"),
    ("POST", "/api/executions/x/cancel", None, "operator"),
    ("POST", "/api/events", EVENT, "worker"),
    ("POST", "/api/events/batch", {"events": [EVENT]}, "worker"),
    ("GET", "/api/approvals", None, "viewer"),
    ("POST", "/api/approvals/x/review%231/decision", {"approved": True}, "human approver"),
]
ALLOWED = {
    "viewer": {"viewer", "approver", "agent-approver", "operator", "admin", "agent-admin"},
    "operator": {"operator", "admin", "agent-admin"},
    "worker": {"worker", "admin", "agent-admin"},
    "human approver": {"approver", "admin"},
}
MATRIX = [(endpoint, who) for endpoint in ENDPOINTS for who in PRINCIPALS]


def test_every_principal_and_requirement_is_covered():
    assert set(ALLOWED) == {needs for *_, needs in ENDPOINTS}
    assert all(group <= set(PRINCIPALS) for group in ALLOWED.values())


@pytest.mark.parametrize(
    ("endpoint", "who"), MATRIX, ids=[f"{e[0]} {e[1]} as {w}" for e, w in MATRIX]
)
async def test_role_matrix(api, stack, endpoint, who):
    method, url, body, needs = endpoint
    response = await api.request(method, url, json=body, headers=stack.auth(who))
    if who in ALLOWED[needs]:
        # Allowed: whatever the outcome for these made-up ids, it is not a refusal.
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403, response.text
        assert response.json()["type"] == "/problems/forbidden"
        detail = response.json()["detail"]
        assert f"needs the {needs.split()[-1]} role" in detail or "only a human" in detail


@pytest.mark.parametrize(("method", "url", "body", "_"), ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
async def test_no_token_or_a_bad_token_is_401(api, stack, method, url, body, _):
    missing = await api.request(method, url, json=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["type"] == "/problems/unauthorized"
    for header in ("Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer "):
        bad = await api.request(method, url, json=body, headers={"Authorization": header})
        assert bad.status_code == 401, header
        assert bad.headers["www-authenticate"].startswith("Bearer")


async def test_probes_and_docs_need_no_token(api):
    for url in ("/health", "/metrics", "/docs", "/openapi.json"):
        assert (await api.get(url)).status_code == 200, url


async def test_nothing_is_written_by_a_refused_request(api, stack):
    refused = await api.post(
        "/api/catalog/register", json={"content": HELLO}, headers=stack.auth("viewer")
    )
    assert refused.status_code == 403
    assert await stack.engine.catalog.list() == []
