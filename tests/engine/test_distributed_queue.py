"""The distributed queue end to end: the engine on PostgreSQL, notes on the real NATS,
workers that claim over HTTP, run with the tool runner and report over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from engine.adapters.nats.bus import CommandNote
from engine.adapters.postgres import DistributedCommandQueue
from engine.core import events as ev
from engine.core.commands import RunTool
from engine.core.events import Event
from engine.errors import Conflict
from engine.runtime.embedded import Engine
from noetl_agent.api import create_app
from noetl_agent.tokens import PostgresTokenStore
from tests.distributed_stack import DistributedStack, FakeWorker, distributed_stack

CONFORMANCE = Path(__file__).resolve().parents[3] / "shared" / "conformance"
CORPUS = [
    "hello_world/hello_world.yaml",
    "loop_test.yaml",
    "fanout_reduce/fanout_reduce_phase6.yaml",
]
ONE_STEP = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: one, path: dist/one}
workflow:
  - step: start
    tool: {kind: noop, input: {n: 1}}
    next: {arcs: [{step: finish}]}
  - step: finish
    tool: {kind: noop}
"""


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    """Wait until ``check`` holds, polling, at most ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


def command(execution_id: str = "e1", step: str = "start") -> RunTool:
    return RunTool(execution_id, step, f"{step}#1", ({"kind": "noop"},), {}, {})


@pytest.fixture
async def stack() -> AsyncIterator[DistributedStack]:
    async with distributed_stack(reap_interval=0.1) as started:
        yield started


@pytest.fixture
async def workers(stack: DistributedStack) -> AsyncIterator[list[FakeWorker]]:
    started = [FakeWorker(stack, f"worker-{n}") for n in range(2)]
    for worker in started:
        worker.start()
    yield started
    for worker in started:
        await worker.stop()


@pytest.mark.parametrize("name", CORPUS)
async def test_conformance_playbooks_complete_through_workers(
    stack: DistributedStack, workers: list[FakeWorker], name: str
) -> None:
    file = CONFORMANCE / name
    entry = await stack.engine.register(file.read_text(), source=str(file))

    execution_id = await stack.engine.execute(entry.path)
    outcome = await stack.engine.wait(execution_id, timeout=20)

    assert outcome.status == "completed", outcome.error
    assert sum(len(worker.claims) for worker in workers) >= 3
    await eventually(lambda: _all_done(stack))  # the last report's request may still run


async def test_an_abandoned_claim_is_announced_again_and_run_once(stack: DistributedStack):
    entry = await stack.engine.register(ONE_STEP)
    dying = FakeWorker(stack, "dying", lease=1, abandon={"start"})
    dying.start()
    execution_id = await stack.engine.execute(entry.path)
    await eventually(lambda: _true(bool(dying.abandoned)))
    await dying.stop()  # it never reports: its claim runs out after one second

    rescuer = FakeWorker(stack, "rescuer")
    rescuer.start()
    try:
        outcome = await stack.engine.wait(execution_id, timeout=15)
    finally:
        await rescuer.stop()

    assert outcome.status == "completed", outcome.error
    command_id = f"{execution_id}:start#1"
    assert dying.claims == [(command_id, 1)]
    assert (command_id, 2) in rescuer.claims
    final = [
        event
        for event in await stack.engine.events.read(execution_id)
        if event.event_type == ev.TOOL_PROCESSED
        and event.step_run_id == "start#1"
        and not event.payload.get("partial")
        and event.status == ev.STATUS_SUCCESS
    ]
    assert len(final) == 1


async def test_a_command_submitted_again_is_not_announced_again(stack: DistributedStack):
    subscription = await stack.bus.subscribe("cpu")

    await stack.queue.submit(command())
    await stack.queue.submit(command())

    first = await subscription.next(timeout=2)
    assert first is not None and first.note == CommandNote("e1", "e1:start#1", "cpu")
    await first.ack()
    assert await subscription.next(timeout=0.3) is None


async def test_queued_commands_of_recovered_executions_are_announced_again(
    stack: DistributedStack,
):
    subscription = await stack.bus.subscribe("cpu")
    await stack.store.put(command("e1", "lost"))  # stored, but its note never went out
    await stack.store.put(command("e2", "other"))

    assert await stack.queue.renotify(["e1"]) == 1

    delivery = await subscription.next(timeout=2)
    assert delivery is not None and delivery.note == CommandNote("e1", "e1:lost#1", "cpu")
    await delivery.ack()
    assert await subscription.next(timeout=0.3) is None


async def test_the_reaper_announces_commands_whose_note_was_lost(stack: DistributedStack):
    subscription = await stack.bus.subscribe("cpu")
    await stack.store.put(command("e1", "lost"))
    stack.queue.renotify_after = 0.2

    delivery = await subscription.next(timeout=5)

    assert delivery is not None and delivery.note.command_id == "e1:lost#1"
    await delivery.ack()


async def test_commands_left_when_an_execution_ends_are_cancelled(stack: DistributedStack):
    await stack.store.put(command("e1", "branch"))
    processed = Event("e1:9", ev.PLAYBOOK_PROCESSED, "e1", "2026-01-01T00:00:00Z")

    stack.queue.observe(processed)

    await eventually(lambda: _all_done(stack))


async def test_cancelling_an_execution_stops_its_claims(stack: DistributedStack):
    entry = await stack.engine.register(ONE_STEP)
    holder = FakeWorker(stack, "holder", abandon={"start"})
    holder.start()
    try:
        execution_id = await stack.engine.execute(entry.path)
        await eventually(lambda: _true(bool(holder.abandoned)))
        await stack.engine.cancel(execution_id)
        outcome = await stack.engine.wait(execution_id, timeout=10)
    finally:
        await holder.stop()
    assert outcome.status == "cancelled"
    with pytest.raises(Conflict, match="cancelled"):
        await stack.store.heartbeat(f"{execution_id}:start#1", "holder", 30)


async def test_a_restarted_server_finishes_what_the_stopped_one_started(
    stack: DistributedStack,
):
    entry = await stack.engine.register(ONE_STEP)
    execution_id = await stack.engine.execute(entry.path)
    await eventually(lambda: _has_queued(stack))
    await stack.engine.aclose()  # stopped with `start` queued and nobody working

    queue = DistributedCommandQueue(stack.store, stack.bus)
    restarted = Engine(stack.db.events, stack.db.catalog, queue=queue)
    stack.engine = restarted  # closed by the fixture
    stack.app = create_app(restarted, PostgresTokenStore(stack.db), commands=stack.store)
    worker = FakeWorker(stack, "after-restart")
    try:
        assert await restarted.recover() == [execution_id]
        assert await queue.renotify([execution_id]) == 1
        worker.start()
        outcome = await restarted.wait(execution_id, timeout=15)
    finally:
        await worker.stop()
        await queue.aclose()
    assert outcome.status == "completed", outcome.error
    assert [attempt for _, attempt in worker.claims] == [1, 1]  # start, then finish


async def _all_done(stack: DistributedStack) -> bool:
    return await stack.store.counts() == {}


async def _has_queued(stack: DistributedStack) -> bool:
    return bool(await stack.store.counts())


async def _true(value: bool) -> bool:
    return value
