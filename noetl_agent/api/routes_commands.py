"""Command routes of the distributed mode: workers claim commands and keep claims alive.

The id in the path is the global command id ``execution_id:step_run_id[/iteration]``
(percent-encode it: it holds ``:``, ``#`` and ``/``). A 409 means the command is not the
caller's to run (held by another worker, done, or cancelled): drop the note. On the
embedded stack no command is handed out, so every id is unknown (404).

A claim is held by ``WORKER_ID (token NAME)``: the worker id the body names, under the
name of the token that asked. Token names hold no spaces, so no worker id can make one
token's holder read as another's. Only the same token can renew a claim or read the
credentials of the command it holds, whatever worker id another token sends, and only
that token can report the command's events (see ``routes_events``).
"""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from engine.errors import NotFound
from noetl_agent.api.deps import CommandLeases, CommandsDep, allow
from noetl_agent.api.models import ClaimRequest
from noetl_agent.api.problems import responses
from noetl_agent.principals import Principal

router = APIRouter(prefix="/api", tags=["commands"])
Worker = Annotated[Principal, Depends(allow("worker", "claim commands"))]
DEFAULT_LEASE = 30.0  # seconds a claim lasts when the worker names no lease


def leases(commands: CommandLeases | None, command_id: str) -> CommandLeases:
    """The command store; ``NotFound`` on the embedded stack, which hands out nothing."""
    if commands is None:
        raise NotFound(
            f"no command '{command_id}': this server runs tools itself (embedded stack); "
            "start it with --database and --nats to hand commands to workers"
        )
    return commands


def claimant(principal: Principal, worker_id: str) -> str:
    """Who holds a claim: the worker id, scoped to the name of the token that sent it."""
    return f"{worker_id} (token {principal.name})"


def holder_token(holder: str | None) -> str | None:
    """The name of the token a ``claimant`` string was made under (None if it is not one).

    A worker id may hold anything, but the token name follows the last space: names hold
    none, so no worker id can pass for another token's claim."""
    if not holder or not holder.endswith(")"):
        return None
    head, marker, name = holder[:-1].rpartition(" (token ")
    return name if marker and head else None


def _lease(request: Request, body: ClaimRequest) -> float:
    if body.lease_seconds is not None:
        return body.lease_seconds
    lease: float = request.app.state.lease_seconds
    return lease


@router.post("/commands/{command_id:path}/claim", responses=responses(403, 404, 409, 422))
async def claim(
    command_id: str, body: ClaimRequest, request: Request, commands: CommandsDep, who: Worker
) -> dict[str, Any]:
    """Take the command for ``lease_seconds``; answers the command (as
    ``RunTool.to_dict()``) and the attempt number, 1 for the first claim.

    409 when another worker holds an unexpired claim or the command is done or cancelled."""
    won = await leases(commands, command_id).claim(
        command_id, claimant(who, body.worker_id), _lease(request, body)
    )
    return {"command": won.command, "attempt": won.attempt}


@router.post("/commands/{command_id:path}/heartbeat", responses=responses(403, 404, 409, 422))
async def heartbeat(
    command_id: str, body: ClaimRequest, request: Request, commands: CommandsDep, who: Worker
) -> dict[str, str]:
    """Extend the caller's claim to ``lease_seconds`` from now; 409 once it is not the
    caller's any more (stop running the command)."""
    expires = await leases(commands, command_id).heartbeat(
        command_id, claimant(who, body.worker_id), _lease(request, body)
    )
    stamp = expires.astimezone(UTC).isoformat(timespec="milliseconds")
    return {"claim_expires_at": stamp.replace("+00:00", "Z")}
