"""Humans tools: the workflow decision points waiting for a person (read-only: an agent
never decides them)."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context

from mcp_server.errors import tool_errors
from mcp_server.models import PendingApproval, PendingApprovals
from mcp_server.registry import Group, tool
from noetl_agent.executions import pending_approvals


class HumansTools(Group):
    name = "humans"

    @tool("List pending approvals", read_only=True)
    async def list_pending_approvals(self, ctx: Context[Any, Any]) -> PendingApprovals:
        """List the workflow decision points waiting for a person (approval steps of
        paused executions), oldest first, with the prompt and who may decide. Use it to
        tell the user what is blocked on them; you cannot decide them. Returns
        {approvals: [{approval_id, execution_id, step, prompt, requested_at,
        approvers}], note}."""
        self.services.caller(ctx, "viewer", "list approvals")
        with tool_errors():
            pending = await pending_approvals(self.services.engine.events)
        return PendingApprovals(
            approvals=[PendingApproval(**item.to_dict()) for item in pending],
            note=(
                "only a human approver decides these, in the review queue at "
                f"{self.services.review_url.rstrip('/')}/review/: tell the user what waits"
            ),
        )
