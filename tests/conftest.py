"""Shared fixtures: real services are used for real; missing ones skip loudly, or fail in CI."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine

SHARED = Path(__file__).resolve().parents[2] / "shared"
# Servers started by tests do not index for search in the background (it loads the
# embedding model); the tests of that feature switch it on themselves.
os.environ.setdefault("NOETL_INDEXER", "off")
CONFORMANCE = Path(os.environ.get("NOETL_CONFORMANCE_DIR", SHARED / "conformance"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow", action="store_true", help="also run tests marked slow (always under CI=true)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (real model loads, whole evals, browsers, process stacks) run
    under ``CI=true`` or with ``--slow``; a plain ``pytest`` stays quick for development."""
    if config.getoption("--slow") or os.environ.get("CI") == "true":
        return
    skip = pytest.mark.skip(reason="slow test: run with --slow (CI=true runs it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _private_noetl_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the real ``~/.noetl-agent``: what an app or command keeps under
    ``$NOETL_HOME`` by default (analytics of a PostgreSQL event log, ...) goes here."""
    if not os.environ.get("NOETL_HOME"):
        os.environ["NOETL_HOME"] = str(tmp_path_factory.mktemp("noetl-home"))


def require_service(available: bool, what: str) -> None:
    """Skip with a loud reason when a service is missing; under CI=true fail instead."""
    if available:
        return
    message = f"{what} is not reachable; start it (see shared/design/SERVICES.md)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI requires it: {message}")
    pytest.skip(f"SERVICE MISSING: {message}")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    """An embedded engine on a fresh SQLite file."""
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    eng = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    try:
        yield eng
    finally:
        await eng.aclose()
        db.close()
