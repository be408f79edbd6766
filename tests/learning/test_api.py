"""The learning routes and the server-side background indexer, in process: a real engine
on SQLite, the real model, a real local Qdrant, and the typed client over ASGI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from learning.embedder import SentenceEmbedder
from learning.indexer import BackgroundIndexer
from learning.vector_store import IndexLocation
from noetl_agent.api import create_app
from noetl_agent.client import AsyncClient
from noetl_agent.history import History, start_indexing
from noetl_agent.tokens import SqliteTokenStore
from tests.learning import corpus

ROLES = {"viewer": ["viewer"], "operator": ["operator"], "worker": ["worker"]}


@dataclass
class Server:
    engine: Engine
    http: httpx.AsyncClient
    tokens: dict[str, str]
    background: BackgroundIndexer
    runs: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


async def _run(engine: Engine, content: str) -> str:
    entry = await engine.register(content)
    execution_id = await engine.execute(entry.path)
    await engine.wait(execution_id, timeout=30)
    return execution_id


async def _caught_up(engine: Engine, background: BackgroundIndexer) -> None:
    """Wait until the background indexer has indexed the whole log."""
    last = (await engine.events.read_all(0, 100_000))[-1][0]
    async with asyncio.timeout(60):
        while background.last is None or background.last.position < last:
            await asyncio.sleep(0.05)


@pytest.fixture
async def server(
    tmp_path: Path, embedder: SentenceEmbedder, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Server]:
    monkeypatch.setenv("NOETL_INDEXER", "on")
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    store = SqliteTokenStore(db)
    tokens = {name: await store.create(name, "human", roles) for name, roles in ROLES.items()}
    history = History(db.events, db.catalog, IndexLocation.local(tmp_path / "qdrant"))
    background = start_indexing(engine, history, delay=0.05)
    assert background is not None
    app = create_app(engine, store, history=history)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as http:
            runs = {
                "first": await _run(engine, corpus.DB_DOWN),
                "second": await _run(engine, corpus.DB_DOWN),
                "auth": await _run(engine, corpus.AUTH),
            }
            await _caught_up(engine, background)
            yield Server(engine, http, tokens, background, runs)
    finally:
        await background.aclose()
        await engine.aclose()
        db.close()


async def test_the_server_indexes_after_event_batches_and_viewers_search(server: Server) -> None:
    response = await server.http.post(
        "/api/search",
        json={"text": "database connection refused", "kind": "failures", "k": 3},
        headers=server.auth("viewer"),
    )
    assert response.status_code == 200, response.text
    hits = response.json()
    assert hits[0]["playbook_path"] == "etl/load_orders"
    assert hits[0]["execution_id"] in {server.runs["first"], server.runs["second"]}
    assert hits[0]["links"]["execution"] == f"/api/executions/{hits[0]['execution_id']}"

    # A new execution is indexed by the background task without being asked.
    later = await _run(server.engine, corpus.DIVIDE)
    await _caught_up(server.engine, server.background)
    response = await server.http.post(
        "/api/search", json={"text": "division by zero"}, headers=server.auth("viewer")
    )
    assert response.json()[0]["execution_id"] == later


async def test_similar_failures_of_an_execution(server: Server) -> None:
    second = server.runs["second"]
    response = await server.http.get(
        f"/api/executions/{second}/similar", headers=server.auth("viewer")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["failure"]["execution_id"] == second
    assert "Connection refused" in body["failure"]["text"]
    assert body["similar"][0]["execution_id"] == server.runs["first"]

    missing = await server.http.get("/api/executions/nope/similar", headers=server.auth("viewer"))
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"text": "x", "kind": "logs"}, 422, "kind"),
        ({"text": "x", "filters": {"colour": "red"}}, 400, "unknown filter colour"),
        ({"text": ""}, 422, "text"),
        ({"text": "x", "k": 0}, 422, "k"),
    ],
)
async def test_bad_searches_are_refused_with_a_reason(
    server: Server, body: dict[str, object], status: int, words: str
) -> None:
    response = await server.http.post("/api/search", json=body, headers=server.auth("viewer"))
    assert response.status_code == status
    assert words in response.text


async def test_roles(server: Server) -> None:
    search = {"text": "refused"}
    worker = await server.http.post("/api/search", json=search, headers=server.auth("worker"))
    assert worker.status_code == 403
    viewer_index = await server.http.post("/api/index", headers=server.auth("viewer"))
    assert viewer_index.status_code == 403
    operator_index = await server.http.post("/api/index", headers=server.auth("operator"))
    assert operator_index.status_code == 200
    assert operator_index.json()["documents"] == 0  # the background indexer was first


async def test_clusters_and_anomalies_routes(server: Server) -> None:
    clusters = await server.http.get("/api/failures/clusters", headers=server.auth("viewer"))
    assert clusters.status_code == 200
    assert clusters.json()[0]["playbooks"] == {"etl/load_orders": 2}
    anomalies = await server.http.get(
        "/api/steps/anomalies",
        params={"playbook": "etl/load_orders"},
        headers=server.auth("viewer"),
    )
    assert anomalies.status_code == 200
    assert anomalies.json() == []  # two runs are too little history to judge


async def test_the_typed_client_searches(server: Server) -> None:
    async with AsyncClient(token=server.tokens["viewer"], http=server.http) as api:
        hits = await api.search("HTTP 401 token rejected", kind="failures", k=1)
        similar = await api.similar(server.runs["second"], k=1)
    assert hits[0]["execution_id"] == server.runs["auth"]
    assert similar["similar"][0]["execution_id"] == server.runs["first"]


async def test_a_server_without_an_index_answers_503(tmp_path: Path) -> None:
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    tokens = SqliteTokenStore(db)
    secret = await tokens.create("viewer", "human", ["viewer"])
    app = create_app(engine, tokens)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as http:
            response = await http.post(
                "/api/search", json={"text": "x"}, headers={"Authorization": f"Bearer {secret}"}
            )
        assert response.status_code == 503
        assert "no search index" in response.json()["detail"]
    finally:
        await engine.aclose()
        db.close()


async def test_similar_indexes_a_failure_the_index_has_not_seen_yet(
    tmp_path: Path, embedder: SentenceEmbedder
) -> None:
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    tokens = SqliteTokenStore(db)
    secret = await tokens.create("viewer", "human", ["viewer"])
    history = History(db.events, db.catalog, IndexLocation.local(tmp_path / "qdrant"))
    app = create_app(engine, tokens, history=history)  # no background indexer
    try:
        first = await _run(engine, corpus.DB_DOWN_ELSEWHERE)
        await history.index()
        just_failed = await _run(engine, corpus.DB_DOWN)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as http:
            response = await http.get(
                f"/api/executions/{just_failed}/similar",
                headers={"Authorization": f"Bearer {secret}"},
            )
        assert response.status_code == 200, response.text
        assert response.json()["failure"]["execution_id"] == just_failed
        assert response.json()["similar"][0]["execution_id"] == first
    finally:
        await engine.aclose()
        db.close()
