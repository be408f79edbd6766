"""Fixtures for analytics: a real chDB store in a fresh folder (or a real ClickHouse server
when ``NOETL_TEST_CLICKHOUSE_URL`` names one), over a fresh SQLite event store.

chDB runs one engine per process, so every fixture closes its store before the next test
opens another folder.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from engine.adapters.sqlite.stores import SqliteDatabase
from learning.analytics.service import Analytics
from learning.analytics.store import ClickHouseStore

SERVER_ENV = "NOETL_TEST_CLICKHOUSE_URL"


@pytest.fixture(params=["chdb", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClickHouseStore]:
    """The analytics store on each transport: chDB in ``tmp_path``, and a ClickHouse
    server (a database of its own, dropped after) when one is configured."""
    if request.param == "chdb":
        opened = ClickHouseStore.embedded(tmp_path / "analytics")
        try:
            yield opened
        finally:
            opened.close()
        return
    url = os.environ.get(SERVER_ENV)
    if not url:
        pytest.skip(
            f"no ClickHouse server on this machine (chDB is in-process only and the one packaged "
            f"for Debian is too old for clickhouse-connect); set {SERVER_ENV} to run these "
            "tests against one"
        )
    database = f"noetl_test_{uuid.uuid4().hex[:8]}"
    opened = ClickHouseStore.server(url, database=database)
    try:
        yield opened
    finally:
        opened.close()
        import clickhouse_connect

        admin = clickhouse_connect.get_client(dsn=url)
        admin.command(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()


@pytest.fixture
def events_db(tmp_path: Path) -> Iterator[SqliteDatabase]:
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
async def analytics(events_db: SqliteDatabase, store: ClickHouseStore) -> AsyncIterator[Analytics]:
    yield Analytics(events_db.events, store)
