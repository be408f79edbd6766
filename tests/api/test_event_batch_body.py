"""POST /api/events/batch reads its body in one pass; bad bodies get the same problem
documents as every other route, and the body is still documented in OpenAPI."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import HELLO


def _event(execution_id: str, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"{execution_id}:start#1:{n}:start",
        "event_type": "tool.started",
        "execution_id": execution_id,
        "timestamp": "2026-12-01T00:00:00.000000Z",
        "step_run_id": "start#1",
        **fields,
    }


async def test_malformed_empty_and_mistyped_batches_are_refused(api, stack):
    worker = stack.auth("worker") | {"content-type": "application/json"}
    malformed = await api.post("/api/events/batch", content=b'{"events": [', headers=worker)
    assert malformed.status_code == 400
    assert malformed.json()["type"] == "/problems/malformed-json"
    assert "not valid JSON" in malformed.json()["detail"]

    empty = await api.post("/api/events/batch", content=b"", headers=worker)
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["location"] == "body"

    for body, location in (
        ({}, "body.events"),
        ({"events": []}, "body.events"),
        ({"events": [_event("e1", 1, event_type="step.started")]}, "body.events.0.event_type"),
        ({"events": [_event("e1", 1, colour="red")]}, "body.events.0.colour"),
        ({"events": [_event("e1", 1)], "extra": 1}, "body.extra"),
    ):
        response = await api.post("/api/events/batch", json=body, headers=worker)
        assert response.status_code == 422, body
        problem = response.json()
        assert problem["type"] == "/problems/invalid-request"
        assert problem["errors"][0]["location"] == location, problem


async def test_the_role_is_checked_before_the_body(api, stack):
    viewer = stack.auth("viewer") | {"content-type": "application/json"}
    response = await api.post("/api/events/batch", content=b"{not json", headers=viewer)
    assert response.status_code == 403


async def test_a_valid_batch_is_stored_and_the_body_is_documented(api, stack):
    admin = stack.auth("admin")
    assert (
        await api.post("/api/catalog/register", json={"content": HELLO}, headers=admin)
    ).is_success
    started = await api.post("/api/execute", json={"path": "api/hello"}, headers=admin)
    execution_id = started.json()["execution_id"]
    partial = {"event_type": "tool.processed", "status": "success", "payload": {"partial": True}}
    batch = {"events": [_event(execution_id, 1), _event(execution_id, 2, **partial)]}
    response = await api.post("/api/events/batch", json=batch, headers=stack.auth("worker"))
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 2}
    stored = {e.event_id for e in await stack.engine.events.read(execution_id)}
    assert {event["event_id"] for event in batch["events"]} <= stored

    spec = (await api.get("/openapi.json")).json()
    body = spec["paths"]["/api/events/batch"]["post"]["requestBody"]["content"]
    events = body["application/json"]["schema"]["properties"]["events"]
    assert events["items"] == {"$ref": "#/components/schemas/EventIn"}
    assert "EventIn" in spec["components"]["schemas"]
