"""Policy proposal routes: the review queue of the closed loop.

``POST /api/proposals/suggest`` (operators, agents included) measures the applied changes
that are due and asks the learners for new proposals; ``GET /api/proposals`` and
``GET /api/proposals/{id}`` read the queue (viewers); ``POST /api/proposals`` submits a
hand-written patch (operators); ``POST /api/proposals/{id}/decision`` approves or rejects
(a human approver who did not propose it). 404 for an unknown id, 409 when it is decided,
expired or stale, 422 when a patch does not fit its playbook.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from noetl_agent.api.deps import allow, human_approver
from noetl_agent.api.models import ProposalDecisionRequest, ProposalRequest, SuggestRequest
from noetl_agent.api.problems import responses
from noetl_agent.principals import Principal
from noetl_agent.proposals import DECIDE, ProposalService
from noetl_agent.review_queue import Status

router = APIRouter(prefix="/api/proposals", tags=["proposals"])
Reader = Annotated[Principal, Depends(allow("viewer", "read policy proposals"))]
Suggester = Annotated[Principal, Depends(allow("operator", "ask for policy proposals"))]
Submitter = Annotated[Principal, Depends(allow("operator", "submit policy proposals"))]
Approver = Annotated[Principal, Depends(human_approver(DECIDE))]


async def _proposals(request: Request) -> ProposalService:
    service: ProposalService = request.app.state.proposals
    return service


Proposals = Annotated[ProposalService, Depends(_proposals)]


@router.post("/suggest", responses=responses(400, 403, 404, 422))
async def suggest(
    principal: Suggester,
    proposals: Proposals,
    body: Annotated[SuggestRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Measure applied changes that are due, then raise the learners' new proposals (of
    one playbook, or all): ``{proposed, pending, suppressed, evaluated}``."""
    report = await proposals.suggest(principal, body.playbook if body else None)
    return report.to_dict()


@router.get("", responses=responses(403, 422))
async def list_proposals(
    _: Reader, proposals: Proposals, status: Status | None = None
) -> list[dict[str, Any]]:
    """Proposals, newest first, each with its target, patch, evidence, decisions and diff."""
    return await proposals.list(status)


@router.post("", status_code=201, responses=responses(400, 403, 404, 409, 422))
async def submit(
    body: ProposalRequest, principal: Submitter, proposals: Proposals
) -> dict[str, Any]:
    """Propose a hand-written patch against one catalog version (latest if no version);
    422 names what does not fit, 409 when the same change is pending."""
    return await proposals.submit(
        principal,
        body.playbook,
        body.version,
        body.step,
        body.kind,
        body.operations(),
        body.rationale,
    )


@router.get("/{proposal_id}", responses=responses(403, 404))
async def get_proposal(proposal_id: str, _: Reader, proposals: Proposals) -> dict[str, Any]:
    """One proposal."""
    return await proposals.get(proposal_id)


@router.post("/{proposal_id}/decision", responses=responses(400, 403, 404, 409, 422))
async def decide(
    proposal_id: str, body: ProposalDecisionRequest, principal: Approver, proposals: Proposals
) -> dict[str, Any]:
    """Approve or reject (a rejection needs a comment); at quorum the patched playbook is
    registered as a new version (``applied_version``)."""
    return await proposals.decide(proposal_id, principal, body.approved, body.comment)
