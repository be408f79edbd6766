"""The distributed worker over the machine's real NATS JetStream and a stand-in API server."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import pytest

from engine.adapters.nats.bus import CommandNote, NatsCommandBus
from engine.adapters.postgres.commands import global_command_id
from engine.core.commands import RunTool
from engine.worker.remote import Backoff, HttpWorkerRemote
from engine.worker.service import WorkerService
from tests.conftest import require_service
from tests.distributed_stack import NATS_URL, nats_up
from tests.engine.worker.fake_server import WORKER_TOKEN, FakeServer

ACK_WAIT = 1.0


class Stack:
    """A test stream, the fake server, and the workers started on them."""

    def __init__(self, stream: str, server: FakeServer) -> None:
        self.stream = stream
        self.server = server
        self.buses: list[NatsCommandBus] = []
        self.remotes: list[HttpWorkerRemote] = []
        self.services: list[tuple[WorkerService, asyncio.Task[None]]] = []

    async def bus(self) -> NatsCommandBus:
        bus = await NatsCommandBus.connect(
            NATS_URL,
            stream=self.stream,
            subject_prefix=f"test.{self.stream}",
            ack_wait=ACK_WAIT,
            max_deliver=5,
        )
        self.buses.append(bus)
        return bus

    async def worker(
        self, name: str, *, concurrency: int = 2, lease: float = 30.0, signals: bool = False
    ) -> WorkerService:
        remote = HttpWorkerRemote(
            self.server.url, WORKER_TOKEN, worker_id=name, backoff=Backoff(0.02, 2, 0.2)
        )
        self.remotes.append(remote)
        service = WorkerService(
            await self.bus(), remote, "cpu", concurrency, lease, grace=10, poll=0.2
        )
        self.services.append((service, asyncio.create_task(service.run(signals=signals))))
        return service

    async def publish(self, *commands: RunTool) -> list[str]:
        ids = []
        for command in commands:
            command_id = self.server.add(command)
            await self.buses[0].notify(CommandNote(command.execution_id, command_id, "cpu"))
            ids.append(command_id)
        return ids

    async def consumer(self) -> Any:
        """The pool's consumer as JetStream sees it (pending and un-acked counts)."""
        client = await nats.connect(NATS_URL)
        try:
            return await client.jetstream().consumer_info(self.stream, "workers-cpu")
        finally:
            await client.close()

    async def aclose(self) -> None:
        for service, task in self.services:
            service.stop()
            await asyncio.wait_for(task, 15)
        for remote in self.remotes:
            await remote.aclose()
        if self.buses:
            await self.buses[0].delete_stream()
        for bus in self.buses:
            await bus.aclose()


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    require_service(nats_up(), "NATS with JetStream at 127.0.0.1:4222")
    server = FakeServer()
    await server.start()
    stack = Stack(f"T_{uuid.uuid4().hex[:12]}", server)
    await stack.bus()  # the publisher's connection; it creates the stream
    try:
        yield stack
    finally:
        await stack.aclose()
        await server.stop()


def _shell(n: int, command: str, execution: str = "e1") -> RunTool:
    return RunTool(
        execution_id=execution,
        step=f"s{n}",
        step_run_id=f"s{n}#1",
        tools=({"kind": "shell", "command": command},),
        step_input={},
        context={},
    )


def _final(server: FakeServer, command_id: str) -> list[dict[str, Any]]:
    return [e for e in server.events_of(command_id) if e["event_type"] == "tool.processed"]


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_a_note_is_claimed_run_reported_and_acked(stack: Stack) -> None:
    await stack.worker("w1")
    python = RunTool(
        execution_id="e1",
        step="py",
        step_run_id="py#1",
        tools=({"kind": "python", "code": "def main(n):\n    return {'twice': n * 2}"},),
        step_input={"n": 21},
        context={},
    )
    [command_id] = await stack.publish(python)
    await stack.server.wait_for(lambda: command_id in stack.server.done)
    [final] = _final(stack.server, command_id)
    assert final["status"] == "success"
    assert final["payload"]["output"] == {"twice": 42}
    usage = final["payload"]["meta"]["usage"]
    assert usage["scope"] == "tool" and usage["wall_ms"] > 0 and usage["peak_rss_kb"] > 0
    assert stack.server.claims == [(command_id, "w1")]
    await _until(lambda: stack.services[0][0].completed == 1)
    consumer = await stack.consumer()
    assert consumer.num_ack_pending == 0 and consumer.num_pending == 0


async def test_a_note_claimed_elsewhere_is_acked_without_running(stack: Stack) -> None:
    command = _shell(1, "echo should-not-run")
    command_id = stack.server.add(command)
    stack.server.holders[command_id] = "someone-else"
    await stack.worker("w1")
    await stack.buses[0].notify(CommandNote("e1", command_id, "cpu"))
    await stack.server.wait_for(lambda: len(stack.server.claims) == 1)
    await asyncio.sleep(ACK_WAIT * 1.5)  # long enough for an un-acked note to come back
    assert stack.server.claims == [(command_id, "w1")]
    assert stack.server.events == {}
    consumer = await stack.consumer()
    assert consumer.num_ack_pending == 0 and consumer.num_redelivered == 0


async def test_two_workers_of_a_pool_split_the_work(stack: Stack) -> None:
    await stack.worker("w1", concurrency=2)
    await stack.worker("w2", concurrency=2)
    ids = await stack.publish(*(_shell(n, "sleep 0.3") for n in range(8)))
    await stack.server.wait_for(lambda: set(ids) <= stack.server.done, timeout=15)
    by_worker: dict[str, int] = {}
    for _, worker in stack.server.claims:
        by_worker[worker] = by_worker.get(worker, 0) + 1
    assert sorted(command for command, _ in stack.server.claims) == sorted(ids)  # once each
    assert set(by_worker) == {"w1", "w2"}, by_worker
    assert all(len(_final(stack.server, command_id)) == 1 for command_id in ids)


async def test_a_long_command_keeps_its_claim_and_its_note(stack: Stack) -> None:
    # The run outlasts JetStream's ack_wait; heartbeats (in progress) keep the note ours.
    await stack.worker("w1", concurrency=1, lease=0.6)
    await stack.worker("w2", concurrency=1, lease=0.6)
    [command_id] = await stack.publish(_shell(1, "sleep 2"))
    await stack.server.wait_for(lambda: command_id in stack.server.done, timeout=10)
    assert len(stack.server.claims) == 1
    assert len(stack.server.heartbeats) >= 3


async def test_sigterm_lets_the_running_command_finish_and_takes_no_more(stack: Stack) -> None:
    service = await stack.worker("w1", concurrency=1, signals=True)
    [first] = await stack.publish(_shell(1, "sleep 1; echo finished"))
    await stack.server.wait_for(lambda: stack.server.events_of(first) != [])  # it started
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(stack.services[0][1], 10)
    [final] = _final(stack.server, first)
    assert final["status"] == "success"
    assert final["payload"]["output"]["stdout"] == "finished\n"
    assert service.completed == 1
    [second] = await stack.publish(_shell(2, "echo later"))
    consumer = await stack.consumer()
    assert consumer.num_ack_pending == 0 and consumer.num_pending == 1  # left for others
    assert [command for command, _ in stack.server.claims] == [first]
    assert second not in stack.server.done


async def test_a_second_note_for_a_running_command_does_not_run_it_twice(stack: Stack) -> None:
    await stack.worker("w1", concurrency=2)
    command = _shell(1, "sleep 0.5")
    [command_id] = await stack.publish(command)
    await stack.server.wait_for(lambda: stack.server.claims != [])
    # The server announces it again (next attempt); it would hand it to the same worker.
    await stack.buses[0].notify(CommandNote("e1", command_id, "cpu"), attempt=2)
    await stack.server.wait_for(lambda: command_id in stack.server.done)
    await _until(lambda: stack.services[0][0].running == 0)
    assert stack.server.claims == [(command_id, "w1")]
    consumer = await stack.consumer()
    assert consumer.num_ack_pending == 0 and consumer.num_pending == 0


async def test_a_heartbeat_answered_409_cancels_the_run(stack: Stack) -> None:
    service = await stack.worker("w1", concurrency=1, lease=0.3)
    [command_id] = await stack.publish(_shell(1, "sleep 20"))
    await stack.server.wait_for(lambda: len(stack.server.heartbeats) >= 1)
    assert service.running == 1
    stack.server.lost.add(command_id)  # the server took the claim away
    await _until(lambda: service.running == 0, timeout=5)
    assert service.completed == 0
    assert _final(stack.server, command_id) == [] and command_id not in stack.server.done
    await asyncio.sleep(ACK_WAIT * 1.5)  # long enough for a released note to come back
    assert stack.server.claims == [(command_id, "w1")]  # the note is not ours any more
    consumer = await stack.consumer()
    assert consumer.num_ack_pending == 0 and consumer.num_pending == 0


async def test_a_report_answered_409_cancels_the_run_before_any_heartbeat(stack: Stack) -> None:
    service = await stack.worker("w1", concurrency=1, lease=30.0)  # first heartbeat at 10 s
    command = _shell(1, "sleep 20")
    stack.server.lost.add(global_command_id(command))  # its claim goes to another token at once
    [command_id] = await stack.publish(command)
    await _until(lambda: service.running == 0 and stack.server.claims != [], timeout=5)
    assert stack.server.refused_reports and stack.server.refused_reports[0] == [command_id]
    assert stack.server.heartbeats == []  # the refused report stopped it, not a heartbeat
    assert service.completed == 0
    assert stack.server.events_of(command_id) == [] and command_id not in stack.server.done
    consumer = await stack.consumer()
    assert consumer.num_ack_pending == 0 and consumer.num_pending == 0
