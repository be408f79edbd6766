"""The pool's durable consumer follows the settings of the worker that subscribed last
(real NATS)."""

from __future__ import annotations

import uuid

import nats

from engine.adapters.nats.bus import NatsCommandBus
from tests.conftest import require_service
from tests.distributed_stack import NATS_URL, nats_up


async def test_a_worker_with_another_lease_updates_the_consumer():
    require_service(nats_up(), "NATS with JetStream at 127.0.0.1:4222")
    name = f"T_{uuid.uuid4().hex[:12]}"
    options = {"stream": name, "subject_prefix": f"test.{name}"}
    first = await NatsCommandBus.connect(NATS_URL, ack_wait=30, **options)
    second = await NatsCommandBus.connect(NATS_URL, ack_wait=6, max_deliver=7, **options)
    try:
        await (await first.subscribe("cpu")).aclose()
        await (await second.subscribe("cpu")).aclose()
        client = await nats.connect(NATS_URL)  # the consumer as JetStream sees it
        try:
            info = await client.jetstream().consumer_info(name, "workers-cpu")
        finally:
            await client.close()
        assert (info.config.ack_wait, info.config.max_deliver) == (6, 7)
    finally:
        await first.delete_stream()
        await first.aclose()
        await second.aclose()
