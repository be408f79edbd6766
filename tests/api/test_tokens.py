"""Token stores: secrets shown once, only their SHA-256 kept; create, list, revoke."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.errors import Conflict, NotFound
from noetl_agent.errors import Unauthorized
from noetl_agent.principals import Principal
from noetl_agent.tokens import (
    MemoryTokenStore,
    PostgresTokenStore,
    SqliteTokenStore,
    TokenStore,
)
from tests.conformance.conftest import fresh_postgres, require_postgres


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TokenStore]:
    if request.param == "memory":
        yield MemoryTokenStore()
        return
    if request.param == "postgres":
        async with fresh_postgres(await require_postgres()) as pg:
            yield PostgresTokenStore(pg)
        return
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    try:
        yield SqliteTokenStore(db)
    finally:
        db.close()


async def test_create_authenticate_list_revoke(store: TokenStore):
    token = await store.create("ann", "human", ["approver", "viewer", "approver"])
    other = await store.create("ci", "agent", ["operator"])

    assert token.startswith("noetl_") and len(token) > 40
    assert token != other
    assert await store.authenticate(token) == Principal(
        "ann", "human", frozenset({"approver", "viewer"})
    )
    listed = await store.list()
    assert [(t.name, t.kind, t.roles) for t in listed] == [
        ("ann", "human", ("approver", "viewer")),
        ("ci", "agent", ("operator",)),
    ]
    assert token not in repr(listed)

    await store.revoke("ann")
    with pytest.raises(Unauthorized, match="unknown or revoked"):
        await store.authenticate(token)
    assert (await store.authenticate(other)).name == "ci"
    with pytest.raises(NotFound, match="tokens list"):
        await store.revoke("ann")


@pytest.mark.parametrize(
    ("name", "kind", "roles", "message"),
    [
        ("ann", "robot", ["viewer"], "kind 'robot'"),
        ("ann", "human", ["root"], "unknown role 'root'"),
        ("ann", "human", [], "at least one role"),
        ("two words", "human", ["viewer"], "without spaces"),
        ("", "human", ["viewer"], "1-100 characters"),
    ],
)
async def test_bad_principals_are_refused(store: TokenStore, name, kind, roles, message):
    with pytest.raises(ValueError, match=message):
        await store.create(name, kind, roles)
    assert await store.list() == []


async def test_names_are_unique(store: TokenStore):
    await store.create("ann", "human", ["viewer"])
    with pytest.raises(Conflict, match="already exists"):
        await store.create("ann", "agent", ["admin"])
    with pytest.raises(Unauthorized):
        await store.authenticate("noetl_guess")


async def test_the_database_holds_the_hash_never_the_token(tmp_path: Path):
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    token = await SqliteTokenStore(db).create("ann", "human", ["admin"])
    with db.reading() as conn:
        stored = conn.execute("SELECT token_sha256 FROM api_tokens").fetchall()
    db.close()

    assert stored == [(hashlib.sha256(token.encode()).hexdigest(),)]
    files = list(tmp_path.glob("noetl.db*"))
    assert files
    for file in files:
        assert token.encode() not in file.read_bytes(), file

    reopened = SqliteDatabase.open(tmp_path / "noetl.db")
    try:
        again = SqliteTokenStore(reopened)  # the table is there already: no error
        assert (await again.authenticate(token)).name == "ann"
    finally:
        reopened.close()


async def test_a_revoked_token_is_refused_by_the_api(api, stack):
    viewer = stack.auth("viewer")
    assert (await api.get("/api/catalog", headers=viewer)).status_code == 200
    await stack.tokens.revoke("viewer")
    refused = await api.get("/api/catalog", headers=viewer)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_postgres_keeps_hashes_and_revoked_rows_and_one_name_per_live_token():
    async with fresh_postgres(await require_postgres()) as pg:
        store = PostgresTokenStore(pg)
        first = await store.create("ann", "human", ["admin"])
        await store.revoke("ann")
        second = await store.create("ann", "agent", ["viewer"])  # the name is free again
        async with pg.connection("test") as conn:
            rows = await conn.fetch(
                pg.sql("SELECT token_hash, revoked_at IS NOT NULL AS revoked FROM {s}.api_token")
            )
        assert sorted((row["token_hash"], row["revoked"]) for row in rows) == sorted(
            [(hashlib.sha256(t.encode()).hexdigest(), t == first) for t in (first, second)]
        )
        assert (await store.authenticate(second)).kind == "agent"

        racing = await asyncio.gather(
            *(store.create("ci", "agent", ["worker"]) for _ in range(5)), return_exceptions=True
        )
        assert sum(isinstance(outcome, str) for outcome in racing) == 1
        assert sum(isinstance(outcome, Conflict) for outcome in racing) == 4
