"""The explanation routes and the typed client, in process over ASGI: a real engine on
SQLite, a real search index and tokens of each kind of principal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from engine.errors import NotFound
from noetl_agent.api import create_app
from noetl_agent.client import AsyncClient
from noetl_agent.errors import Forbidden
from noetl_agent.tokens import SqliteTokenStore
from tests.explain.conftest import World
from tests.explain.playbooks import API_KEY, ENRICH_BROKEN, MERGE_CONTACTS, SECRET, WORKS

PRINCIPALS = {
    "viewer": ("human", ["viewer"]),
    "agent": ("agent", ["viewer"]),
    "operator": ("human", ["operator"]),
    "worker": ("agent", ["worker"]),
}


@dataclass
class Served:
    world: World
    http: httpx.AsyncClient
    tokens: dict[str, str]
    failed: str
    done: str

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def client(self, who: str) -> AsyncClient:
        return AsyncClient(token=self.tokens[who], http=self.http)


@pytest.fixture
async def served(world: World) -> AsyncIterator[Served]:
    store = SqliteTokenStore(world.db)
    tokens = {
        name: await store.create(name, kind, roles) for name, (kind, roles) in PRINCIPALS.items()
    }
    await world.run("enrich", ENRICH_BROKEN)
    await world.run("enrich", ENRICH_BROKEN)
    failed = await world.run("merge", MERGE_CONTACTS)
    done = await world.run("ok", WORKS)
    await world.history.index()
    app = create_app(world.engine, store, history=world.history)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as http:
        yield Served(world, http, tokens, failed, done)


async def test_viewers_and_agents_get_the_explanation(served: Served) -> None:
    for who in ("viewer", "agent"):
        response = await served.http.post(
            f"/api/executions/{served.failed}/explain", headers=served.auth(who)
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["failed"] is True
        assert body["root_cause"]["id"] == "input_shape"
        assert {item["execution_id"] for item in body["similar"][:2]} == set(
            served.world.runs["enrich"]
        )
        assert SECRET not in response.text and API_KEY not in response.text
    # The same answer as the service gives.
    direct = (await served.world.explainer.explain(served.failed)).to_dict()
    assert direct["causes"] == body["causes"]
    assert direct["failure"] == body["failure"]


async def test_explaining_what_did_not_fail_or_does_not_exist(served: Served) -> None:
    response = await served.http.post(
        f"/api/executions/{served.done}/explain", headers=served.auth("viewer")
    )
    assert response.status_code == 200
    assert response.json()["failed"] is False
    assert "did not fail" in response.json()["summary"]

    missing = await served.http.post("/api/executions/nope/explain", headers=served.auth("viewer"))
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert "nope" in missing.json()["detail"]


async def test_operators_record_feedback_that_later_explanations_show(served: Served) -> None:
    url = f"/api/executions/{served.failed}/feedback"
    refused = await served.http.post(url, json={"helpful": True}, headers=served.auth("viewer"))
    assert refused.status_code == 403
    assert "operator" in refused.json()["detail"]
    bad = await served.http.post(url, json={"useful": True}, headers=served.auth("operator"))
    assert bad.status_code == 422

    response = await served.http.post(
        url,
        json={"helpful": False, "comment": "the key was there; the source was stale"},
        headers=served.auth("operator"),
    )

    assert response.status_code == 201, response.text
    recorded = response.json()
    assert recorded["helpful"] is False
    assert recorded["cause"] == "input_shape"
    assert recorded["principal"] == "operator"
    explained = await served.http.post(
        f"/api/executions/{served.failed}/explain", headers=served.auth("viewer")
    )
    (shown,) = explained.json()["feedback"]
    assert shown["comment"] == "the key was there; the source was stale"
    events = await served.http.get(
        f"/api/executions/{served.failed}/events", headers=served.auth("viewer")
    )
    assert "feedback.recorded" in [event["event_type"] for event in events.json()]


async def test_the_client_explains_and_records_feedback(served: Served) -> None:
    async with served.client("agent") as agent, served.client("operator") as operator:
        answer = await agent.explain(served.failed)
        assert answer["root_cause"]["id"] == "input_shape"
        with pytest.raises(NotFound):
            await agent.explain("nope")
        with pytest.raises(Forbidden):
            await agent.feedback(served.failed, helpful=True)

        recorded = await operator.feedback(
            served.failed, helpful=True, comment="spot on", cause="input_shape"
        )

    assert recorded["cause"] == "input_shape" and recorded["helpful"] is True
    again = await served.world.explainer.explain(served.failed)
    assert [f.comment for f in again.feedback] == ["spot on"]
    assert json.dumps(answer["failure"]["workload"]).count("***") == 2
