"""The analytics routes: GET /api/stats/steps, POST /api/analytics/query and /export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from learning.analytics.service import Analytics
from learning.analytics.store import ClickHouseStore
from noetl_agent.api import create_app
from noetl_agent.tokens import SqliteTokenStore
from tests.learning.analytics.history import OK, TIMEOUT, History, http


@dataclass
class Api:
    client: httpx.AsyncClient
    db: SqliteDatabase
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    store = ClickHouseStore.embedded(tmp_path / "analytics")
    tokens = SqliteTokenStore(db)
    secrets = {
        "viewer": await tokens.create("viewer", "human", ["viewer"]),
        "operator": await tokens.create("operator", "agent", ["operator"]),
    }
    app = create_app(engine, tokens)
    app.state.analytics = Analytics(db.events, store)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as client:
            yield Api(client, db, secrets)
    finally:
        store.close()
        await engine.aclose()
        db.close()


async def _history(api: Api) -> None:
    for index, outcomes in enumerate([[http(503), OK], [OK], [TIMEOUT, TIMEOUT]]):
        history = History(f"exec-{index}")
        history.step("fetch", outcomes, pool="gpu" if index else "cpu")
        await api.db.events.append(history.events)


async def test_step_statistics_are_served_to_a_viewer(api: Api) -> None:
    await _history(api)
    response = await api.client.get(
        "/api/stats/steps",
        params={"playbook": "shop/orders", "step": "fetch"},
        headers=api.auth("viewer"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    (fetch,) = body["steps"]
    assert (fetch["runs"], fetch["failed"], fetch["failure_rate"]) == (3, 1, round(1 / 3, 6))
    assert {e["error_class"] for e in fetch["errors"]} == {"http_503", "timeout"}
    assert sorted(p["pool"] for p in fetch["pools"]) == ["cpu", "gpu"]

    every = await api.client.get(
        "/api/stats/steps", params={"playbook": "shop/orders"}, headers=api.auth("viewer")
    )
    assert [s["step"] for s in every.json()["steps"]] == ["fetch"]
    anonymous = await api.client.get("/api/stats/steps", params={"playbook": "shop/orders"})
    assert anonymous.status_code == 401


async def test_read_only_sql_and_its_refusals(api: Api) -> None:
    await _history(api)
    ok = await api.client.post(
        "/api/analytics/query",
        json={"sql": "SELECT count() AS n FROM events WHERE event_type = 'step.finished'"},
        headers=api.auth("viewer"),
    )
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"columns": ["n"], "types": ["uint64"], "rows": [[3]], "row_count": 1}

    refused = await api.client.post(
        "/api/analytics/query",
        json={"sql": "SELECT * FROM url('http://127.0.0.1:9/', CSV)"},
        headers=api.auth("viewer"),
    )
    assert refused.status_code == 400
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "table function `url` is not allowed" in refused.json()["detail"]

    limited = await api.client.post(
        "/api/analytics/query",
        json={"sql": "SELECT number FROM numbers(50)", "max_rows": 5},
        headers=api.auth("viewer"),
    )
    assert limited.status_code == 400 and "limit" in limited.json()["detail"]
    unknown_field = await api.client.post(
        "/api/analytics/query", json={"sql": "SELECT 1", "rows": 5}, headers=api.auth("viewer")
    )
    assert unknown_field.status_code == 422


async def test_export_needs_an_operator(api: Api) -> None:
    await _history(api)
    denied = await api.client.post("/api/analytics/export", headers=api.auth("viewer"))
    assert denied.status_code == 403
    done = await api.client.post("/api/analytics/export", headers=api.auth("operator"))
    assert done.status_code == 200, done.text
    assert done.json()["exported"] > 0
    again = await api.client.post(
        "/api/analytics/export", json={"full": True}, headers=api.auth("operator")
    )
    assert again.json()["exported"] == 0


async def test_each_request_opens_the_store_beside_the_event_log_and_closes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOETL_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("NOETL_CLICKHOUSE_URL", "http://reader:pw-never-shown@127.0.0.1:9/")
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    tokens = SqliteTokenStore(db)
    viewer = {"Authorization": f"Bearer {await tokens.create('v', 'human', ['viewer'])}"}
    transport = httpx.ASGITransport(app=create_app(engine, tokens))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as client:
            down = await client.post(
                "/api/analytics/query", json={"sql": "SELECT 1"}, headers=viewer
            )
            assert down.status_code == 503
            assert "pw-never-shown" not in down.text
            assert "NOETL_CLICKHOUSE_URL" in down.json()["detail"]

            monkeypatch.delenv("NOETL_CLICKHOUSE_URL")
            up = await client.post(
                "/api/analytics/query", json={"sql": "SELECT 1 AS one"}, headers=viewer
            )
            assert up.status_code == 200, up.text
            assert up.json()["rows"] == [[1]]
    finally:
        await engine.aclose()
        db.close()
    assert (tmp_path / "analytics").is_dir()  # beside noetl.db, not under NOETL_HOME
    assert not (tmp_path / "elsewhere").exists()
    # Closed after the request: chDB opens another folder only when none is open.
    other = ClickHouseStore.embedded(tmp_path / "other")
    other.close()
