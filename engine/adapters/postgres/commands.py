"""Commands handed to workers, and the claims on them, in PostgreSQL.

A command is stored once, under its global id ``execution_id:command_id`` (the
``RunTool.command_id`` is ``step_run_id``, plus ``/iteration`` for a loop iteration), with
its ``RunTool.to_dict()`` as ``body``. The row, not the NATS note announcing it, is the
source of truth: a worker learns from a note that there is work, then claims the command
here, and at most one worker holds an unexpired claim at a time.

Command rows and claims are committed without waiting for the disk (``flush=False``,
see ``PostgresDatabase.transaction``): dispatching a step costs no fsync beyond the one
of its events. Both can be rebuilt: the event log (flushed) says which commands an
execution has outstanding, so ``DistributedCommandQueue`` stores again what a crash of
PostgreSQL lost (see ``wal``), and a lost claim only returns its command to the queue,
as an expired lease does: its worker's next heartbeat is refused and the command runs
again (at least once, as after any lost claim).

    status      how it gets there
    queued      ``put`` (new); ``due_for_notice`` (a claim that expired)
    claimed     ``claim``: from queued, or from claimed when the lease expired or the
                claimant is the same worker; ``heartbeat`` moves the expiry on
    done        ``complete``: its final ``tool.processed`` was reported (also when the
                command had been cancelled: the result arrived all the same)
    failed      ``abandon``: claimed ``MAX_CLAIMS`` times, and each claim expired with
                no result (a poison command: its workers keep dying on it)
    cancelled   ``cancel_execution`` / ``cancel_finished``: the execution was cancelled
                or ended first

Each transition is one statement whose ``WHERE`` is the rule, so two workers claiming at
once cannot both win: the second ``UPDATE`` waits for the first row lock, re-reads the row
and no longer matches. ``attempts`` counts claims (a worker renewing its own claim does
not count again); times are the database's ``now()``, so workers' clocks do not matter.

Errors: ``NotFound`` for an unknown command, ``Conflict`` (saying why) when the command
is not the caller's to claim or keep, ``StoreError`` when the database fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from engine.core.commands import RunTool, global_id
from engine.errors import Conflict, NotFound, StoreError

if TYPE_CHECKING:
    from engine.adapters.postgres.stores import PostgresDatabase

MAX_LEASE = 600.0  # seconds a single claim or heartbeat may reserve a command for
MAX_CLAIMS = 5  # claims of one command whose worker never finished before it is failed
ACTIVE = ("queued", "claimed")
FINISHED_EXECUTION = ("completed", "failed", "cancelled")

_PUT = """
INSERT INTO {s}.command (command_id, execution_id, step_run_id, iteration, pool, body, status)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, 'queued')
ON CONFLICT (command_id) DO NOTHING
RETURNING command_id
"""
_CLAIM = """
UPDATE {s}.command
SET status = 'claimed',
    attempts = CASE WHEN status = 'claimed' AND claimed_by = $2 THEN attempts
                    ELSE attempts + 1 END,
    claimed_by = $2,
    claim_expires_at = now() + make_interval(secs => $3),
    updated_at = now()
WHERE command_id = $1
  AND (status = 'queued'
       OR (status = 'claimed' AND (claim_expires_at < now() OR claimed_by = $2)))
RETURNING body::text AS body, attempts, claim_expires_at
"""
_HEARTBEAT = """
UPDATE {s}.command
SET claim_expires_at = now() + make_interval(secs => $3), updated_at = now()
WHERE command_id = $1 AND status = 'claimed' AND claimed_by = $2
RETURNING claim_expires_at
"""
_HELD = """
SELECT body::text AS body FROM {s}.command
WHERE command_id = $1 AND status = 'claimed' AND claimed_by = $2 AND claim_expires_at > now()
"""
_HOLDERS = """
SELECT command_id, status, claimed_by FROM {s}.command WHERE command_id = ANY($1::text[])
"""
_STATE = """
SELECT status, claimed_by, claim_expires_at, claim_expires_at < now() AS expired
FROM {s}.command WHERE command_id = $1
"""
_COMPLETE = """
UPDATE {s}.command
SET status = 'done', claim_expires_at = NULL, updated_at = now()
WHERE command_id = ANY($1::text[]) AND status NOT IN ('done', 'failed')
"""
_CANCEL_EXECUTION = """
UPDATE {s}.command
SET status = 'cancelled', claim_expires_at = NULL, updated_at = now()
WHERE execution_id = $1 AND status IN ('queued', 'claimed')
"""
_CANCEL_FINISHED = """
UPDATE {s}.command AS c
SET status = 'cancelled', claim_expires_at = NULL, updated_at = now()
FROM {s}.execution AS e
WHERE c.status IN ('queued', 'claimed')
  AND e.execution_id = c.execution_id
  AND e.status IN ('completed', 'failed', 'cancelled')
"""
# SKIP LOCKED: a row a worker is claiming right now is left for the next pass.
_DUE = """
WITH due AS (
    SELECT command_id FROM {s}.command
    WHERE (status = 'claimed' AND claim_expires_at < now() AND attempts < $3)
       OR (status = 'queued' AND updated_at < now() - make_interval(secs => $1))
    ORDER BY updated_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE {s}.command AS c
SET status = 'queued', claimed_by = NULL, claim_expires_at = NULL, updated_at = now()
FROM due
WHERE c.command_id = due.command_id
RETURNING c.command_id, c.execution_id, c.pool, c.attempts
"""
# Claimed max_claims times and expired again: its workers keep dying on it.
_ABANDON = """
WITH dead AS (
    SELECT command_id FROM {s}.command
    WHERE status = 'claimed' AND claim_expires_at < now() AND attempts >= $1
    ORDER BY updated_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE {s}.command AS c
SET status = 'failed', claim_expires_at = NULL, updated_at = now()
FROM dead
WHERE c.command_id = dead.command_id
RETURNING c.command_id, c.body::text AS body, c.attempts, c.claimed_by
"""
_QUEUED_OF = """
SELECT command_id, execution_id, pool, attempts FROM {s}.command
WHERE execution_id = ANY($1::text[]) AND status = 'queued'
ORDER BY created_at
"""
_COUNTS = """
SELECT pool, status, count(*) AS n FROM {s}.command
WHERE status IN ('queued', 'claimed')
GROUP BY pool, status
"""
_PING = "SELECT count(*) FROM (SELECT 1 FROM {s}.command LIMIT 1) AS probe"
_EXISTING = "SELECT command_id FROM {s}.command WHERE command_id = ANY($1::text[])"
# Where the server's write-ahead log is: written so far, and flushed to disk so far (both
# as byte positions), and when the server started (a new start means a crash or restart).
_WAL = """
SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint AS written,
       pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint AS flushed,
       pg_postmaster_start_time() AS started
"""


def global_command_id(command: RunTool) -> str:
    """The id a command has across executions: ``execution_id:command_id``."""
    return global_id(command.execution_id, command.command_id)


class WalPosition(NamedTuple):
    """The server's write-ahead log: bytes written and flushed so far, and when the server
    started (a different start time means it restarted, and may have lost what was
    written but not flushed)."""

    written: int
    flushed: int
    started: datetime


class Holder(NamedTuple):
    """A command's status and who holds (or last held) its claim: ``claimed_by`` stays
    when the command is done, failed or cancelled, and is None while it is queued."""

    status: str
    claimed_by: str | None


class DueCommand(NamedTuple):
    """A command to announce (again): its global id, execution, pool and claims so far."""

    command_id: str
    execution_id: str
    pool: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Abandoned:
    """A command failed because every worker that claimed it died (or hung) with it."""

    command: RunTool
    claims: int
    last_worker: str


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim won: the command as ``RunTool.to_dict()`` gave it, the attempt number (1 for
    the first claim) and when the claim expires unless renewed."""

    command: dict[str, Any]
    attempt: int
    expires_at: datetime

    def run_tool(self) -> RunTool:
        return RunTool.from_dict(self.command)


def _lease(seconds: float) -> float:
    if not 0 < seconds <= MAX_LEASE:
        raise ValueError(f"a lease must be more than 0 and at most {MAX_LEASE:g} s, got {seconds}")
    return float(seconds)


def _body(command: RunTool) -> str:
    try:
        return json.dumps(
            command.to_dict(), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
    except (TypeError, ValueError) as e:
        raise StoreError(
            f"command {global_command_id(command)} (step `{command.step}`) holds a value that "
            f"is not JSON ({e}); step inputs and results must be JSON values"
        ) from e


class PostgresCommandStore:
    """The ``command`` table of a ``PostgresDatabase`` schema."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._put = db.sql(_PUT)
        self._claim = db.sql(_CLAIM)
        self._heartbeat = db.sql(_HEARTBEAT)
        self._state = db.sql(_STATE)
        self._held = db.sql(_HELD)
        self._holders = db.sql(_HOLDERS)
        self._complete = db.sql(_COMPLETE)
        self._cancel_execution = db.sql(_CANCEL_EXECUTION)
        self._cancel_finished = db.sql(_CANCEL_FINISHED)
        self._due = db.sql(_DUE)
        self._abandon = db.sql(_ABANDON)
        self._queued_of = db.sql(_QUEUED_OF)
        self._counts = db.sql(_COUNTS)
        self._ping = db.sql(_PING)
        self._wal = db.sql(_WAL)
        self._existing = db.sql(_EXISTING)

    async def put(self, command: RunTool) -> bool:
        """Store ``command`` as queued; False (changing nothing) when it is already stored.

        The commit does not wait for the disk: a crash of PostgreSQL right after may lose
        the row (see ``wal``)."""
        body = _body(command)
        async with self._db.transaction("store a command", flush=False) as conn:
            row = await conn.fetchrow(
                self._put,
                global_command_id(command),
                command.execution_id,
                command.step_run_id,
                command.iteration,
                command.pool,
                body,
            )
        return row is not None

    async def claim(self, command_id: str, worker_id: str, lease_seconds: float) -> Claim:
        """Hand the command to ``worker_id`` for ``lease_seconds``.

        Raises ``NotFound`` for an unknown id and ``Conflict`` when another worker holds an
        unexpired claim or the command is done or cancelled. The commit does not wait for
        the disk: a crash of PostgreSQL right after may return the command to the queue."""
        lease = _lease(lease_seconds)
        async with self._db.transaction("claim a command", flush=False) as conn:
            row = await conn.fetchrow(self._claim, command_id, worker_id, lease)
            if row is None:
                raise await self._refusal(conn, command_id, worker_id, "claim")
        return Claim(json.loads(row["body"]), int(row["attempts"]), row["claim_expires_at"])

    async def heartbeat(self, command_id: str, worker_id: str, lease_seconds: float) -> datetime:
        """Move the claim's expiry to ``lease_seconds`` from now; return the new expiry.

        Raises ``NotFound`` for an unknown id and ``Conflict`` when ``worker_id`` no longer
        holds the claim (it expired and was handed on, or the command ended)."""
        lease = _lease(lease_seconds)
        async with self._db.connection("renew a claim") as conn:
            expires = await conn.fetchval(self._heartbeat, command_id, worker_id, lease)
            if expires is None:
                raise await self._refusal(conn, command_id, worker_id, "renew")
        result: datetime = expires
        return result

    async def held(self, command_id: str, worker_id: str) -> dict[str, Any]:
        """The command (as ``RunTool.to_dict()``) while ``worker_id`` holds an unexpired
        claim on it: what a worker may ask about the command it runs.

        Raises ``NotFound`` for an unknown id and ``Conflict`` when the claim is not
        ``worker_id``'s or has expired (or the command ended)."""
        async with self._db.connection("read a claimed command") as conn:
            body = await conn.fetchval(self._held, command_id, worker_id)
            if body is None:
                raise await self._refusal(conn, command_id, worker_id, "use")
        held: dict[str, Any] = json.loads(body)
        return held

    async def holders(self, command_ids: Iterable[str]) -> dict[str, Holder]:
        """Status and claim holder of each of these commands that is stored, in one query
        (what the event routes check a worker's report against)."""
        wanted = list(dict.fromkeys(command_ids))
        if not wanted:
            return {}
        async with self._db.connection("read command claims") as conn:
            rows = await conn.fetch(self._holders, wanted)
        return {row["command_id"]: Holder(row["status"], row["claimed_by"]) for row in rows}

    async def complete(self, *command_ids: str) -> int:
        """Mark commands done (their final result was reported); return how many changed."""
        if not command_ids:
            return 0
        async with self._db.connection("complete commands") as conn:
            status = await conn.execute(self._complete, list(dict.fromkeys(command_ids)))
        return _count(status)

    async def cancel_execution(self, execution_id: str) -> int:
        """Cancel the execution's queued and claimed commands; return how many."""
        async with self._db.connection("cancel commands") as conn:
            return _count(await conn.execute(self._cancel_execution, execution_id))

    async def cancel_finished(self) -> int:
        """Cancel queued and claimed commands of executions that have ended; return how many."""
        async with self._db.connection("cancel commands of ended executions") as conn:
            return _count(await conn.execute(self._cancel_finished))

    async def due_for_notice(
        self, stale_after: float, limit: int = 500, *, max_claims: int = MAX_CLAIMS
    ) -> list[DueCommand]:
        """Commands whose note must go out again, oldest first, at most ``limit``.

        A claim whose lease expired goes back to queued (its worker is presumed dead)
        unless it was claimed ``max_claims`` times already (see :meth:`abandon`); a queued
        command nobody claimed for ``stale_after`` seconds (its note may be lost) stays
        queued. Both get ``updated_at`` bumped, so each is returned once per
        ``stale_after``."""
        if limit <= 0:
            return []
        async with self._db.connection("find commands to announce") as conn:
            rows = await conn.fetch(self._due, float(stale_after), limit, max_claims)
        return [_due(row) for row in rows]

    async def abandon(self, max_claims: int = MAX_CLAIMS, limit: int = 500) -> list[Abandoned]:
        """Fail the commands claimed ``max_claims`` times whose last claim expired too:
        status ``failed``, never handed out again (a late claim, heartbeat or result of
        the last worker is refused or ignored). Returns them, oldest first."""
        if max_claims < 1:
            raise ValueError(f"max_claims must be at least 1, got {max_claims}")
        if limit <= 0:
            return []
        async with self._db.connection("fail abandoned commands") as conn:
            rows = await conn.fetch(self._abandon, max_claims, limit)
        return [
            Abandoned(
                RunTool.from_dict(json.loads(row["body"])),
                int(row["attempts"]),
                str(row["claimed_by"] or "-"),
            )
            for row in rows
        ]

    async def queued(self, execution_ids: Iterable[str]) -> list[DueCommand]:
        """The queued commands of these executions, oldest first."""
        wanted = list(dict.fromkeys(execution_ids))
        if not wanted:
            return []
        async with self._db.connection("list queued commands") as conn:
            rows = await conn.fetch(self._queued_of, wanted)
        return [_due(row) for row in rows]

    async def counts(self) -> dict[tuple[str, str], int]:
        """How many commands are queued and claimed, by ``(pool, status)``."""
        async with self._db.connection("count commands") as conn:
            rows = await conn.fetch(self._counts)
        return {(row["pool"], row["status"]): int(row["n"]) for row in rows}

    async def wal(self) -> WalPosition:
        """Where the server's write-ahead log is: a row written before ``written`` is safe
        once ``flushed`` reaches it, unless ``started`` changes first (a restart)."""
        async with self._db.connection("read the write-ahead log position") as conn:
            row = await conn.fetchrow(self._wal)
        return WalPosition(int(row["written"]), int(row["flushed"]), row["started"])

    async def existing(self, command_ids: Iterable[str]) -> set[str]:
        """Which of these commands are stored."""
        wanted = list(dict.fromkeys(command_ids))
        if not wanted:
            return set()
        async with self._db.connection("look up commands") as conn:
            rows = await conn.fetch(self._existing, wanted)
        return {row["command_id"] for row in rows}

    async def ping(self) -> None:
        """Raise ``StoreError`` unless the database answers and the table is in place."""
        async with self._db.connection("read the command table") as conn:
            await conn.fetchval(self._ping)

    async def _refusal(
        self, conn: Any, command_id: str, worker_id: str, verb: str
    ) -> NotFound | Conflict:
        row = await conn.fetchrow(self._state, command_id)
        if row is None:
            return NotFound(
                f"no command '{command_id}'; the id is `execution_id:step_run_id[/iteration]` "
                "from the note (it may belong to another server's database)"
            )
        status = row["status"]
        claiming = verb == "claim"
        if status in ("done", "cancelled", "failed"):
            todo = "drop its note" if claiming else "stop running it"
            return Conflict(f"command '{command_id}' is {status}; {todo}")
        if status == "claimed" and row["claimed_by"] != worker_id:
            todo = (
                "drop the note (it is announced again if that claim expires)"
                if claiming
                else f"the claim of '{worker_id}' expired and was handed on: stop running it"
            )
            return Conflict(
                f"command '{command_id}' is claimed by worker '{row['claimed_by']}' until "
                f"{iso(row['claim_expires_at'])}; {todo}"
            )
        if status == "claimed" and row["expired"]:
            return Conflict(
                f"the claim of worker '{worker_id}' on command '{command_id}' expired at "
                f"{iso(row['claim_expires_at'])}; it is handed out again: stop running it"
            )
        return Conflict(
            f"worker '{worker_id}' cannot {verb} command '{command_id}': it is {status} and "
            "not held by this worker (the claim expired and was handed back)"
        )


def _due(row: Any) -> DueCommand:
    return DueCommand(row["command_id"], row["execution_id"], row["pool"], int(row["attempts"]))


def _count(status: str) -> int:
    """The row count of an asyncpg status string such as ``UPDATE 3``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


def iso(value: datetime | None) -> str:
    """``value`` as RFC 3339 in UTC with milliseconds (``-`` for None)."""
    if value is None:
        return "-"
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
