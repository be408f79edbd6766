"""Command rows are committed without waiting for the disk; the queue makes up for what a
crash of PostgreSQL loses. A PostgreSQL server of the test's own is restarted; the loss
itself is made by hand (a crash loses only what was not yet written, which a test cannot
time), by deleting the row the crash would have lost before the restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.adapters.nats.bus import CommandNote, NatsCommandBus
from engine.adapters.postgres import (
    DistributedCommandQueue,
    PostgresCommandStore,
    PostgresDatabase,
)
from engine.adapters.postgres.commands import global_command_id
from engine.core.commands import RunTool
from engine.errors import StoreError
from tests.distributed.cluster import PrivateNats, PrivatePostgres, require_nats
from tests.distributed_stack import distributed_stack
from tests.processes import NATS_URL


def command(step: str) -> RunTool:
    return RunTool("e1", step, f"{step}#1", ({"kind": "noop"},), {}, {})


async def _row_status(db: PostgresDatabase, command_id: str) -> str | None:
    async with db.connection("read a command") as conn:
        status: str | None = await conn.fetchval(
            "SELECT status FROM noetl.command WHERE command_id = $1", command_id
        )
    return status


@pytest.fixture
async def bus() -> AsyncIterator[NatsCommandBus]:
    require_nats()
    name = f"T_{uuid.uuid4().hex[:12]}"
    connected = await NatsCommandBus.connect(NATS_URL, stream=name, subject_prefix=f"test.{name}")
    try:
        yield connected
    finally:
        await connected.delete_stream()
        await connected.aclose()


async def test_stored_commands_are_let_go_once_the_database_flushed_them() -> None:
    async with distributed_stack() as stack:
        subscription = await stack.bus.subscribe("cpu")
        try:
            for step in ("a", "b", "c"):
                await stack.queue.submit(command(step))
            assert stack.queue.unflushed == 3

            async with asyncio.timeout(10):
                while stack.queue.unflushed:
                    assert await stack.queue.confirm() == 0  # nothing was lost
                    await asyncio.sleep(0.1)

            notes = []
            while (delivery := await subscription.next(timeout=0.5)) is not None:
                notes.append(delivery.note.command_id)
                await delivery.ack()
            assert sorted(notes) == [f"e1:{step}#1" for step in ("a", "b", "c")]
        finally:
            await subscription.aclose()


async def test_a_command_lost_without_a_restart_is_stored_and_announced_again() -> None:
    # A crash of one PostgreSQL backend resets the server without restarting it: the row
    # is gone while the start time stays. The queue checks rows before letting go.
    async with distributed_stack() as stack:
        subscription = await stack.bus.subscribe("cpu")
        try:
            lost = command("lost")
            await stack.queue.submit(lost)
            first = await subscription.next(timeout=5)
            assert first is not None
            await first.ack()
            async with stack.db.connection("lose a command") as conn:
                await conn.execute(
                    f'DELETE FROM "{stack.db.schema}".command WHERE command_id = $1',
                    global_command_id(lost),
                )

            restored = 0
            async with asyncio.timeout(10):
                while stack.queue.unflushed:
                    restored += await stack.queue.confirm()
                    await asyncio.sleep(0.1)

            assert restored == 1
            assert await _status_in(stack.db, global_command_id(lost)) == "queued"
            again = await subscription.next(timeout=5)
            assert again is not None, "the command stored again was not announced"
            assert again.note.command_id == global_command_id(lost)
            await again.ack()
        finally:
            await subscription.aclose()


async def _status_in(db: PostgresDatabase, command_id: str) -> str | None:
    async with db.connection("read a command") as conn:
        status: str | None = await conn.fetchval(
            f'SELECT status FROM "{db.schema}".command WHERE command_id = $1', command_id
        )
    return status


@pytest.mark.slow
async def test_commands_a_database_restart_lost_are_stored_and_announced_again(
    bus: NatsCommandBus,
) -> None:
    server = PrivatePostgres()
    server.init()
    try:
        db = await PostgresDatabase.open(server.dsn, min_size=1, max_size=4)
        try:
            await db.migrate()
            queue = DistributedCommandQueue(PostgresCommandStore(db), bus)
            await queue.confirm()  # the queue learns when the database started
            subscription = await bus.subscribe("cpu")
            kept, lost = command("kept"), command("lost")
            await queue.submit(kept)
            await queue.submit(lost)
            for _ in range(2):
                delivery = await subscription.next(timeout=5)
                assert delivery is not None
                await delivery.ack()  # taken; its claim would find no row after the crash

            async with db.connection("lose a command") as conn:
                await conn.execute(
                    "DELETE FROM noetl.command WHERE command_id = $1", global_command_id(lost)
                )
            server.stop("immediate")
            server.start()

            async with asyncio.timeout(20):
                while True:  # the pool's first use after the restart finds dead connections
                    try:
                        restored = await queue.reap()
                        break
                    except StoreError:
                        await asyncio.sleep(0.2)
            assert restored == 1
            assert await _row_status(db, global_command_id(lost)) == "queued"
            assert await _row_status(db, global_command_id(kept)) == "queued"
            again = await subscription.next(timeout=5)
            assert again is not None, "the command stored again was not announced"
            assert again.note.command_id == global_command_id(lost)
            await again.ack()
            assert await subscription.next(timeout=0.5) is None  # the kept one is not doubled
            await subscription.aclose()
        finally:
            await db.close()
    finally:
        server.remove()


async def test_a_note_published_while_nats_is_away_fails_at_once(tmp_path: Path) -> None:
    server = PrivateNats(tmp_path / "nats")
    server.start()
    try:
        bus = await NatsCommandBus.connect(server.url, stream="T_AWAY", subject_prefix="test.away")
        try:
            server.stop()
            async with asyncio.timeout(10):
                while bus.connected:
                    await asyncio.sleep(0.05)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(StoreError, match="not connected"):
                await bus.notify(CommandNote("e1", "e1:a#1", "cpu"))
            assert loop.time() - started < 1.0  # not the publish timeout (5 s)
        finally:
            await bus.aclose()
    finally:
        server.stop()
