"""`/api/credentials` (admin only, values never answered) and redaction seen through the API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from engine.adapters.credential_store import KEY_ENV, CredentialKey, EncryptedCredentialStore
from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from noetl_agent.api import create_app
from noetl_agent.tokens import SqliteTokenStore
from tests.api.conftest import Stack, register
from tests.echo_server import echo_server
from tests.principals import create_tokens

TOKEN = "tok-api-3c9d-echoed"
PASSWORD = "pw-api-81fe-stored"


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Stack]:
    """The app with an encrypted credential store, which its engine resolves from."""
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    key = CredentialKey(secret=Fernet.generate_key().decode(), source=KEY_ENV)
    store = EncryptedCredentialStore.sqlite(db, key)
    engine = Engine(db.events, db.catalog, credentials=store, lock_dir=tmp_path / "locks")
    tokens = SqliteTokenStore(db)
    secrets = await create_tokens(tokens)
    app = create_app(engine, tokens, credentials=store)
    try:
        yield Stack(app, engine, db, tokens, secrets, tmp_path)
    finally:
        await engine.aclose()
        db.close()


@pytest.fixture
async def client(secured: Stack) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=secured.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as api:
        yield api


@pytest.fixture
def echo() -> Iterator[str]:
    with echo_server() as url:
        yield url


async def test_admin_stores_lists_and_deletes_without_values_coming_back(
    client: httpx.AsyncClient, secured: Stack
) -> None:
    admin = secured.auth("admin")
    body = {"name": "warehouse", "kind": "postgres", "data": {"password": PASSWORD, "port": 5432}}
    stored = await client.post("/api/credentials", json=body, headers=admin)
    assert stored.status_code == 201, stored.text
    assert stored.json() == {"name": "warehouse", "kind": "postgres", "fields": 2}
    await client.post(
        "/api/credentials", json={"name": "api", "data": {"token": TOKEN}}, headers=admin
    )

    listed = await client.get("/api/credentials", headers=admin)
    assert listed.json() == [
        {"name": "api", "kind": "generic"},
        {"name": "warehouse", "kind": "postgres"},
    ]
    deleted = await client.delete("/api/credentials/warehouse", headers=admin)
    assert deleted.status_code == 204 and deleted.content == b""
    again = await client.delete("/api/credentials/warehouse", headers=admin)
    assert again.status_code == 404
    assert again.json()["type"] == "/problems/not-found"
    remaining = await client.get("/api/credentials", headers=admin)
    assert [item["name"] for item in remaining.json()] == ["api"]
    for response in (stored, listed, deleted, again, remaining):
        assert PASSWORD not in response.text and TOKEN not in response.text
    # The OpenAPI document describes the routes, with no way to read a value.
    spec = (await client.get("/openapi.json")).json()
    assert set(spec["paths"]["/api/credentials"]) == {"get", "post"}
    assert set(spec["paths"]["/api/credentials/{name}"]) == {"delete"}


@pytest.mark.parametrize("who", ["viewer", "operator", "approver", "worker"])
async def test_only_admins_manage_credentials(
    client: httpx.AsyncClient, secured: Stack, who: str
) -> None:
    headers = secured.auth(who)
    body = {"name": "x", "data": {"token": TOKEN}}
    for response in (
        await client.post("/api/credentials", json=body, headers=headers),
        await client.get("/api/credentials", headers=headers),
        await client.delete("/api/credentials/x", headers=headers),
    ):
        assert response.status_code == 403, response.text
        assert TOKEN not in response.text
    assert (await client.get("/api/credentials")).status_code == 401


async def test_invalid_requests_are_refused_without_echoing_values(
    client: httpx.AsyncClient, secured: Stack
) -> None:
    admin = secured.auth("admin")
    for body in (
        {"name": "bad name", "data": {"token": TOKEN}},
        {"name": "x", "data": {}},
        {"name": "x", "data": {"token": TOKEN}, "value": TOKEN},
        {"name": "x", "data": TOKEN},
    ):
        response = await client.post("/api/credentials", json=body, headers=admin)
        assert response.status_code == 422, response.text
        assert TOKEN not in response.text
    assert (await client.get("/api/credentials", headers=admin)).json() == []


async def test_without_a_store_the_routes_answer_503(api: httpx.AsyncClient, stack: Stack) -> None:
    response = await api.get("/api/credentials", headers=stack.auth("admin"))
    assert response.status_code == 503
    assert "no credential store" in response.json()["detail"]


ECHO = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: echo, path: api/echo}
workload: {base: ""}
workflow:
  - step: call
    tool: {kind: http, url: "{{ base }}/echo", auth: api}
    next: {arcs: [{step: denied}]}
  - step: denied
    tool: {kind: http, url: "{{ base }}/deny", auth: api}
"""


async def test_events_and_execution_details_never_show_a_secret(
    client: httpx.AsyncClient, secured: Stack, echo: str
) -> None:
    admin = secured.auth("admin")
    created = await client.post(
        "/api/credentials",
        json={"name": "api", "kind": "http", "data": {"token": TOKEN}},
        headers=admin,
    )
    assert created.status_code == 201
    path = await register(client, secured, ECHO)
    started = await client.post(
        "/api/execute", json={"path": path, "workload": {"base": echo}}, headers=admin
    )
    assert started.status_code == 202, started.text
    execution_id = started.json()["execution_id"]
    outcome = await secured.engine.wait(execution_id, timeout=30)
    assert outcome.status == "failed"

    events = await client.get(f"/api/executions/{execution_id}/events", headers=admin)
    details = await client.get(f"/api/executions/{execution_id}", headers=admin)
    listing = await client.get("/api/executions", headers=admin)
    for response in (events, details, listing):
        assert response.status_code == 200, response.text
        assert TOKEN not in response.text
    processed = [e for e in events.json() if e["event_type"] == "tool.processed"]
    assert processed[0]["payload"]["output"]["json"]["authorization"] == "Bearer ***"
    assert "refused: Bearer *** is not valid here" in json.dumps(details.json())
