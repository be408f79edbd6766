"""A caller without the route's role gets 403 before the route opens any store: a
refused request never touches the analytics store or depends on its being there."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from noetl_agent.api import create_app
from noetl_agent.tokens import SqliteTokenStore


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/analytics/export", {}),
        ("GET", "/api/credentials", None),
        ("POST", "/api/index", None),
    ],
)
async def test_a_refused_caller_gets_403_even_when_the_store_is_down(
    method: str, path: str, body: dict[str, object] | None, tmp_path: Path, monkeypatch
) -> None:
    # Unreachable analytics, and neither a credential store nor a search index: an
    # allowed caller would get 503 from each of these routes.
    monkeypatch.setenv("NOETL_CLICKHOUSE_URL", "http://reader:pw@127.0.0.1:9/")
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    tokens = SqliteTokenStore(db)
    viewer = {"Authorization": f"Bearer {await tokens.create('v', 'human', ['viewer'])}"}
    transport = httpx.ASGITransport(app=create_app(engine, tokens))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as api:
            answer = await api.request(method, path, json=body, headers=viewer)
    finally:
        await engine.aclose()
        db.close()
    assert answer.status_code == 403, answer.text
    assert answer.json()["type"] == "/problems/forbidden"
