"""Approval routes: workflow decision points waiting for a person, and their decisions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from noetl_agent.api.deps import EngineDep, allow, human_approver
from noetl_agent.api.models import DecisionRequest
from noetl_agent.api.problems import responses
from noetl_agent.decision_rules import require_approval_decider
from noetl_agent.executions import pending_approvals
from noetl_agent.principals import Principal

router = APIRouter(prefix="/api/approvals", tags=["approvals"])
Reader = Annotated[Principal, Depends(allow("viewer", "list approvals"))]
Approver = Annotated[Principal, Depends(human_approver("approve or reject workflow decisions"))]


@router.get("", responses=responses(403))
async def list_approvals(engine: EngineDep, _: Reader) -> list[dict[str, Any]]:
    """Pending workflow approvals, oldest first."""
    return [item.to_dict() for item in await pending_approvals(engine.events)]


@router.post("/{approval_id:path}/decision", responses=responses(400, 403, 404, 409, 422))
async def decide(
    approval_id: str, body: DecisionRequest, engine: EngineDep, principal: Approver
) -> dict[str, Any]:
    """Approve or reject (``EXECUTION/STEP#N``, ``#`` sent as ``%23``); only a human
    approver may, one of the step's ``approvers`` when it names some; 409 when it was
    already decided. The execution goes on in the server."""
    await require_approval_decider(engine.events, approval_id, principal)
    await engine.decide_approval(
        approval_id, approved=body.approved, decided_by=principal.name, comment=body.comment
    )
    execution_id = approval_id.partition("/")[0]
    summary = await engine.events.get_execution(execution_id)
    return {
        "approval_id": approval_id,
        "approved": body.approved,
        "decided_by": principal.name,
        "execution_id": execution_id,
        "status": summary.status,
    }
