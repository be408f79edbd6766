"""Event routes: read an execution's log (with long polling), and take workers' reports.

In the distributed mode a report holding a command's final ``tool.processed`` (one
without ``partial``: the last tool of a pipeline, or the one that stopped it) also marks
that command done, once the engine has taken the report, so it is never handed out again.

Reports are bound to claims in the distributed mode. Every event a worker reports is
about one command, ``execution_id:step_run_id[/iteration]`` (``command_id_of``), and a
report is taken only from the token whose claim holds every command it names: a claim is
held by ``WORKER_ID (token NAME)`` and the token name decides (``routes_commands``).
After the executions are found (an unknown one is 404 first), one query reads the
commands' rows, and each command decides by this table:

    the command is                  from the claim's token       from any other token
    claimed (its lease may have     taken                        refused
      run out, if not handed on)
    done or cancelled               taken: a re-send after a     refused
                                    lost answer is stored once
    queued (a claim expired and     refused                      refused
      was handed back)
    failed (claims exhausted)       refused                      refused
    not stored                      refused: the server runs the step itself (an approval,
                                    a sub-playbook) or the id is not of this server

An event naming no step run is about no command and is refused too. A refusal is a 409
conflict problem whose ``commands`` lists the refused command ids, and a report is taken
whole or not at all: nothing of a refused one is stored, so it cannot change or lose
anything stored before. The worker drops the events of those commands and stops running
them, as when a heartbeat is refused (``engine.worker.remote``); a refusal is never 403,
which a worker takes for a token without the worker role and stops on.

Admin tokens are bound like any other: the admin role lets a token claim and report, but
only on its own claims, as it renews only its own. Binding is per token, not per worker
id (a report names no worker): workers sharing a token may report on each other's
commands, and the engine stores each event once and keeps a step run's first outcome. The
check holds when the report arrives: a claim expiring while its report is stored still
counts (the command is marked done, and a worker that claimed it meanwhile has its
heartbeat refused). The embedded mode (no command store) takes reports as before: its
engine runs every tool itself, and no command is handed out.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from engine.core import events as ev
from engine.core.commands import command_id_of
from engine.core.events import Event
from engine.runtime.embedded import Engine
from noetl_agent.api.deps import CommandLeases, CommandsDep, EngineDep, FeedDep, MetricsDep, allow
from noetl_agent.api.metrics import Metrics
from noetl_agent.api.models import MAX_BATCH, EventBatch, EventIn, events_from_json
from noetl_agent.api.problems import responses
from noetl_agent.api.routes_commands import holder_token
from noetl_agent.errors import ClaimNotHeld
from noetl_agent.principals import Principal

if TYPE_CHECKING:
    from engine.adapters.postgres.commands import Holder

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
    body: EventIn, engine: EngineDep, metrics: MetricsDep, commands: CommandsDep, who: Worker
) -> dict[str, int]:
    """Store one tool event of a worker and act on it (repeats are stored once); 409 when
    the caller's token holds no claim on its command (distributed mode)."""
    return await _ingest([body.to_event()], engine, metrics, commands, who)


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
    who: Worker,  # first: the role is checked before the body is read
    events: Annotated[list[Event], Depends(_batch)],
    engine: EngineDep,
    metrics: MetricsDep,
    commands: CommandsDep,
) -> dict[str, int]:
    """Store a batch of worker events; 404 (storing none) if an execution is unknown, 409
    (storing none) when the caller's token holds no claim on a command it names."""
    return await _ingest(events, engine, metrics, commands, who)


async def _ingest(
    events: list[Event],
    engine: Engine,
    metrics: Metrics,
    commands: CommandLeases | None,
    who: Principal,
) -> dict[str, int]:
    for execution_id in dict.fromkeys(event.execution_id for event in events):
        if not engine.is_live(execution_id):  # a live one is known: spare the round trip
            await engine.events.get_execution(execution_id)
    if commands is not None:
        await _check_claims(events, commands, who)
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
    return command_id_of(event)


async def _check_claims(events: list[Event], commands: CommandLeases, who: Principal) -> None:
    """Raise ``ClaimNotHeld`` unless ``who``'s token holds the claim of every command the
    events name (see the module docstring)."""
    named: dict[str, None] = {}
    for event in events:
        command_id = command_id_of(event)
        if command_id is None:
            raise ClaimNotHeld(
                f"event '{event.event_id}' names no command (it has no step_run_id); a worker "
                "reports only on the commands it claimed, as the tool runner writes them "
                "(nothing of this report was stored)",
                [],
            )
        named[command_id] = None
    holders = await commands.holders(named)
    refused = {
        command_id: why
        for command_id in named
        if (why := _refusal(command_id, holders.get(command_id), who.name)) is not None
    }
    if refused:
        first, *rest = refused.values()
        more = f" (and {len(rest)} more command(s), listed in `commands`)" if rest else ""
        raise ClaimNotHeld(
            f"token '{who.name}' holds no claim on what it reported: {first}{more}. Stop "
            "running these commands and drop their events; nothing of this report was "
            "stored",
            list(refused),
        )


def _refusal(command_id: str, holder: Holder | None, token: str) -> str | None:
    """Why the token named ``token`` may not report on a command whose row is ``holder``
    (None when the command is not stored); None when it may."""
    if holder is None:
        return (
            f"no command '{command_id}' was handed to workers (the server runs that step "
            "itself, such as an approval or a sub-playbook, or the id is not of this server)"
        )
    status, claimed_by = holder
    if holder_token(claimed_by) == token and status in ("claimed", "done", "cancelled"):
        return None
    if status == "claimed":
        return (
            f"command '{command_id}' is claimed by '{claimed_by}', not by token '{token}'; if "
            "this token claimed it, its claim expired and was handed to another worker, "
            "where the step runs again"
        )
    if status == "queued":
        return (
            f"command '{command_id}' is not claimed by token '{token}' nor by anyone: a "
            "claim expired and the command waits to run again on the worker that claims it "
            "next"
        )
    if status == "failed":
        return (
            f"command '{command_id}' failed: its claims kept expiring with no result (the "
            f"last held by '{claimed_by}'), so it is not run again"
        )
    return (
        f"command '{command_id}' is {status} under the claim of '{claimed_by or '-'}', not of "
        f"token '{token}'"
    )
