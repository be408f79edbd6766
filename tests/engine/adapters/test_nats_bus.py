"""Command notes over the machine's real NATS JetStream server."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest

from engine.adapters.nats.bus import CommandNote, NatsCommandBus, check_pool
from tests.conftest import require_service

NATS_URL = "nats://127.0.0.1:4222"


def _nats_up() -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", 4222)) == 0


@pytest.fixture
async def bus() -> AsyncIterator[NatsCommandBus]:
    require_service(_nats_up(), "NATS with JetStream at 127.0.0.1:4222")
    name = f"T_{uuid.uuid4().hex[:12]}"
    bus = await NatsCommandBus.connect(
        NATS_URL, stream=name, subject_prefix=f"test.{name}", ack_wait=1.0, max_deliver=3
    )
    try:
        yield bus
    finally:
        await bus.delete_stream()
        await bus.aclose()


async def test_a_note_reaches_one_worker_of_its_pool(bus: NatsCommandBus) -> None:
    first = await bus.subscribe("cpu")
    second = await bus.subscribe("cpu")
    other = await bus.subscribe("gpu")
    await bus.notify(CommandNote("e1", "e1:start#1", "cpu"))
    got = [await first.next(timeout=2), await second.next(timeout=0.3)]
    delivered = [d for d in got if d is not None]
    assert [d.note for d in delivered] == [CommandNote("e1", "e1:start#1", "cpu")]
    await delivered[0].ack()
    assert await other.next(timeout=0.3) is None


async def test_an_unacknowledged_note_is_delivered_again(bus: NatsCommandBus) -> None:
    subscription = await bus.subscribe("cpu")
    await bus.notify(CommandNote("e2", "e2:a#1", "cpu"))
    first = await subscription.next(timeout=2)
    assert first is not None and first.deliveries == 1
    again = await subscription.next(timeout=3)  # ack_wait is 1 s
    assert again is not None and again.note == first.note and again.deliveries == 2
    await again.ack()
    assert await subscription.next(timeout=1.5) is None


async def test_the_same_notification_is_stored_once(bus: NatsCommandBus) -> None:
    subscription = await bus.subscribe("cpu")
    note = CommandNote("e3", "e3:a#1", "cpu")
    await bus.notify(note)
    await bus.notify(note)
    await bus.notify(note, attempt=2)  # a re-notification after a lost claim is new
    received = []
    while (delivery := await subscription.next(timeout=0.5)) is not None:
        received.append(delivery.note)
        await delivery.ack()
    assert received == [note, note]


def test_pool_names_are_single_subject_tokens() -> None:
    assert check_pool("gpu-a100") == "gpu-a100"
    with pytest.raises(ValueError, match="not allowed"):
        check_pool("cpu.large")


async def test_an_unreachable_server_is_a_clear_error() -> None:
    from engine.errors import StoreError

    with pytest.raises(StoreError, match="cannot reach NATS"):
        await NatsCommandBus.connect("nats://127.0.0.1:1")
