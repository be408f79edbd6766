"""Fixtures for the HTTP API: the app in process over a fresh SQLite file, one token per
kind of principal, and an httpx client that talks to the app through ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from noetl_agent.api import create_app
from noetl_agent.tokens import SqliteTokenStore
from tests.principals import create_tokens

HELLO = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: hello, path: api/hello}
workload: {n: 1}
workflow:
  - step: start
    tool: {kind: noop, input: {n: "{{ n }}"}}
"""

GATE = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: gate, path: api/gate}
workflow:
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: review}]}
  - step: review
    tool: {kind: approval, prompt: "Ship it?"}
    next:
      arcs:
        - {step: ship, when: "{{ review.approved }}"}
        - {step: drop}
  - step: ship
    tool: {kind: noop, input: {shipped: true, comment: "{{ review.comment }}"}}
  - step: drop
    tool: {kind: noop, input: {shipped: false}}
"""

INVALID = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: broken, path: api/broken}
workflow:
  - step: start
    nxet: end
    tool: {kind: noop}
"""


@dataclass
class Stack:
    """The app and what it runs on."""

    app: FastAPI
    engine: Engine
    db: SqliteDatabase
    tokens: SqliteTokenStore
    secrets: dict[str, str]  # principal name → raw token
    home: Path

    def auth(self, who: str) -> dict[str, str]:
        """The Authorization header of principal ``who``."""
        return {"Authorization": f"Bearer {self.secrets[who]}"}


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    tokens = SqliteTokenStore(db)
    secrets = await create_tokens(tokens)
    try:
        yield Stack(create_app(engine, tokens), engine, db, tokens, secrets, tmp_path)
    finally:
        await engine.aclose()
        db.close()


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the in-process app (no token: pass ``headers=stack.auth(...)``)."""
    transport = httpx.ASGITransport(app=stack.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as client:
        yield client


async def register(api: httpx.AsyncClient, stack: Stack, content: str) -> str:
    """Register ``content`` as the admin and return its catalog path."""
    response = await api.post(
        "/api/catalog/register", json={"content": content}, headers=stack.auth("admin")
    )
    assert response.status_code == 200, response.text
    return str(response.json()["path"])


async def run_times(
    api: httpx.AsyncClient, stack: Stack, path: str, workload: dict[str, Any], times: int
) -> list[str]:
    """Execute catalog ``path`` ``times`` times one after another as the admin, each until
    it settles; return the execution ids."""
    ids: list[str] = []
    for _ in range(times):
        started = await api.post(
            "/api/execute", json={"path": path, "workload": workload}, headers=stack.auth("admin")
        )
        assert started.status_code == 202, started.text
        ids.append(str(started.json()["execution_id"]))
        await stack.engine.wait(ids[-1], timeout=30)
    return ids


async def start(api: httpx.AsyncClient, stack: Stack, content: str) -> str:
    """Register and execute ``content``; wait until it settles; return the execution id."""
    path = await register(api, stack, content)
    response = await api.post("/api/execute", json={"path": path}, headers=stack.auth("admin"))
    assert response.status_code == 202, response.text
    execution_id = str(response.json()["execution_id"])
    await stack.engine.wait(execution_id, timeout=10)
    return execution_id
