"""Credentials encrypted at rest in a SQL table.

    EncryptedCredentialStore.sqlite(path)  table ``credentials`` of the embedded SQLite
                                           file (created here when missing)
    EncryptedCredentialStore.postgres(db)  table ``credential`` of a migrated PostgreSQL
                                           schema (see ``postgres.migrations``)

Both implement the ``CredentialProvider`` port (``get``) plus ``set``, ``delete`` and
``list`` (names and kinds, never values). A row holds the name and kind in clear, for
listings, and the Fernet token (AES-128-CBC with HMAC-SHA256) of
``{"name", "kind", "data"}``; ``get`` checks that the decrypted name is the row's, so a
ciphertext copied onto another row is refused rather than used.

The key (:class:`CredentialKey`) comes from ``NOETL_CREDENTIAL_KEY`` when it is set: a
Fernet key as ``Fernet.generate_key()`` writes it, or any other text as a passphrase, from
which scrypt derives the key with a random salt kept in the table (row ``.salt``).
Otherwise it is the Fernet key in the key file (``$NOETL_HOME/credential.key``), created
with mode 0600 the first time a credential is stored. Back the key up: without it the
credentials cannot be read.

Row ``.key-check`` holds a constant encrypted under the key of the first credential
stored, so storing under a different key is refused instead of mixing keys in one
table; once no credential is left, the next key takes over. Names starting with ``.``
are reserved for these rows (credential names never start with one).

Errors never hold a value or a ciphertext:

    ToolConfigError (engine.errors)
    ├── CredentialNotFound (credentials)   the name is not stored
    └── CredentialKeyError                 no usable key, or not the key it was stored with
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine.adapters.credentials import (
    Credential,
    CredentialInfo,
    CredentialNotFound,
    checked_entry,
)
from engine.adapters.memory.stores import utc_now
from engine.errors import StoreError, ToolConfigError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from engine.adapters.postgres.stores import PostgresDatabase
    from engine.adapters.sqlite.stores import SqliteDatabase

KEY_ENV = "NOETL_CREDENTIAL_KEY"
KEY_FILE_NAME = "credential.key"
SALT_ROW = ".salt"
CHECK_ROW = ".key-check"
_META_KIND = "noetl.meta"
_CHECK_PLAINTEXT = b"noetl-agent credential key check v1"
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
_FERNET_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{43}=$")
_derived: dict[bytes, bytes] = {}  # sha256(passphrase, salt) → derived key, per process


class CredentialKeyError(ToolConfigError):
    """The key is missing, unreadable, or not the one the credentials were stored with."""


class CredentialStore(Protocol):
    """Credentials that can be managed as well as read (values never leave but by ``get``)."""

    async def get(self, name: str) -> Credential: ...

    async def set(self, name: str, kind: str, data: Mapping[str, Any]) -> None: ...

    async def delete(self, name: str) -> bool: ...

    async def list(self) -> list[CredentialInfo]: ...


# ------------------------------------------------------------------------- the key


def _fernet_key(text: str) -> bytes | None:
    """``text`` as a Fernet key when it is one (url-safe base64 of 32 bytes)."""
    text = text.strip()
    return text.encode("ascii") if _FERNET_KEY_RE.match(text) else None


class CredentialKey:
    """Where the Fernet key comes from: a secret (key or passphrase) or a key file."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        key_file: str | os.PathLike[str] | None = None,
        source: str | None = None,
    ) -> None:
        if (secret is None) == (key_file is None):
            raise ValueError("give either secret or key_file")
        if secret is not None and not secret.strip():
            raise CredentialKeyError(
                f"{source or 'the credential key'} is empty; set it to a Fernet key "
                "(`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`) or a long passphrase, or unset it "
                "to use the key file"
            )
        self._secret = secret
        self.key_file = Path(key_file).expanduser() if key_file is not None else None
        if source is not None:
            self.source = source
        elif self.key_file is not None:
            self.source = f"the key in {self.key_file}"
        else:
            self.source = "the given credential key"

    def __repr__(self) -> str:
        return f"CredentialKey(source={self.source!r})"

    @classmethod
    def from_environment(
        cls, home: str | os.PathLike[str], environ: Mapping[str, str] | None = None
    ) -> CredentialKey:
        """``NOETL_CREDENTIAL_KEY`` when set, else the key file ``home/credential.key``."""
        env = os.environ if environ is None else environ
        value = env.get(KEY_ENV)
        if value is not None:
            return cls(secret=value, source=KEY_ENV)
        return cls(key_file=Path(home) / KEY_FILE_NAME)

    @property
    def is_passphrase(self) -> bool:
        """Whether the key is derived from a passphrase (and so needs the stored salt)."""
        return self._secret is not None and _fernet_key(self._secret) is None

    def fernet(self, salt: bytes | None, *, create: bool) -> Fernet | None:
        """The Fernet of this key; ``None`` when the key file does not exist and
        ``create`` is false. ``salt`` is needed for a passphrase only."""
        from cryptography.fernet import Fernet  # imported on use: CLI start-up time

        if self._secret is not None:
            key = _fernet_key(self._secret)
            if key is None:
                if salt is None:
                    raise ValueError("a passphrase needs the stored salt")
                key = _derive(self._secret, salt)
            return Fernet(key)
        assert self.key_file is not None
        key = self._read_key_file()
        if key is None:
            if not create:
                return None
            key = self._create_key_file()
        return Fernet(key)

    def _read_key_file(self) -> bytes | None:
        assert self.key_file is not None
        try:
            text = self.key_file.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CredentialKeyError(
                f"cannot read the credential key file {self.key_file}: {e.strerror}; "
                "check that you own it, or set NOETL_CREDENTIAL_KEY"
            ) from None
        key = _fernet_key(text)
        if key is None:
            raise CredentialKeyError(
                f"the credential key file {self.key_file} does not hold a Fernet key; "
                "restore it from your backup, or set NOETL_CREDENTIAL_KEY to the key"
            )
        return key

    def _create_key_file(self) -> bytes:
        """Write a new key with mode 0600; if another process wrote one first, use that."""
        assert self.key_file is not None
        path = self.key_file
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = base64.urlsafe_b64encode(os.urandom(32))  # as Fernet.generate_key()
        fd, tmp = tempfile.mkstemp(prefix=".credential-key-", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(key + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)  # never replaces an existing key
            except FileExistsError:
                existing = self._read_key_file()
                if existing is None:  # pragma: no cover - removed in between
                    raise CredentialKeyError(
                        f"the credential key file {path} vanished while it was created; retry"
                    ) from None
                return existing
        finally:
            Path(tmp).unlink(missing_ok=True)
        return key


def _derive(passphrase: str, salt: bytes) -> bytes:
    digest = hashlib.sha256(salt + b"\0" + passphrase.encode("utf-8")).digest()
    key = _derived.get(digest)
    if key is None:
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        raw = Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P).derive(
            passphrase.encode("utf-8")
        )
        key = base64.urlsafe_b64encode(raw)
        _derived[digest] = key
    return key


# ------------------------------------------------------------------------- the rows


class CredentialRows(Protocol):
    """The table under a store: name, kind and ciphertext per row."""

    where: str

    async def fetch(self, name: str) -> tuple[str, bytes] | None:
        """``(kind, ciphertext)`` of ``name``, or ``None``."""
        ...

    async def upsert(self, name: str, kind: str, ciphertext: bytes) -> None: ...

    async def insert_if_absent(self, name: str, kind: str, ciphertext: bytes) -> None: ...

    async def remove(self, name: str) -> bool: ...

    async def names(self) -> list[tuple[str, str]]:
        """``(name, kind)`` of every row, reserved ones included, sorted by name."""
        ...


_SQLITE_TABLE = """
CREATE TABLE IF NOT EXISTS credentials (
    name       TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""


class SqliteCredentialRows:
    """Table ``credentials`` of a SQLite file, through a short-lived connection per call."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.where = f"the SQLite file {self.path}"
        self._timeout = busy_timeout
        self._ready = False

    @contextlib.contextmanager
    def _connect(self, action: str, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
            if not self._ready:
                conn.execute(_SQLITE_TABLE)
                self._ready = True
            if write:
                conn.execute("BEGIN IMMEDIATE")
            yield conn
            if write:
                conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise StoreError(
                f"credential store {self.path}: {action} failed: {e}; check that the file "
                "is a noetl-agent database and is writable"
            ) from None
        except OSError as e:
            raise StoreError(
                f"credential store {self.path}: {action} failed: {e.strerror}; check that "
                "the directory exists and is writable"
            ) from None
        finally:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                conn.close()

    async def fetch(self, name: str) -> tuple[str, bytes] | None:
        with self._connect("read a credential") as conn:
            row = conn.execute(
                "SELECT kind, ciphertext FROM credentials WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]))

    async def upsert(self, name: str, kind: str, ciphertext: bytes) -> None:
        now = utc_now()
        with self._connect("store a credential", write=True) as conn:
            conn.execute(
                "INSERT INTO credentials (name, kind, ciphertext, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " kind = excluded.kind, ciphertext = excluded.ciphertext,"
                " updated_at = excluded.updated_at",
                (name, kind, ciphertext, now, now),
            )

    async def insert_if_absent(self, name: str, kind: str, ciphertext: bytes) -> None:
        now = utc_now()
        with self._connect("store a credential", write=True) as conn:
            conn.execute(
                "INSERT INTO credentials (name, kind, ciphertext, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, kind, ciphertext, now, now),
            )

    async def remove(self, name: str) -> bool:
        with self._connect("delete a credential", write=True) as conn:
            deleted = conn.execute("DELETE FROM credentials WHERE name = ?", (name,)).rowcount
        return bool(deleted)

    async def names(self) -> list[tuple[str, str]]:
        with self._connect("list credentials") as conn:
            rows = conn.execute("SELECT name, kind FROM credentials ORDER BY name").fetchall()
        return [(str(name), str(kind)) for name, kind in rows]


class PostgresCredentialRows:
    """Table ``credential`` of a ``PostgresDatabase`` schema (created by its migrations)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self.where = f"the PostgreSQL schema {db.schema!r}"

    async def fetch(self, name: str) -> tuple[str, bytes] | None:
        async with self._db.connection("read a credential") as conn:
            row = await conn.fetchrow(
                self._db.sql("SELECT kind, ciphertext FROM {s}.credential WHERE name = $1"), name
            )
        return None if row is None else (str(row["kind"]), bytes(row["ciphertext"]))

    async def upsert(self, name: str, kind: str, ciphertext: bytes) -> None:
        async with self._db.connection("store a credential") as conn:
            await conn.execute(
                self._db.sql(
                    "INSERT INTO {s}.credential (name, kind, ciphertext) VALUES ($1, $2, $3)"
                    " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind,"
                    " ciphertext = EXCLUDED.ciphertext, updated_at = now()"
                ),
                name,
                kind,
                ciphertext,
            )

    async def insert_if_absent(self, name: str, kind: str, ciphertext: bytes) -> None:
        async with self._db.connection("store a credential") as conn:
            await conn.execute(
                self._db.sql(
                    "INSERT INTO {s}.credential (name, kind, ciphertext) VALUES ($1, $2, $3)"
                    " ON CONFLICT (name) DO NOTHING"
                ),
                name,
                kind,
                ciphertext,
            )

    async def remove(self, name: str) -> bool:
        async with self._db.connection("delete a credential") as conn:
            status = await conn.execute(
                self._db.sql("DELETE FROM {s}.credential WHERE name = $1"), name
            )
        return str(status).rsplit(" ", 1)[-1] != "0"

    async def names(self) -> list[tuple[str, str]]:
        async with self._db.connection("list credentials") as conn:
            rows = await conn.fetch(
                self._db.sql('SELECT name, kind FROM {s}.credential ORDER BY name COLLATE "C"')
            )
        return [(str(row["name"]), str(row["kind"])) for row in rows]


# ------------------------------------------------------------------------- the store


def _reserved(name: str) -> bool:
    return not isinstance(name, str) or name.startswith(".")


class EncryptedCredentialStore:
    """Credentials in ``rows``, encrypted under ``key`` (see the module docstring)."""

    def __init__(self, rows: CredentialRows, key: CredentialKey) -> None:
        self.rows = rows
        self.key = key
        self._fernet: Fernet | None = None

    def __repr__(self) -> str:
        return f"EncryptedCredentialStore({self.rows.where}, {self.key!r})"

    @classmethod
    def sqlite(
        cls, database: str | os.PathLike[str] | SqliteDatabase, key: CredentialKey
    ) -> EncryptedCredentialStore:
        """A store in the SQLite file ``database`` (a path, or an open ``SqliteDatabase``)."""
        path = database if isinstance(database, str | os.PathLike) else database.path
        return cls(SqliteCredentialRows(path), key)

    @classmethod
    def postgres(cls, db: PostgresDatabase, key: CredentialKey) -> EncryptedCredentialStore:
        """A store in the ``credential`` table of ``db``'s schema (run ``migrate`` first)."""
        return cls(PostgresCredentialRows(db), key)

    # ---------------------------------------------------------------- the port

    async def get(self, name: str) -> Credential:
        """The credential; ``CredentialNotFound`` when it is not stored,
        ``CredentialKeyError`` when it cannot be decrypted with this store's key."""
        from cryptography.fernet import InvalidToken

        row = None if _reserved(name) else await self.rows.fetch(name)
        if row is None:
            raise CredentialNotFound(name)
        fernet = await self._cipher(create=False)
        if fernet is None:
            raise CredentialKeyError(
                f"cannot decrypt credential {name!r}: the key file {self.key.key_file} is "
                f"missing; restore it from your backup or set {KEY_ENV} to the key the "
                "credentials were stored with"
            )
        try:
            plain = fernet.decrypt(row[1])
        except InvalidToken:
            raise CredentialKeyError(
                f"cannot decrypt credential {name!r}: {self.key.source} differs from the key "
                f"it was stored with; use that key (set {KEY_ENV} or restore the key file), "
                "or store the credential again"
            ) from None
        try:
            entry = json.loads(plain)
            ok = isinstance(entry, dict) and entry.get("name") == name
        except ValueError:
            ok = False
        if not ok or not isinstance(entry.get("data"), dict):
            raise CredentialKeyError(
                f"credential {name!r} holds the ciphertext of another credential or an "
                f"unknown format; store it again with `noetl-agent credentials set {name}`"
            )
        return Credential(name, str(entry.get("kind") or row[0]), entry["data"])

    # ---------------------------------------------------------------- management

    async def set(self, name: str, kind: str, data: Mapping[str, Any]) -> None:
        """Define or replace ``name``; ``ToolConfigError`` for a bad name, kind or data,
        ``CredentialKeyError`` when the key is not the one the others were stored with."""
        entry = checked_entry(name, kind, data)
        fernet = await self._cipher(create=True, storing=name)
        assert fernet is not None
        await self._check(fernet, name)
        plain = json.dumps({"name": name, **entry}, separators=(",", ":")).encode("utf-8")
        await self.rows.upsert(name, entry["kind"], fernet.encrypt(plain))

    async def delete(self, name: str) -> bool:
        """Remove ``name``; return whether it was stored. Needs no key."""
        if _reserved(name):
            return False
        return await self.rows.remove(name)

    async def list(self) -> list[CredentialInfo]:
        """Names and kinds, sorted by name; needs no key, shows no value."""
        return [
            CredentialInfo(name, kind)
            for name, kind in await self.rows.names()
            if not _reserved(name)
        ]

    # ---------------------------------------------------------------- internals

    async def _cipher(self, *, create: bool, storing: str | None = None) -> Fernet | None:
        if self._fernet is not None:
            return self._fernet
        salt = await self._salt() if self.key.is_passphrase else None
        if create and self.key.key_file is not None and not self.key.key_file.exists():
            stored = [info.name for info in await self.list()]
            if stored:
                raise CredentialKeyError(
                    f"cannot store credential {storing!r}: the key file {self.key.key_file} "
                    f"is missing, and {len(stored)} credential(s) in {self.rows.where} were "
                    f"stored with it; restore it from your backup, set {KEY_ENV} to that "
                    "key, or delete them (`noetl-agent credentials delete NAME`)"
                )
        fernet = self.key.fernet(salt, create=create)
        self._fernet = fernet
        return fernet

    async def _salt(self) -> bytes:
        row = await self.rows.fetch(SALT_ROW)
        if row is None:
            await self.rows.insert_if_absent(SALT_ROW, _META_KIND, os.urandom(16))
            row = await self.rows.fetch(SALT_ROW)
            if row is None:  # pragma: no cover - deleted in between
                raise StoreError(f"the credential salt in {self.rows.where} vanished; retry")
        return row[1]

    async def _check(self, fernet: Fernet, name: str) -> None:
        """Make sure every stored credential is under ``fernet``'s key."""
        from cryptography.fernet import InvalidToken

        row = await self.rows.fetch(CHECK_ROW)
        if row is None:
            token = fernet.encrypt(_CHECK_PLAINTEXT)
            await self.rows.insert_if_absent(CHECK_ROW, _META_KIND, token)
            row = await self.rows.fetch(CHECK_ROW)
            if row is None:  # pragma: no cover - deleted in between
                raise StoreError(f"the credential key check in {self.rows.where} vanished")
        try:
            if fernet.decrypt(row[1]) == _CHECK_PLAINTEXT:
                return
        except InvalidToken:
            pass
        if await self.list():
            raise CredentialKeyError(
                f"cannot store credential {name!r}: {self.key.source} differs from the key "
                f"the credentials in {self.rows.where} were stored with; use that key (set "
                f"{KEY_ENV} or restore the key file), or delete them first"
            )
        # Nothing is stored under the old key: this key takes over.
        await self.rows.upsert(CHECK_ROW, _META_KIND, fernet.encrypt(_CHECK_PLAINTEXT))
