"""Event routes: read an execution's log (with long polling), and take workers' reports."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from engine.runtime.embedded import Engine
from noetl_agent.api.deps import EngineDep, FeedDep, MetricsDep, allow
from noetl_agent.api.metrics import Metrics
from noetl_agent.api.models import EventBatch, EventIn
from noetl_agent.api.problems import responses
from noetl_agent.principals import Principal

router = APIRouter(prefix="/api", tags=["events"])
Reader = Annotated[Principal, Depends(allow("viewer", "read execution events"))]
Worker = Annotated[Principal, Depends(allow("worker", "report events"))]
MAX_WAIT = 30.0


@router.get("/executions/{execution_id}/events", responses=responses(403, 404, 422))
async def read_events(
    execution_id: str,
    engine: EngineDep,
    feed: FeedDep,
    _: Reader,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT, description="Seconds to wait")] = 0,
) -> list[dict[str, Any]]:
    """The execution's events with ``seq > after_seq`` in order; with ``wait``, an empty
    answer is held until the next event arrives or ``wait`` seconds pass."""
    await engine.events.get_execution(execution_id)
    found = await feed.read(execution_id, lambda: engine.events.read(execution_id, after_seq), wait)
    return [event.to_dict() for event in found]


@router.post("/events", responses=responses(400, 403, 404, 409, 413, 422))
async def report(
    body: EventIn, engine: EngineDep, metrics: MetricsDep, _: Worker
) -> dict[str, int]:
    """Store one tool event of a worker and act on it (repeats are stored once)."""
    return await _ingest([body], engine, metrics)


@router.post("/events/batch", responses=responses(400, 403, 404, 409, 413, 422))
async def report_batch(
    body: EventBatch, engine: EngineDep, metrics: MetricsDep, _: Worker
) -> dict[str, int]:
    """Store a batch of worker events; 404 (storing none) if an execution is unknown."""
    return await _ingest(body.events, engine, metrics)


async def _ingest(items: list[EventIn], engine: Engine, metrics: Metrics) -> dict[str, int]:
    events = [item.to_event() for item in items]
    for execution_id in dict.fromkeys(event.execution_id for event in events):
        await engine.events.get_execution(execution_id)
    metrics.reported(len(events))
    await engine.report(events)
    return {"accepted": len(events)}
