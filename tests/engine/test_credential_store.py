"""EncryptedCredentialStore on SQLite and on the real PostgreSQL server.

Every test runs on both backends: a fresh SQLite file, and a schema of its own on the
PostgreSQL server at 127.0.0.1:5432 (skipped loudly when it is down, failed under CI=true).
"""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from engine.adapters.credential_store import (
    CHECK_ROW,
    KEY_ENV,
    KEY_FILE_NAME,
    SALT_ROW,
    CredentialKey,
    CredentialKeyError,
    EncryptedCredentialStore,
)
from engine.adapters.credentials import CredentialInfo, CredentialNotFound
from engine.adapters.postgres import PostgresDatabase
from engine.adapters.sqlite.stores import SqliteDatabase
from engine.errors import StoreError, ToolConfigError
from tests.conformance.conftest import fresh_postgres, require_postgres

SECRET = "pw-Zq81-never-in-clear"
TOKEN = "tok-Lm52-never-in-clear"


@dataclass
class Backend:
    """Opens stores over one table and reads its bytes as they are at rest."""

    name: str
    open: Callable[[CredentialKey], EncryptedCredentialStore]
    raw: Callable[[], Awaitable[bytes]]
    copy_row: Callable[[str, str], Awaitable[None]]


async def _sqlite_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    path = tmp_path / "noetl.db"
    db = SqliteDatabase.open(path)  # the events and catalog share the file, as they do live

    async def raw() -> bytes:
        with db.reading() as conn:  # the WAL's pages go to the main file
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        files = [path, path.with_name(path.name + "-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())

    async def copy_row(source: str, target: str) -> None:
        with db.writing() as conn:
            conn.execute(
                "UPDATE credentials SET ciphertext ="
                " (SELECT ciphertext FROM credentials WHERE name = ?) WHERE name = ?",
                (source, target),
            )

    try:
        yield Backend("sqlite", lambda key: EncryptedCredentialStore.sqlite(db, key), raw, copy_row)
    finally:
        db.close()


async def _postgres_backend() -> AsyncIterator[Backend]:
    dsn = await require_postgres()
    async with fresh_postgres(dsn) as db:

        async def raw() -> bytes:
            async with db.pool.acquire() as conn:
                rows = await conn.fetch(db.sql("SELECT * FROM {s}.credential"))
                await conn.execute("CHECKPOINT")
                relation = await conn.fetchval(
                    "SELECT pg_relation_filepath($1::regclass)", f"{db.schema}.credential"
                )
                heap = await conn.fetchval("SELECT pg_read_binary_file($1)", relation)
            values = [
                value if isinstance(value, bytes) else str(value).encode()
                for row in rows
                for value in row.values()
            ]
            return b"\n".join(values) + b"\n" + bytes(heap)

        async def copy_row(source: str, target: str) -> None:
            async with db.pool.acquire() as conn:
                await conn.execute(
                    db.sql(
                        "UPDATE {s}.credential SET ciphertext = (SELECT ciphertext FROM"
                        " {s}.credential WHERE name = $1) WHERE name = $2"
                    ),
                    source,
                    target,
                )

        yield Backend(
            "postgres", lambda key: EncryptedCredentialStore.postgres(db, key), raw, copy_row
        )


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    opened = _sqlite_backend(tmp_path) if request.param == "sqlite" else _postgres_backend()
    async for value in opened:
        yield value


def fernet_key() -> CredentialKey:
    return CredentialKey(secret=Fernet.generate_key().decode(), source=KEY_ENV)


async def test_roundtrip_replace_and_delete(backend: Backend) -> None:
    store = backend.open(fernet_key())
    await store.set("warehouse", "postgres", {"user": "etl", "password": SECRET, "port": 5432})
    await store.set("api", "http", {"headers": {"X-Api-Key": TOKEN}, "scopes": ["a", "b"]})

    got = await store.get("warehouse")
    assert got.kind == "postgres"
    assert dict(got) == {"user": "etl", "password": SECRET, "port": 5432}
    assert SECRET not in repr(got) and SECRET not in str(got)
    assert dict(await store.get("api")) == {"headers": {"X-Api-Key": TOKEN}, "scopes": ["a", "b"]}

    await store.set("warehouse", "postgres", {"password": "rotated-value"})
    assert dict(await store.get("warehouse")) == {"password": "rotated-value"}

    assert await store.delete("warehouse") is True
    assert await store.delete("warehouse") is False
    with pytest.raises(CredentialNotFound, match="credentials set warehouse"):
        await store.get("warehouse")


async def test_values_are_not_in_the_table_or_file_in_clear(backend: Backend) -> None:
    store = backend.open(fernet_key())
    await store.set("warehouse", "postgres", {"password": SECRET})
    await store.set("api", "http", {"token": TOKEN})
    at_rest = await backend.raw()
    # The names are stored in clear: finding them proves the bytes are the right ones.
    assert b"warehouse" in at_rest and b"api" in at_rest
    for value in (SECRET, TOKEN):
        assert value.encode() not in at_rest
        assert json.dumps(value).encode() not in at_rest


async def test_list_shows_names_and_kinds_only(backend: Backend) -> None:
    store = backend.open(fernet_key())
    assert await store.list() == []
    await store.set("b-api", "http", {"token": TOKEN})
    await store.set("a-db", "postgres", {"password": SECRET})
    listed = await store.list()
    assert listed == [CredentialInfo("a-db", "postgres"), CredentialInfo("b-api", "http")]
    assert SECRET not in repr(listed) and TOKEN not in repr(listed) and SECRET not in repr(store)
    # The store's own rows are neither listed nor readable nor deletable as credentials.
    for reserved in (SALT_ROW, CHECK_ROW):
        with pytest.raises(CredentialNotFound):
            await store.get(reserved)
        assert await store.delete(reserved) is False


async def test_a_wrong_key_is_a_clear_error_without_values(backend: Backend) -> None:
    await backend.open(fernet_key()).set("x", "http", {"token": TOKEN})
    other = backend.open(fernet_key())
    with pytest.raises(CredentialKeyError) as caught:
        await other.get("x")
    message = str(caught.value)
    assert message.startswith(
        "cannot decrypt credential 'x': NOETL_CREDENTIAL_KEY differs from the key it was "
        "stored with"
    )
    at_rest = await backend.raw()
    assert TOKEN not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    for chunk in at_rest.split(b"\n"):
        if chunk.startswith(b"gAAAA"):  # a Fernet token
            assert chunk.decode(errors="replace")[:20] not in message
    # Storing under another key is refused too, so one table never mixes keys.
    with pytest.raises(CredentialKeyError, match="differs from the key the credentials"):
        await other.set("y", "http", {"token": TOKEN})
    assert [info.name for info in await other.list()] == ["x"]


async def test_a_new_key_takes_over_once_nothing_is_stored(backend: Backend) -> None:
    first = backend.open(fernet_key())
    await first.set("x", "http", {"token": TOKEN})
    assert await first.delete("x")
    second = backend.open(fernet_key())
    await second.set("y", "http", {"token": TOKEN})
    assert dict(await second.get("y")) == {"token": TOKEN}


async def test_a_passphrase_derives_the_key_with_a_stored_salt(backend: Backend) -> None:
    phrase = "correct horse battery staple"
    await backend.open(CredentialKey(secret=phrase, source=KEY_ENV)).set(
        "x", "generic", {"password": SECRET}
    )
    again = backend.open(CredentialKey(secret=phrase, source=KEY_ENV))
    assert dict(await again.get("x")) == {"password": SECRET}
    assert phrase.encode() not in await backend.raw()
    wrong = backend.open(CredentialKey(secret="another passphrase", source=KEY_ENV))
    with pytest.raises(CredentialKeyError, match="NOETL_CREDENTIAL_KEY differs"):
        await wrong.get("x")


async def test_a_ciphertext_moved_to_another_name_is_refused(backend: Backend) -> None:
    store = backend.open(fernet_key())
    await store.set("admin-api", "http", {"token": TOKEN})
    await store.set("guest-api", "http", {"token": "guest-token"})
    await backend.copy_row("admin-api", "guest-api")
    with pytest.raises(CredentialKeyError, match="ciphertext of another credential") as caught:
        await store.get("guest-api")
    assert TOKEN not in str(caught.value)


async def test_the_key_file_is_created_0600_on_first_store(
    backend: Backend, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    key = CredentialKey.from_environment(home, environ={})
    store = backend.open(key)
    assert await store.list() == []
    with pytest.raises(CredentialNotFound):
        await store.get("x")
    assert not (home / KEY_FILE_NAME).exists()  # reading creates nothing

    await store.set("x", "http", {"token": TOKEN})
    key_file = home / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert TOKEN.encode() not in key_file.read_bytes()
    fresh = backend.open(CredentialKey.from_environment(home, environ={}))
    assert dict(await fresh.get("x")) == {"token": TOKEN}

    key_file.unlink()
    lost = backend.open(CredentialKey.from_environment(home, environ={}))
    with pytest.raises(CredentialKeyError, match=r"key file .* is missing"):
        await lost.get("x")
    with pytest.raises(CredentialKeyError, match=r"key file .* is missing, and 1 credential"):
        await lost.set("y", "http", {"token": TOKEN})
    assert not key_file.exists()


async def test_the_environment_variable_wins_over_the_key_file(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    from_env = CredentialKey.from_environment(tmp_path, environ={KEY_ENV: key})
    assert from_env.source == KEY_ENV and from_env.key_file is None
    assert not from_env.is_passphrase
    assert CredentialKey.from_environment(tmp_path, environ={KEY_ENV: "a phrase"}).is_passphrase
    from_file = CredentialKey.from_environment(tmp_path, environ={})
    assert from_file.key_file == tmp_path / KEY_FILE_NAME
    with pytest.raises(CredentialKeyError, match="is empty"):
        CredentialKey.from_environment(tmp_path, environ={KEY_ENV: " "})


async def test_a_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE_NAME).write_text("not a key\n")
    store = EncryptedCredentialStore.sqlite(
        tmp_path / "noetl.db", CredentialKey.from_environment(tmp_path, environ={})
    )
    with pytest.raises(CredentialKeyError, match="does not hold a Fernet key") as caught:
        await store.set("x", "http", {"token": TOKEN})
    assert "not a key" not in str(caught.value)


async def test_bad_input_is_refused_without_echoing_it(backend: Backend) -> None:
    store = backend.open(fernet_key())
    with pytest.raises(ToolConfigError, match="invalid credential name"):
        await store.set(".hidden", "http", {"token": TOKEN})
    with pytest.raises(ToolConfigError, match="non-empty mapping"):
        await store.set("x", "http", {})
    with pytest.raises(ToolConfigError, match="JSON value") as caught:
        await store.set("x", "http", {"token": TOKEN, "bad": object()})
    assert TOKEN not in str(caught.value)
    assert await store.list() == []


async def test_postgres_store_needs_the_migrated_table(tmp_path: Path) -> None:
    dsn = await require_postgres()
    async with fresh_postgres(dsn, migrate=False) as db:
        assert isinstance(db, PostgresDatabase)
        store = EncryptedCredentialStore.postgres(db, fernet_key())
        with pytest.raises(StoreError, match="not set up"):
            await store.list()
