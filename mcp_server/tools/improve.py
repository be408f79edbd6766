"""Improve tools: ask the learners for policy proposals, read them, and send a person to
the review queue. There is no tool to approve or reject: only a human approver decides,
in the review queue (web page, CLI or HTTP API), never an agent."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field

from mcp_server.errors import tool_errors
from mcp_server.models import Proposal, ProposalList, ReviewRequest, Suggestions
from mcp_server.registry import Group, tool
from noetl_agent.review_queue import Status

ProposalId = Annotated[
    str, Field(min_length=1, description="A proposal id (p-...) from suggest_policies.")
]
NO_PROPOSAL = "list_proposals shows every proposal id"


class ImproveTools(Group):
    name = "improve"

    @tool("Suggest policy changes", read_only=False, destructive=False, idempotent=True)
    async def suggest_policies(
        self,
        ctx: Context[Any, Any],
        playbook: Annotated[
            str | None, Field(description="One catalog path; every playbook when omitted.")
        ] = None,
    ) -> Suggestions:
        """Run the policy learners now over past executions (of one playbook, or all)
        and raise their proposals: retry rules for transient errors, removing retries
        that never help, timeouts from observed durations, worker pools, parallelism.
        Each proposal is a patch against one playbook version with its evidence; it
        changes nothing until a human approves it. Asking again does not duplicate a
        pending proposal. Returns {proposed, pending, suppressed, evaluated}; then call
        request_review to hand a proposal to a person."""
        principal = self.services.caller(ctx, "operator", "ask for policy proposals")
        await ctx.report_progress(0, 1, "running the policy learners")
        with tool_errors(not_found="list_playbooks shows every catalog path"):
            report = await self.services.proposals.suggest(principal, playbook)
        await ctx.report_progress(1, 1, f"{len(report.proposed)} new proposal(s)")
        return Suggestions.model_validate(report.to_dict())

    @tool("List policy proposals", read_only=True)
    async def list_proposals(
        self,
        ctx: Context[Any, Any],
        status: Annotated[Status | None, Field(description="Only this status.")] = None,
    ) -> ProposalList:
        """List policy proposals, newest first (optionally of one status: pending,
        approved, rejected, applied, rolled_back, expired, stale), each with its target,
        patch, evidence, rationale, diff and decisions. Returns {proposals}."""
        self.services.caller(ctx, "viewer", "read policy proposals")
        with tool_errors():
            found = await self.services.proposals.list(status)
        return ProposalList(proposals=[Proposal.model_validate(item) for item in found])

    @tool("Read a policy proposal", read_only=True)
    async def get_proposal(self, proposal_id: ProposalId, ctx: Context[Any, Any]) -> Proposal:
        """Read one policy proposal: what it patches (playbook, version, step), the
        patch and its diff, the evidence (counts, rates, similar past failures, expected
        effect), its status, the decisions made on it and, once applied and measured, its
        evaluation (verdict better, worse, no_change, or inconclusive when too few
        executions ran while the change was in force). Returns {id, status, kind, target,
        patch, diff, evidence, rationale, decisions, evaluation, ...}."""
        self.services.caller(ctx, "viewer", "read policy proposals")
        with tool_errors(not_found=NO_PROPOSAL):
            found = await self.services.proposals.get(proposal_id)
        return Proposal.model_validate(found)

    @tool("Request a human review", read_only=True)
    async def request_review(
        self, proposal_id: ProposalId, ctx: Context[Any, Any]
    ) -> ReviewRequest:
        """Get the review-queue link of a proposal for a person to approve or reject.
        You cannot approve or reject proposals (no agent can): give the user this link
        and say what the proposal changes and why. Returns {proposal_id, status,
        review_url, message}."""
        self.services.caller(ctx, "viewer", "read policy proposals")
        with tool_errors(not_found=NO_PROPOSAL):
            found = await self.services.proposals.get(proposal_id)
        status = str(found["status"])
        url = self.services.review_link(proposal_id)
        if status == "pending":
            message = (
                f"Proposal {proposal_id} waits for a human approver: open {url} to review "
                "its diff and evidence and approve or reject it."
            )
        else:
            message = f"Proposal {proposal_id} is {status}: there is nothing to decide; {url}"
        return ReviewRequest(
            proposal_id=proposal_id, status=status, review_url=url, message=message
        )
