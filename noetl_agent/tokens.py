"""API tokens: bearer secrets that stand for a principal.

A token is a random secret (``noetl_`` followed by 43 URL-safe characters, 256 bits) shown
once, when it is created. Stores keep only its SHA-256 digest, so neither a copy of the
database nor a listing can give a token back; a lookup hashes the presented secret and
finds the principal by digest. Plain SHA-256 is enough here because the secret is random
and long, not a password a person chose.

Each token belongs to one principal: a unique ``name``, a ``kind`` (human or agent) and
roles (see :mod:`noetl_agent.principals`). Revoking deletes the token; requests made with
it are refused from then on.

Three adapters: :class:`SqliteTokenStore` keeps the tokens in the table ``api_tokens`` of
the embedded SQLite file (created on first use, next to the events and catalog);
:class:`PostgresTokenStore` keeps them in the ``api_token`` table of the distributed
mode's PostgreSQL schema (created by its migrations; a revoked token keeps its row, with
``revoked_at`` set, and its name becomes free again); :class:`MemoryTokenStore` is the
test double.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.errors import Conflict, NotFound
from noetl_agent.errors import Unauthorized
from noetl_agent.principals import KINDS, ROLES, Kind, Principal

if TYPE_CHECKING:
    from engine.adapters.postgres.stores import PostgresDatabase

TOKEN_PREFIX = "noetl_"
_NAME_MAX = 100


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a listing shows of a token: never the secret, never its digest."""

    name: str
    kind: str
    roles: tuple[str, ...]
    created_at: str

    @property
    def principal(self) -> Principal:
        kind: Kind = "human" if self.kind == "human" else "agent"
        return Principal(self.name, kind, frozenset(self.roles))

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "roles": list(self.roles),
            "created_at": self.created_at,
        }


class TokenStore(Protocol):
    """Issues, resolves and revokes API tokens."""

    async def create(self, name: str, kind: str, roles: Iterable[str]) -> str:
        """Issue a token for a new principal and return the secret (the only time it is
        seen). Raise ``Conflict`` when ``name`` is taken, ``ValueError`` for a bad kind,
        role or name."""
        ...

    async def authenticate(self, token: str) -> Principal:
        """The principal of ``token``; raise ``Unauthorized`` when it is unknown or revoked."""
        ...

    async def list(self) -> list[TokenInfo]:
        """Every live token by name."""
        ...

    async def revoke(self, name: str) -> None:
        """Delete the token of ``name``; raise ``NotFound`` when there is none."""
        ...


def digest(token: str) -> str:
    """The SHA-256 hex digest a store keeps in place of ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def checked(name: str, kind: str, roles: Iterable[str]) -> tuple[str, str, tuple[str, ...]]:
    """Validate a principal's name, kind and roles; raise ``ValueError`` saying what is wrong."""
    name = name.strip()
    if not name or len(name) > _NAME_MAX or any(c.isspace() for c in name):
        raise ValueError(
            f"token name {name!r} must be 1-{_NAME_MAX} characters without spaces, "
            "e.g. ci-runner or ann.lee"
        )
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    wanted = tuple(dict.fromkeys(roles))
    if not wanted:
        raise ValueError(f"a token needs at least one role: {', '.join(ROLES)}")
    unknown = [role for role in wanted if role not in ROLES]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r}; roles are {', '.join(ROLES)}")
    return name, kind, wanted


def _taken(name: str) -> Conflict:
    return Conflict(
        f"a token named '{name}' already exists; revoke it first "
        f"(`noetl-agent tokens revoke {name}`) or choose another name"
    )


def _missing(name: str) -> NotFound:
    return NotFound(f"no token named '{name}'; list them with `noetl-agent tokens list`")


def _refused() -> Unauthorized:
    return Unauthorized(
        "the bearer token is unknown or revoked; create one with `noetl-agent tokens create`"
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class MemoryTokenStore:
    """``TokenStore`` in a dict keyed by digest; nothing survives the process."""

    def __init__(self) -> None:
        self._by_digest: dict[str, TokenInfo] = {}

    async def create(self, name: str, kind: str, roles: Iterable[str]) -> str:
        name, kind, wanted = checked(name, kind, roles)
        if any(info.name == name for info in self._by_digest.values()):
            raise _taken(name)
        token = new_token()
        self._by_digest[digest(token)] = TokenInfo(name, kind, wanted, _now())
        return token

    async def authenticate(self, token: str) -> Principal:
        info = self._by_digest.get(digest(token))
        if info is None:
            raise _refused()
        return info.principal

    async def list(self) -> list[TokenInfo]:
        return sorted(self._by_digest.values(), key=lambda info: info.name)

    async def revoke(self, name: str) -> None:
        for key, info in list(self._by_digest.items()):
            if info.name == name:
                del self._by_digest[key]
                return
        raise _missing(name)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    name         TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    roles        TEXT NOT NULL,
    created_at   TEXT NOT NULL
)
"""


class SqliteTokenStore:
    """``TokenStore`` in the ``api_tokens`` table of an embedded SQLite database."""

    def __init__(self, db: SqliteDatabase) -> None:
        """Use ``db`` (its connection and lock); create the table if it is missing."""
        self._db = db
        with db.writing() as conn:
            conn.execute(_SCHEMA)

    async def create(self, name: str, kind: str, roles: Iterable[str]) -> str:
        name, kind, wanted = checked(name, kind, roles)
        token = new_token()
        with self._db.writing() as conn:
            if conn.execute("SELECT 1 FROM api_tokens WHERE name = ?", (name,)).fetchone():
                raise _taken(name)
            conn.execute(
                "INSERT INTO api_tokens (name, token_sha256, kind, roles, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, digest(token), kind, json.dumps(list(wanted)), _now()),
            )
        return token

    async def authenticate(self, token: str) -> Principal:
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT name, kind, roles, created_at FROM api_tokens WHERE token_sha256 = ?",
                (digest(token),),
            ).fetchone()
        if row is None:
            raise _refused()
        return _info(row).principal

    async def list(self) -> list[TokenInfo]:
        with self._db.reading() as conn:
            rows = conn.execute(
                "SELECT name, kind, roles, created_at FROM api_tokens ORDER BY name"
            ).fetchall()
        return [_info(row) for row in rows]

    async def revoke(self, name: str) -> None:
        with self._db.writing() as conn:
            deleted = conn.execute("DELETE FROM api_tokens WHERE name = ?", (name,)).rowcount
        if not deleted:
            raise _missing(name)


def _info(row: tuple[str, str, str, str]) -> TokenInfo:
    return TokenInfo(row[0], row[1], tuple(json.loads(row[2])), row[3])


_PG_LIVE_NAME = "SELECT 1 FROM {s}.api_token WHERE name = $1 AND revoked_at IS NULL"
_PG_INSERT = (
    "INSERT INTO {s}.api_token (id, token_hash, name, kind, roles) VALUES ($1, $2, $3, $4, $5)"
)
_PG_COLUMNS = "name, kind, roles, created_at"
_PG_BY_HASH = (
    f"SELECT {_PG_COLUMNS} FROM {{s}}.api_token WHERE token_hash = $1 AND revoked_at IS NULL"
)
_PG_LIST = f"SELECT {_PG_COLUMNS} FROM {{s}}.api_token WHERE revoked_at IS NULL ORDER BY name"
_PG_REVOKE = (
    "UPDATE {s}.api_token SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL"
    " RETURNING id"
)


class PostgresTokenStore:
    """``TokenStore`` in the ``api_token`` table of a migrated ``PostgresDatabase`` schema.

    Creating holds a transaction-level advisory lock on the name, so two servers creating
    one name at once give one token and one ``Conflict``."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._live_name = db.sql(_PG_LIVE_NAME)
        self._insert = db.sql(_PG_INSERT)
        self._by_hash = db.sql(_PG_BY_HASH)
        self._list = db.sql(_PG_LIST)
        self._revoke = db.sql(_PG_REVOKE)

    async def create(self, name: str, kind: str, roles: Iterable[str]) -> str:
        from engine.adapters.postgres.migrations import advisory_key  # the package loads asyncpg

        name, kind, wanted = checked(name, kind, roles)
        token = new_token()
        lock = advisory_key(self._db.schema, "api_token", name)
        async with self._db.transaction("create a token", [lock]) as conn:
            if await conn.fetchval(self._live_name, name):
                raise _taken(name)
            await conn.execute(
                self._insert, secrets.token_hex(16), digest(token), name, kind, list(wanted)
            )
        return token

    async def authenticate(self, token: str) -> Principal:
        async with self._db.connection("check a token") as conn:
            row = await conn.fetchrow(self._by_hash, digest(token))
        if row is None:
            raise _refused()
        return _pg_info(row).principal

    async def list(self) -> list[TokenInfo]:
        async with self._db.connection("list tokens") as conn:
            rows = await conn.fetch(self._list)
        return [_pg_info(row) for row in rows]

    async def revoke(self, name: str) -> None:
        async with self._db.connection("revoke a token") as conn:
            revoked = await conn.fetch(self._revoke, name)
        if not revoked:
            raise _missing(name)


def _pg_info(row: Any) -> TokenInfo:
    created: datetime = row["created_at"]
    stamp = created.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return TokenInfo(row["name"], row["kind"], tuple(row["roles"]), stamp)
