"""Fixtures for generation: a local HTTP service that counts the requests it gets, an
embedded engine with the draft gate, and the API app over it."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypedDict

import httpx
import pytest

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from noetl_agent.api import create_app
from noetl_agent.generation.gate import install_draft_gate
from noetl_agent.tokens import SqliteTokenStore


class Item(TypedDict):
    name: str
    price: float


ITEMS: list[Item] = [{"name": "tea", "price": 4.0}, {"name": "cake", "price": 8.0}]


@dataclass
class Service:
    """A local HTTP service: ``GET /items`` answers ``ITEMS``; every request is counted."""

    url: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def service() -> Iterator[Service]:
    counted = Service("")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            counted.requests.append(f"{self.command} {self.path}")
            body = json.dumps(ITEMS if self.path.startswith("/items") else {"ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    counted.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield counted
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
async def gated_engine(tmp_path: Path) -> AsyncIterator[Engine]:
    """An embedded engine on a fresh SQLite file that refuses unpromoted drafts."""
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    install_draft_gate(engine)
    try:
        yield engine
    finally:
        await engine.aclose()
        db.close()


@dataclass
class App:
    api: httpx.AsyncClient
    engine: Engine
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    store = SqliteTokenStore(db)
    tokens = {
        "viewer": await store.create("viewer", "human", ["viewer"]),
        "agent": await store.create("agent", "agent", ["operator"]),
        "human": await store.create("ada", "human", ["operator"]),
    }
    transport = httpx.ASGITransport(app=create_app(engine, store))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as api:
            yield App(api, engine, tokens)
    finally:
        await engine.aclose()
        db.close()
