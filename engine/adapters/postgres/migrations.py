"""Versioned schema of the PostgreSQL backend, and how it is brought up to date.

Every object lives in one schema (``noetl`` unless configured otherwise, so tests and
several installations can share a database). ``apply_migrations`` creates the schema if
needed and runs, in one transaction, every migration newer than the highest version
recorded in its ``schema_version`` table. The transaction first takes an advisory lock
derived from the schema name, so two servers starting at once run the migrations once:
the second waits, then finds nothing left to do. A database migrated by a newer program
(a version this one does not know) is refused rather than written to.

Migrations are ordered and append-only: never edit a released one, add the next. Their
SQL names objects without a schema; it runs with ``search_path`` set to the target schema
for the length of the transaction.

Tables of version 1:

    event           the append-only log: ``id`` is the global position, ``seq`` the position
                    within its execution; ``timestamp`` is the event's time when it parses as
                    RFC 3339 (for time-range queries), ``timestamp_text`` the exact text
    execution       the execution listing, projected from lifecycle events on append
    catalog         playbook versions, one row per ``(path, version)``
    credential      encrypted credentials of the distributed mode
    api_token       hashed API tokens of principals
    command         commands handed to workers, with their claim leases
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from engine.errors import StoreError

_SCHEMA_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: ``sql`` may hold several statements."""

    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "event log, execution listing, catalog, credentials, API tokens, commands",
        """
        CREATE TABLE event (
            id             bigserial   PRIMARY KEY,
            execution_id   text        NOT NULL,
            seq            bigint      NOT NULL CHECK (seq >= 1),
            event_id       text        NOT NULL,
            event_type     text        NOT NULL,
            "timestamp"    timestamptz,
            timestamp_text text        NOT NULL,
            entity_type    text,
            entity_id      text,
            parent_id      text,
            step_run_id    text,
            iteration      bigint,
            attempt        bigint,
            status         text,
            duration_ms    bigint,
            payload        jsonb       NOT NULL
        );
        CREATE UNIQUE INDEX event_execution_seq ON event (execution_id, seq);
        CREATE UNIQUE INDEX event_execution_event_id ON event (execution_id, event_id);
        CREATE INDEX event_execution_type ON event (execution_id, event_type);
        CREATE INDEX event_execution_entity ON event (execution_id, entity_type, entity_id);
        CREATE INDEX event_type_timestamp ON event (event_type, "timestamp");

        CREATE TABLE execution (
            id                  bigserial PRIMARY KEY,
            execution_id        text      NOT NULL UNIQUE,
            playbook_path       text      NOT NULL,
            playbook_version    bigint,
            status              text      NOT NULL,
            started_at          text      COLLATE "C" NOT NULL,
            finished_at         text,
            parent_execution_id text,
            error               text
        );
        CREATE INDEX execution_started ON execution (started_at, id);
        CREATE INDEX execution_status_started ON execution (status, started_at, id);

        CREATE TABLE catalog (
            path          text        COLLATE "C" NOT NULL,
            version       integer     NOT NULL CHECK (version >= 1),
            name          text        NOT NULL,
            content       text        NOT NULL,
            description   text,
            source        text,
            registered_at timestamptz NOT NULL,
            PRIMARY KEY (path, version)
        );

        CREATE TABLE credential (
            name       text        PRIMARY KEY,
            kind       text        NOT NULL,
            ciphertext bytea       NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE api_token (
            id         text        PRIMARY KEY,
            token_hash text        NOT NULL UNIQUE,
            name       text        NOT NULL,
            kind       text        NOT NULL,
            roles      text[]      NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        );

        CREATE TABLE command (
            command_id       text        PRIMARY KEY,
            execution_id     text        NOT NULL,
            step_run_id      text        NOT NULL,
            iteration        bigint,
            pool             text        NOT NULL,
            body             jsonb       NOT NULL,
            status           text        NOT NULL,
            attempts         integer     NOT NULL DEFAULT 0,
            claimed_by       text,
            claim_expires_at timestamptz,
            created_at       timestamptz NOT NULL DEFAULT now(),
            updated_at       timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX command_status_claim ON command (status, claim_expires_at);
        CREATE INDEX command_execution ON command (execution_id);
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def quote_schema(name: str) -> str:
    """Return ``name`` as a quoted SQL identifier.

    Raises ``StoreError`` unless it is a plain lower-case identifier of at most 63
    characters (letters, digits, underscores; not starting with a digit).
    """
    if not _SCHEMA_NAME_RE.match(name):
        raise StoreError(
            f"{name!r} is not a usable schema name; use lower-case letters, digits and "
            "underscores, starting with a letter or underscore, at most 63 characters"
        )
    return f'"{name}"'


def advisory_key(schema: str, scope: str, name: str = "") -> int:
    """A 64-bit advisory lock key for ``name`` within ``scope`` of ``schema``.

    Computed here rather than with ``hashtext`` so that a transaction can take its locks
    in the same round trip as its ``BEGIN``, and so that installations in different
    schemas of one database never wait for each other.
    """
    text = f"{schema}\x1f{scope}\x1f{name}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big", signed=True)


async def apply_migrations(conn: Any, schema: str) -> int:
    """Bring ``schema`` up to date on the asyncpg connection ``conn``; return its version.

    Runs in one transaction under an advisory lock, so concurrent callers apply each
    migration once. Raises ``StoreError`` when the schema is newer than this program;
    errors of the database propagate as asyncpg exceptions.
    """
    quoted = quote_schema(schema)
    # Read committed whatever the server's default: each statement must see what a
    # migrator that held the lock before committed.
    async with conn.transaction(isolation="read_committed"):
        await conn.execute("SELECT pg_advisory_xact_lock($1)", advisory_key(schema, "migrate"))
        # Only when missing: creating needs a privilege on the database that a role given
        # a ready-made schema may lack.
        if await conn.fetchval("SELECT to_regnamespace($1) IS NULL", quoted):
            await conn.execute(f"CREATE SCHEMA {quoted}")
        await conn.execute(f"SET LOCAL search_path TO {quoted}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY,"
            " description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = int(await conn.fetchval("SELECT COALESCE(max(version), 0) FROM schema_version"))
        if current > LATEST_VERSION:
            raise StoreError(
                f"the PostgreSQL schema {schema!r} has schema version {current}, newer than "
                f"this program knows ({LATEST_VERSION}); upgrade noetl-agent to use it"
            )
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_version (version, description) VALUES ($1, $2)",
                migration.version,
                migration.description,
            )
        return LATEST_VERSION
