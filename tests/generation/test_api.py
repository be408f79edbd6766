"""``POST /api/generate``: operators (agents too) get a draft with its report; a
registered draft that runs code is refused by ``POST /api/execute`` until promoted."""

from __future__ import annotations

from tests.generation.conftest import App, Service


async def test_an_agent_generates_and_registers_a_draft(app: App, service: Service) -> None:
    answer = await app.api.post(
        "/api/generate",
        json={
            "description": f"Fetch {service.url}/items and sort them by price descending",
            "constraints": {"examples": 0, "name": "sorted_items"},
            "register": True,
        },
        headers=app.auth("agent"),
    )
    assert answer.status_code == 200, answer.text
    draft = answer.json()
    assert draft["valid"] and draft["dry_run"]["passed"] and draft["generator"] == "offline"
    assert draft["registered"] == {"path": "generated/sorted_items", "version": 1}
    assert draft["gate"]["gated"] and draft["gate"]["code_tools"] == ["python"]
    assert service.requests == []

    refused = await app.api.post(
        "/api/execute", json={"path": "generated/sorted_items"}, headers=app.auth("agent")
    )
    assert refused.status_code == 403
    assert refused.json()["type"] == "/problems/forbidden"
    assert "promote" in refused.json()["detail"]

    by_agent = await app.api.post(
        "/api/generate/promote",
        json={"path": "generated/sorted_items"},
        headers=app.auth("agent"),
    )
    assert by_agent.status_code == 403
    assert "only a human operator" in by_agent.json()["detail"]
    promoted = await app.api.post(
        "/api/generate/promote",
        json={"path": "generated/sorted_items", "comment": "reviewed"},
        headers=app.auth("human"),
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["promoted_by"] == "ada" and not promoted.json()["blocked"]
    started = await app.api.post(
        "/api/execute", json={"path": "generated/sorted_items"}, headers=app.auth("agent")
    )
    assert started.status_code == 202, started.text
    outcome = await app.engine.wait(started.json()["execution_id"], timeout=30)
    assert outcome.status == "completed"
    assert [row["price"] for row in outcome.result["rows"]] == [8.0, 4.0]


async def test_viewers_cannot_generate(app: App) -> None:
    answer = await app.api.post(
        "/api/generate", json={"description": "Fetch https://x.test/a"}, headers=app.auth("viewer")
    )
    assert answer.status_code == 403
    assert "needs the operator role" in answer.json()["detail"]


async def test_bad_requests_say_what_to_fix(app: App) -> None:
    unknown = await app.api.post(
        "/api/generate",
        json={"description": "Fetch https://x.test/a", "constraints": {"kinds": ["telnet"]}},
        headers=app.auth("agent"),
    )
    assert unknown.status_code == 422
    blank = await app.api.post(
        "/api/generate", json={"description": "   "}, headers=app.auth("agent")
    )
    assert blank.status_code == 400
    assert "description is empty" in blank.json()["detail"]


async def test_the_client_generates_through_the_api(app: App) -> None:
    from noetl_agent.client import AsyncClient

    client = AsyncClient("http://noetl.test", app.tokens["agent"], http=app.api)
    draft = await client.generate(
        "Query the orders table in postgres using credential shop", {"examples": 0}
    )
    assert draft["valid"] and draft["dry_run"]["passed"]
    assert "auth: shop" in draft["yaml"]
    assert any("credentials set shop" in note for note in draft["notes"])


async def test_a_draft_is_promoted_by_content_through_the_client(app: App) -> None:
    from noetl_agent.client import AsyncClient

    # both share the fixture's HTTP client, which the fixture closes
    agent = AsyncClient("http://noetl.test", app.tokens["agent"], http=app.api)
    human = AsyncClient("http://noetl.test", app.tokens["human"], http=app.api)
    draft = await agent.generate(
        "Fetch https://x.example.com/a and count the items", {"examples": 0}
    )
    assert draft["gate"]["gated"]
    status = await human.promote(content=draft["yaml"])
    assert status["fingerprint"] == draft["gate"]["fingerprint"]
    assert status["promoted_by"] == "ada"
    unknown = await app.api.post(
        "/api/generate/promote",
        json={"content": draft["yaml"].replace("count", "total")},
        headers=app.auth("human"),
    )
    assert unknown.status_code == 404 and "not a generated draft" in unknown.json()["detail"]
    both = await app.api.post(
        "/api/generate/promote",
        json={"content": draft["yaml"], "path": "x"},
        headers=app.auth("human"),
    )
    assert both.status_code == 400
