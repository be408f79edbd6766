"""No path through the MCP server can approve or reject anything: no tool decides, every
caller acts as an agent (even with a human approver's token over HTTP), and the
services refuse an agent's decision."""

from __future__ import annotations

import pytest
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.requests import Request

from engine.core import events as ev
from mcp_server.auth import TokenPrincipals, request_principal
from noetl_agent.decision_rules import require_approval_decider
from noetl_agent.errors import Forbidden
from noetl_agent.review_queue import POLICY_STREAM
from noetl_agent.tokens import MemoryTokenStore
from tests.mcp.conftest import GATE, call
from tests.mcp.test_improve import RETRIED_FOR_NOTHING

DECISIONS = {ev.POLICY_APPROVED, ev.POLICY_REJECTED, ev.APPROVAL_DECIDED}


async def _principal_of(tokens: MemoryTokenStore, token: str):
    access = await TokenPrincipals(tokens).verify_token(token)
    assert access is not None
    scope = {"type": "http", "headers": [], "user": AuthenticatedUser(access)}
    return request_principal(Request(scope))


async def test_a_human_approvers_token_acts_as_an_agent_over_mcp():
    tokens = MemoryTokenStore()
    token = await tokens.create("alice", "human", ["approver", "operator"])
    principal = await _principal_of(tokens, token)
    assert (principal.name, principal.kind) == ("alice", "agent")
    assert principal.roles == frozenset({"approver", "operator"})
    with pytest.raises(Forbidden, match="only a human approver"):
        principal.require_human_approver("approve or reject policy proposals")
    assert await TokenPrincipals(tokens).verify_token("not-a-token") is None
    assert request_principal(None) is None


async def test_every_tool_leaves_proposals_and_approvals_undecided(connect, services):
    async with connect() as client:
        await call(client, "register_playbook", {"yaml": RETRIED_FOR_NOTHING})
        await call(client, "register_playbook", {"yaml": GATE})
        for _ in range(10):
            await call(client, "execute_playbook", {"path": "mcp/enrich"})
        paused = await call(client, "execute_playbook", {"path": "mcp/gate"})
        suggested = await call(client, "suggest_policies", {})
        (proposal,) = suggested["proposed"]
        await call(client, "get_proposal", {"proposal_id": proposal["id"]})
        await call(client, "request_review", {"proposal_id": proposal["id"]})
        await call(client, "list_proposals", {})
        (approval,) = (await call(client, "list_pending_approvals"))["approvals"]

    # The principal every stdio call acts as cannot decide either, by any service.
    agent = services.local_principal
    assert agent is not None and agent.kind == "agent"
    with pytest.raises(Forbidden):
        await services.proposals.decide(proposal["id"], agent, True, "looks fine")
    with pytest.raises(Forbidden):
        await require_approval_decider(services.engine.events, approval["approval_id"], agent)

    policy_events = {e.event_type for e in await services.engine.events.read(POLICY_STREAM)}
    assert policy_events == {ev.POLICY_PROPOSED}
    gate_events = {e.event_type for e in await services.engine.events.read(paused["execution_id"])}
    assert not gate_events & DECISIONS
    assert (await services.proposals.get(proposal["id"]))["status"] == "pending"
