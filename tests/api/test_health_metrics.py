"""GET /health and GET /metrics: open to probes, no token needed."""

from __future__ import annotations

import re

from engine.core.events import Event
from noetl_agent.api.metrics import Metrics
from tests.api.conftest import GATE, HELLO, start


async def test_health_is_ok_while_the_store_reads_and_503_when_it_cannot(api, stack):
    healthy = await api.get("/health")
    assert healthy.status_code == 200
    assert healthy.json() == {
        "status": "ok",
        "checks": {"event_store": "ok", "catalog": "ok", "tokens": "ok"},
    }
    stack.db.close()
    broken = await api.get("/health")
    assert broken.status_code == 503
    assert broken.json()["status"] == "unavailable"
    assert broken.json()["checks"]["event_store"].startswith("error: ")


def _sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} missing from\n{text}"
    return float(match[1])


async def test_metrics_count_executions_steps_and_events(api, stack):
    await start(api, stack, HELLO)
    await start(api, stack, GATE)
    response = await api.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert "# TYPE noetl_executions gauge" in text
    assert _sample(text, 'noetl_executions{status="completed"}') == 1
    assert _sample(text, 'noetl_executions{status="paused"}') == 1
    assert _sample(text, 'noetl_executions{status="failed"}') == 0
    assert _sample(text, "noetl_steps_started_total") == 3  # start, start, review
    assert _sample(text, 'noetl_steps_finished_total{status="success"}') == 2
    stored = await stack.engine.events.read_all(limit=10_000)
    assert _sample(text, "noetl_events_ingested_total") == len(stored)  # registrations too
    assert _sample(text, "noetl_events_ingested_per_second") > 0


def test_the_ingestion_rate_covers_the_last_minute_only():
    now = [1000.0]
    metrics = Metrics(clock=lambda: now[0])
    event = Event("e", "tool.started", "x", "2024-01-01T00:00:00Z")
    for _ in range(120):
        metrics(event)
    now[0] += 30
    assert metrics.rate() == 120 / 30
    now[0] += 31
    assert metrics.rate() == 0
    assert metrics.events_ingested == 120
