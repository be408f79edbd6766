"""Who may decide: one set of rules for workflow approvals and policy proposals.

A decision is made by a human principal holding the approver role, never by an agent.
A workflow approval step may narrow that further with ``approvers``: a list of roles or
principal names, of which the decider must hold or be one. A policy proposal may not be
decided by the principal that proposed it.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.core import events as ev
from engine.ports import EventStore
from noetl_agent.errors import Forbidden
from noetl_agent.principals import ROLES, Principal


def require_decider(principal: Principal, action: str, approvers: Sequence[str] = ()) -> None:
    """Raise ``Forbidden`` unless ``principal`` is a human approver and, when ``approvers``
    is given, holds one of those roles (``admin`` implies ``approver``) or is one of those
    names."""
    principal.require_human_approver(action)
    if not approvers:
        return
    held = set(principal.roles)
    implied = any(principal.has(role) for role in ROLES if role in approvers)
    if implied or principal.name in approvers or held & set(approvers):
        return
    raise Forbidden(
        f"human principal '{principal.name}' cannot {action}: this decision is reserved "
        f"for {', '.join(approvers)} (a role it holds or its name); its roles are "
        f"{', '.join(sorted(held)) or 'none'}"
    )


async def approval_approvers(events: EventStore, approval_id: str) -> list[str]:
    """The ``approvers`` list of a workflow approval; empty when the step named none, or
    when there is no such approval (deciding it then fails with the engine's answer)."""
    execution_id, _, step_run_id = approval_id.partition("/")
    if step_run_id:
        for event in await events.read(execution_id):
            if event.event_type == ev.APPROVAL_REQUESTED and event.step_run_id == step_run_id:
                return [str(item) for item in event.payload.get("approvers") or []]
    return []


async def require_approval_decider(
    events: EventStore, approval_id: str, principal: Principal
) -> None:
    """Check ``principal`` may decide the workflow approval ``approval_id`` (see above)."""
    principal.require_human_approver("approve or reject workflow decisions")
    approvers = await approval_approvers(events, approval_id)
    require_decider(principal, "approve or reject workflow decisions", approvers)
