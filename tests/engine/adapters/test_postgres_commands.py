"""The command store: one claim at a time, leases, heartbeats, completion, cancellation
and what the reaper picks up, against the real PostgreSQL server (a schema per test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.adapters.postgres import DueCommand, PostgresCommandStore, PostgresDatabase
from engine.adapters.postgres.commands import Claim, global_command_id
from engine.core.commands import RunTool
from engine.core.templates import StepResult
from engine.errors import Conflict, NotFound
from tests.conformance.conftest import fresh_postgres, require_postgres


def command(
    execution_id: str = "e1",
    step: str = "fetch",
    run: int = 1,
    iteration: int | None = None,
    pool: str = "cpu",
) -> RunTool:
    return RunTool(
        execution_id=execution_id,
        step=step,
        step_run_id=f"{step}#{run}",
        tools=({"kind": "noop", "input": {"a": "{{ a }}"}},),
        step_input={"a": 1},
        context={"earlier": StepResult({"x": 1}), "a": 1},
        iteration=iteration,
        timeout=2.5,
        pool=pool,
    )


@pytest.fixture
async def db() -> AsyncIterator[PostgresDatabase]:
    async with fresh_postgres(await require_postgres(), max_size=12) as database:
        yield database


@pytest.fixture
def store(db: PostgresDatabase) -> PostgresCommandStore:
    return PostgresCommandStore(db)


async def _sql(db: PostgresDatabase, statement: str, *args: Any) -> list[Any]:
    async with db.connection("test") as conn:
        return list(await conn.fetch(db.sql(statement), *args))


async def _expire(db: PostgresDatabase, command_id: str) -> None:
    """Let the command's claim run out, as if its lease had passed."""
    await _sql(
        db,
        "UPDATE {s}.command SET claim_expires_at = now() - interval '1 second'"
        " WHERE command_id = $1",
        command_id,
    )


async def _status(db: PostgresDatabase, command_id: str) -> str:
    rows = await _sql(db, "SELECT status FROM {s}.command WHERE command_id = $1", command_id)
    return str(rows[0]["status"])


def test_the_global_id_joins_execution_step_run_and_iteration() -> None:
    assert global_command_id(command()) == "e1:fetch#1"
    assert global_command_id(command(iteration=3)) == "e1:fetch#1/3"


async def test_put_stores_a_command_once(store: PostgresCommandStore, db: PostgresDatabase):
    assert await store.put(command()) is True
    assert await store.put(command()) is False
    assert await store.put(command(iteration=0)) is True
    rows = await _sql(
        db, "SELECT command_id, step_run_id, iteration, status, attempts FROM {s}.command"
    )
    assert sorted(tuple(row) for row in rows) == [
        ("e1:fetch#1", "fetch#1", None, "queued", 0),
        ("e1:fetch#1/0", "fetch#1", 0, "queued", 0),
    ]


async def test_a_claim_hands_out_the_command_once(store: PostgresCommandStore):
    original = command(iteration=2)
    await store.put(original)

    claim = await store.claim("e1:fetch#1/2", "worker-a", 30)

    assert isinstance(claim, Claim) and claim.attempt == 1
    assert claim.run_tool() == original
    assert isinstance(claim.run_tool().context["earlier"], StepResult)
    with pytest.raises(Conflict, match="claimed by worker 'worker-a' until"):
        await store.claim("e1:fetch#1/2", "worker-b", 30)
    again = await store.claim("e1:fetch#1/2", "worker-a", 30)  # a retried request
    assert again.attempt == 1


async def test_of_concurrent_claims_exactly_one_wins(store: PostgresCommandStore):
    await store.put(command())

    outcomes = await asyncio.gather(
        *(store.claim("e1:fetch#1", f"worker-{n}", 30) for n in range(10)),
        return_exceptions=True,
    )

    won = [o for o in outcomes if isinstance(o, Claim)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(won) == 1 and len(refused) == 9, outcomes
    assert won[0].attempt == 1


async def test_an_expired_claim_can_be_taken_by_another_worker(
    store: PostgresCommandStore, db: PostgresDatabase
):
    await store.put(command())
    await store.claim("e1:fetch#1", "worker-a", 30)
    await _expire(db, "e1:fetch#1")

    taken = await store.claim("e1:fetch#1", "worker-b", 30)

    assert taken.attempt == 2
    with pytest.raises(Conflict, match="'worker-a' expired and was handed on"):
        await store.heartbeat("e1:fetch#1", "worker-a", 30)
    await _expire(db, "e1:fetch#1")
    await store.due_for_notice(stale_after=60)  # the reaper hands it back
    with pytest.raises(Conflict, match="not held by this worker"):
        await store.heartbeat("e1:fetch#1", "worker-b", 30)


async def test_a_heartbeat_extends_the_claim_of_its_holder_only(store: PostgresCommandStore):
    await store.put(command())
    claim = await store.claim("e1:fetch#1", "worker-a", 5)

    extended = await store.heartbeat("e1:fetch#1", "worker-a", 120)

    assert (extended - claim.expires_at).total_seconds() > 100
    with pytest.raises(Conflict, match="claimed by worker 'worker-a'"):
        await store.heartbeat("e1:fetch#1", "worker-b", 30)
    with pytest.raises(NotFound, match="no command 'e1:nope#1'"):
        await store.heartbeat("e1:nope#1", "worker-a", 30)


async def test_a_completed_command_is_never_handed_out_again(
    store: PostgresCommandStore, db: PostgresDatabase
):
    await store.put(command())
    await store.claim("e1:fetch#1", "worker-a", 30)

    assert await store.complete("e1:fetch#1", "e1:unknown#1") == 1
    assert await store.complete("e1:fetch#1") == 0

    with pytest.raises(Conflict, match="is done"):
        await store.claim("e1:fetch#1", "worker-b", 30)
    with pytest.raises(Conflict, match="is done"):
        await store.heartbeat("e1:fetch#1", "worker-a", 30)
    assert await store.due_for_notice(0) == []
    assert await _status(db, "e1:fetch#1") == "done"


async def test_cancelling_an_execution_refuses_its_claims_and_heartbeats(
    store: PostgresCommandStore,
):
    await store.put(command(step="a"))
    await store.put(command(step="b"))
    await store.put(command(execution_id="e2"))
    await store.claim("e1:a#1", "worker-a", 30)

    assert await store.cancel_execution("e1") == 2

    with pytest.raises(Conflict, match="cancelled"):
        await store.heartbeat("e1:a#1", "worker-a", 30)
    with pytest.raises(Conflict, match="cancelled"):
        await store.claim("e1:b#1", "worker-b", 30)
    assert (await store.claim("e2:fetch#1", "worker-b", 30)).attempt == 1


async def test_unknown_commands_and_bad_leases_are_refused(store: PostgresCommandStore):
    with pytest.raises(NotFound, match="no command 'e9:x#1'"):
        await store.claim("e9:x#1", "worker-a", 30)
    await store.put(command())
    for lease in (0, -1, 601):
        with pytest.raises(ValueError, match="lease"):
            await store.claim("e1:fetch#1", "worker-a", lease)


async def test_due_for_notice_requeues_expired_claims_and_stale_queued_commands(
    store: PostgresCommandStore, db: PostgresDatabase
):
    await store.put(command(step="waiting"))
    await store.put(command(step="held", pool="gpu"))
    await store.put(command(step="abandoned"))
    await store.claim("e1:held#1", "worker-a", 30)
    await store.claim("e1:abandoned#1", "worker-a", 30)
    await _expire(db, "e1:abandoned#1")

    fresh_only = await store.due_for_notice(stale_after=60)
    assert fresh_only == [DueCommand("e1:abandoned#1", "e1", "cpu", 1)]
    assert await _status(db, "e1:abandoned#1") == "queued"
    assert await store.due_for_notice(stale_after=60) == []  # each is returned once

    stale = await store.due_for_notice(stale_after=0)
    assert sorted(stale) == [
        DueCommand("e1:abandoned#1", "e1", "cpu", 1),
        DueCommand("e1:waiting#1", "e1", "cpu", 0),
    ]
    assert (await store.claim("e1:abandoned#1", "worker-b", 30)).attempt == 2
    assert len(await store.due_for_notice(stale_after=0, limit=1)) == 1


async def test_commands_of_ended_executions_are_cancelled(
    store: PostgresCommandStore, db: PostgresDatabase
):
    await store.put(command(execution_id="ended"))
    await store.put(command(execution_id="running"))
    for execution_id, status in (("ended", "failed"), ("running", "running")):
        await _sql(
            db,
            "INSERT INTO {s}.execution (execution_id, playbook_path, status, started_at)"
            " VALUES ($1, 'p', $2, '2026-01-01T00:00:00Z')",
            execution_id,
            status,
        )

    assert await store.cancel_finished() == 1

    assert await _status(db, "ended:fetch#1") == "cancelled"
    assert await _status(db, "running:fetch#1") == "queued"


async def test_queued_commands_of_executions_and_queue_depth(store: PostgresCommandStore):
    await store.put(command(step="a"))
    await store.put(command(step="b", pool="gpu"))
    await store.put(command(step="c", pool="gpu"))
    await store.put(command(execution_id="e2"))
    await store.claim("e1:b#1", "worker-a", 30)
    await store.put(command(step="d"))
    await store.complete("e1:d#1")

    assert [due.command_id for due in await store.queued(["e1"])] == ["e1:a#1", "e1:c#1"]
    assert await store.queued([]) == []
    assert await store.counts() == {
        ("cpu", "queued"): 2,
        ("gpu", "queued"): 1,
        ("gpu", "claimed"): 1,
    }
    await store.ping()
