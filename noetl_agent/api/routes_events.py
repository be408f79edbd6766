"""Event routes: read an execution's log (with long polling), and take workers' reports.

In the distributed mode a report holding a command's final ``tool.processed`` (one
without ``partial``: the last tool of a pipeline, or the one that stopped it) also marks
that command done, once the engine has taken the report, so it is never handed out again.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from engine.core import events as ev
from engine.core.events import Event
from engine.runtime.embedded import Engine
from noetl_agent.api.deps import CommandLeases, CommandsDep, EngineDep, FeedDep, MetricsDep, allow
from noetl_agent.api.metrics import Metrics
from noetl_agent.api.models import MAX_BATCH, EventBatch, EventIn, events_from_json
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
    body: EventIn, engine: EngineDep, metrics: MetricsDep, commands: CommandsDep, _: Worker
) -> dict[str, int]:
    """Store one tool event of a worker and act on it (repeats are stored once)."""
    return await _ingest([body.to_event()], engine, metrics, commands)


async def _batch(request: Request) -> list[Event]:
    """The events of the body, read as ``EventBatch`` reads them (the busiest route:
    FastAPI would decode the JSON into Python objects first and validate those). The fast
    decoder reads a well-formed batch straight from the bytes; anything it refuses is
    parsed by ``EventBatch``, whose errors are worded as FastAPI words them."""
    raw = await request.body()
    events = events_from_json(raw)
    if events is not None:
        return events
    try:
        return [item.to_event() for item in EventBatch.model_validate_json(raw).events]
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    if not raw:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing])
    if any(error["type"] == "json_invalid" for error in errors):
        try:
            json.loads(raw)
        except json.JSONDecodeError as e:
            invalid = {
                "type": "json_invalid",
                "loc": ("body", e.pos),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": e.msg},
            }
            raise RequestValidationError([invalid], body=e.doc) from None
    raise RequestValidationError(
        [{**error, "loc": ("body", *error["loc"])} for error in errors], body=raw
    )


_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "title": "EventBatch",
                    "type": "object",
                    "required": ["events"],
                    "additionalProperties": False,
                    "properties": {
                        "events": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/EventIn"},
                            "minItems": 1,
                            "maxItems": MAX_BATCH,
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "/events/batch",
    responses=responses(400, 403, 404, 409, 413, 422),
    openapi_extra=_BATCH_BODY,
)
async def report_batch(
    _: Worker,  # first: the role is checked before the body is read
    events: Annotated[list[Event], Depends(_batch)],
    engine: EngineDep,
    metrics: MetricsDep,
    commands: CommandsDep,
) -> dict[str, int]:
    """Store a batch of worker events; 404 (storing none) if an execution is unknown."""
    return await _ingest(events, engine, metrics, commands)


async def _ingest(
    events: list[Event], engine: Engine, metrics: Metrics, commands: CommandLeases | None
) -> dict[str, int]:
    for execution_id in dict.fromkeys(event.execution_id for event in events):
        if not engine.is_live(execution_id):  # a live one is known: spare the round trip
            await engine.events.get_execution(execution_id)
    metrics.reported(len(events))
    await engine.report(events)
    if commands is not None:
        finished = [command_id for event in events if (command_id := _finished(event))]
        if finished:
            await commands.complete(*finished)
    return {"accepted": len(events)}


def _finished(event: Event) -> str | None:
    """The global id of the command whose final ``tool.processed`` ``event`` is, if it is."""
    if event.event_type != ev.TOOL_PROCESSED or event.payload.get("partial"):
        return None
    if not event.step_run_id:
        return None
    suffix = f"/{event.iteration}" if event.iteration is not None else ""
    return f"{event.execution_id}:{event.step_run_id}{suffix}"
