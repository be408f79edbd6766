"""Execution routes: start one, list them, show one, cancel one."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response

from noetl_agent.api.deps import EngineDep, allow
from noetl_agent.api.models import CancelRequest, ExecuteRequest
from noetl_agent.api.problems import responses
from noetl_agent.executions import summarize
from noetl_agent.principals import Principal

router = APIRouter(prefix="/api", tags=["executions"])
Reader = Annotated[Principal, Depends(allow("viewer", "read executions"))]
Executor = Annotated[Principal, Depends(allow("operator", "execute playbooks"))]
Canceller = Annotated[Principal, Depends(allow("operator", "cancel executions"))]
Status = Literal["running", "paused", "completed", "failed", "cancelled"]


@router.post("/execute", status_code=202, responses=responses(400, 403, 404, 413, 422))
async def execute(
    body: ExecuteRequest, engine: EngineDep, _: Executor, response: Response
) -> dict[str, Any]:
    """Start an execution of a catalog playbook; follow it at the ``Location`` given."""
    execution_id = await engine.execute(body.path, version=body.version, workload=body.workload)
    response.headers["Location"] = f"/api/executions/{execution_id}"
    summary = await engine.events.get_execution(execution_id)
    return {"execution_id": execution_id, "status": summary.status}


@router.get("/executions", responses=responses(403, 422))
async def list_executions(
    engine: EngineDep,
    _: Reader,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
) -> list[dict[str, Any]]:
    """Executions, newest first, optionally of one status."""
    rows = await engine.events.list_executions(status=status, limit=limit)
    return [asdict(row) for row in rows]


@router.get("/executions/{execution_id}", responses=responses(403, 404))
async def get_execution(execution_id: str, engine: EngineDep, _: Reader) -> dict[str, Any]:
    """Status, step runs (attempts, iterations, errors), result and error."""
    summary = await engine.events.get_execution(execution_id)
    return summarize(summary, await engine.events.read(execution_id)).to_dict()


@router.post(
    "/executions/{execution_id}/cancel", status_code=202, responses=responses(403, 404, 409)
)
async def cancel(
    execution_id: str, engine: EngineDep, _: Canceller, body: CancelRequest | None = None
) -> dict[str, Any]:
    """Stop a running or paused execution (409 when it has already finished)."""
    await engine.cancel(execution_id, (body or CancelRequest()).reason)
    summary = await engine.events.get_execution(execution_id)
    return {"execution_id": execution_id, "status": summary.status}
