"""Conformance suite of the ``CatalogStore`` port, run against every backend.

The last tests are SQLite-only: persistence across reopening and sharing one database
file with the event store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.adapters.sqlite import SqliteDatabase
from engine.core.events import STEP_STARTED, Event
from engine.errors import NotFound
from engine.ports import CatalogStore

HELLO = "name: hello\nworkflow:\n  - step: start\n"
HELLO_V2 = "name: hello\nworkflow:\n  - step: start\n    tool: python\n"


async def test_first_registration_is_version_one(catalog_store: CatalogStore) -> None:
    before = datetime.now(UTC)

    entry = await catalog_store.register(
        "examples/hello", "hello", HELLO, description="says hello", source="/tmp/hello.yaml"
    )

    assert entry.path == "examples/hello"
    assert entry.version == 1
    assert entry.name == "hello"
    assert entry.content == HELLO
    assert entry.description == "says hello"
    assert entry.source == "/tmp/hello.yaml"
    assert entry.registered_at.endswith("Z")
    registered = datetime.fromisoformat(entry.registered_at)
    assert registered.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= registered <= datetime.now(UTC) + timedelta(seconds=1)
    assert await catalog_store.get("examples/hello") == entry


async def test_new_content_makes_the_next_version(catalog_store: CatalogStore) -> None:
    await catalog_store.register("p", "hello", HELLO, description=None, source=None)

    second = await catalog_store.register("p", "hello", HELLO_V2, description="v2", source=None)

    assert second.version == 2
    assert second.content == HELLO_V2
    assert (await catalog_store.get("p")).version == 2


async def test_same_content_as_latest_returns_the_latest(catalog_store: CatalogStore) -> None:
    first = await catalog_store.register("p", "hello", HELLO, description="one", source=None)

    again = await catalog_store.register("p", "renamed", HELLO, description="two", source="f")

    assert again == first
    assert [e.version for e in await catalog_store.versions("p")] == [1]


async def test_content_of_an_older_version_is_a_new_version(catalog_store: CatalogStore) -> None:
    await catalog_store.register("p", "hello", HELLO, description=None, source=None)
    await catalog_store.register("p", "hello", HELLO_V2, description=None, source=None)

    back = await catalog_store.register("p", "hello", HELLO, description=None, source=None)

    assert back.version == 3
    assert back.content == HELLO


async def test_get_latest_or_exact_version(catalog_store: CatalogStore) -> None:
    v1 = await catalog_store.register("p", "hello", HELLO, description=None, source=None)
    v2 = await catalog_store.register("p", "hello", HELLO_V2, description=None, source=None)

    assert await catalog_store.get("p") == v2
    assert await catalog_store.get("p", None) == v2
    assert await catalog_store.get("p", 1) == v1
    assert await catalog_store.get("p", version=2) == v2


async def test_get_unknown_path_raises_not_found(catalog_store: CatalogStore) -> None:
    await catalog_store.register("p", "hello", HELLO, description=None, source=None)

    with pytest.raises(NotFound) as caught:
        await catalog_store.get("missing/path")

    message = str(caught.value)
    assert "'missing/path'" in message
    assert "`noetl-agent catalog list`" in message


@pytest.mark.parametrize("version", [0, 3, -1, 99])
async def test_get_unknown_version_raises_not_found(
    catalog_store: CatalogStore, version: int
) -> None:
    await catalog_store.register("p", "hello", HELLO, description=None, source=None)
    await catalog_store.register("p", "hello", HELLO_V2, description=None, source=None)

    with pytest.raises(NotFound) as caught:
        await catalog_store.get("p", version)

    message = str(caught.value)
    assert "'p'" in message
    assert f"version {version}" in message
    assert "`noetl-agent catalog list`" in message


async def test_get_version_of_unknown_path_raises_not_found(catalog_store: CatalogStore) -> None:
    with pytest.raises(NotFound, match=r"'nope'.*noetl-agent catalog list"):
        await catalog_store.get("nope", 1)


async def test_list_gives_the_latest_of_every_path_sorted(catalog_store: CatalogStore) -> None:
    await catalog_store.register("zeta", "z", "z1", description=None, source=None)
    await catalog_store.register("alpha", "a", "a1", description=None, source=None)
    await catalog_store.register("alpha", "a", "a2", description=None, source=None)
    await catalog_store.register("mid/one", "m", "m1", description=None, source=None)
    await catalog_store.register("alpha", "a", "a3", description=None, source=None)

    listing = await catalog_store.list()

    assert [(e.path, e.version, e.content) for e in listing] == [
        ("alpha", 3, "a3"),
        ("mid/one", 1, "m1"),
        ("zeta", 1, "z1"),
    ]


async def test_list_when_empty(catalog_store: CatalogStore) -> None:
    assert await catalog_store.list() == []


async def test_versions_ascending(catalog_store: CatalogStore) -> None:
    for n in range(1, 5):
        await catalog_store.register("p", "hello", f"v{n}", description=None, source=None)
    await catalog_store.register("other", "o", "o1", description=None, source=None)

    versions = await catalog_store.versions("p")

    assert [(e.version, e.content) for e in versions] == [(n, f"v{n}") for n in range(1, 5)]
    assert all(e.path == "p" for e in versions)


async def test_versions_of_unknown_path_raises_not_found(catalog_store: CatalogStore) -> None:
    with pytest.raises(NotFound, match=r"'nope'.*`noetl-agent catalog list`"):
        await catalog_store.versions("nope")


async def test_versions_never_change_once_stored(catalog_store: CatalogStore) -> None:
    v1 = await catalog_store.register("p", "hello", HELLO, description="d", source="s")
    await catalog_store.register("p", "hello2", HELLO_V2, description="d2", source="s2")

    assert await catalog_store.get("p", 1) == v1


# --- SQLite only --------------------------------------------------------------------------


async def test_sqlite_catalog_survives_reopening(sqlite_path: Path) -> None:
    db = SqliteDatabase.open(sqlite_path)
    v1 = await db.catalog.register("p", "hello", HELLO, description="d", source=None)
    v2 = await db.catalog.register("p", "hello", HELLO_V2, description=None, source="f.yaml")
    await db.catalog.close()

    again = SqliteDatabase.open(sqlite_path)
    try:
        assert await again.catalog.versions("p") == [v1, v2]
        assert (
            await again.catalog.register("p", "hello", HELLO_V2, description=None, source=None)
        ) == v2
        v3 = await again.catalog.register("p", "hello", "new", description=None, source=None)
        assert v3.version == 3
    finally:
        again.close()


async def test_sqlite_catalog_and_events_share_one_file(sqlite_path: Path) -> None:
    db = SqliteDatabase.open(sqlite_path)
    try:
        await db.catalog.register("p", "hello", HELLO, description=None, source=None)
        event = Event(event_id="e", event_type=STEP_STARTED, execution_id="x", timestamp="t")
        await db.events.append([event])

        other = SqliteDatabase(sqlite_path)
        try:
            assert (await other.catalog.get("p")).content == HELLO
            assert await other.events.read("x") == [event.with_seq(1)]
        finally:
            other.close()
    finally:
        db.close()
