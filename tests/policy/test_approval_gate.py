"""The approval gate of policy proposals, on the embedded SQLite stores: who may decide,
quorum, expiry, comments, de-duplication and stale targets; and the same principals and
rules for workflow approvals (an ``approvers`` list is enforced)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.errors import Conflict, NotFound, PlaybookInvalid
from learning.policy.model import ProposalDraft, Target
from noetl_agent.errors import Forbidden
from noetl_agent.principals import Principal
from noetl_agent.proposals import ProposalRefused
from tests.api.conftest import start
from tests.policy.conftest import (
    AGENT_APPROVER,
    FLAKY,
    HUMAN,
    HUMAN_OPERATOR,
    OPERATOR,
    OTHER_HUMAN,
    RETRY_PATCH,
    VIEWER,
)

LEARNER = Principal("learner:retry", "agent", frozenset())


async def _proposal(engine, service, proposer=OPERATOR, patch=RETRY_PATCH) -> str:
    await engine.register(FLAKY)
    made = await service.submit(proposer, "policy/flaky", None, "fetch", "retry", patch, "why")
    assert made["status"] == "pending"
    return str(made["id"])


def _draft(evidence_size: int, version: int = 1) -> ProposalDraft:
    return ProposalDraft(
        target=Target("policy/flaky", version, "fetch"),
        kind="retry",
        patch=RETRY_PATCH,
        evidence={"error_class": "ConnectionError", "runs": evidence_size},
        rationale="Connection errors recover on the next attempt.",
        evidence_size=evidence_size,
        learner="retry",
    )


async def test_only_a_human_approver_who_did_not_propose_it_decides(engine, services):
    service = services()
    pid = await _proposal(engine, service, proposer=HUMAN_OPERATOR)
    with pytest.raises(Forbidden, match="only a human approver"):
        await service.decide(pid, AGENT_APPROVER, True, "ok")
    with pytest.raises(Forbidden, match="only a human approver"):
        await service.decide(pid, OPERATOR, True, "ok")
    for who in (VIEWER, Principal("olga", "human", frozenset({"operator"}))):
        with pytest.raises(Forbidden, match="needs the approver role"):
            await service.decide(pid, who, True, "ok")
    with pytest.raises(Forbidden, match="it proposed it"):
        await service.decide(pid, HUMAN_OPERATOR, True, "mine")
    assert (await service.get(pid))["decisions"] == []
    assert (await service.get(pid))["status"] == "pending"

    decided = await service.decide(pid, HUMAN, True, "looks right")
    assert decided["status"] == "applied"
    assert decided["decisions"][0]["decided_by"] == "alice"
    assert decided["decisions"][0]["comment"] == "looks right"
    with pytest.raises(Conflict, match="already decided"):
        await service.decide(pid, OTHER_HUMAN, False, "too late")
    with pytest.raises(NotFound, match="no proposal"):
        await service.decide("p-nope-1", HUMAN, True, None)


async def test_a_quorum_of_two_needs_two_distinct_humans(engine, services):
    service = services(quorum=2)
    pid = await _proposal(engine, service)
    first = await service.decide(pid, HUMAN, True, None)
    assert (first["status"], first["approvals"], first["quorum"]) == ("pending", 1, 2)
    with pytest.raises(Conflict, match=r"approved .* already"):
        await service.decide(pid, HUMAN, True, None)
    assert (await engine.catalog.get("policy/flaky")).version == 1  # nothing applied yet

    second = await service.decide(pid, OTHER_HUMAN, True, "agreed")
    assert second["status"] == "applied"
    assert second["applied_version"] == 2
    assert [d["decided_by"] for d in second["decisions"]] == ["alice", "bob"]
    events = await engine.events.read("policy")
    assert [e.event_type for e in events] == [
        "policy.proposed",
        "policy.approved",
        "policy.approved",
        "policy.applied",
    ]


async def test_one_rejection_rejects_and_needs_a_comment(engine, services):
    service = services(quorum=2)
    pid = await _proposal(engine, service)
    await service.decide(pid, HUMAN, True, None)
    with pytest.raises(ProposalRefused, match="needs a comment"):
        await service.decide(pid, OTHER_HUMAN, False, "  ")
    rejected = await service.decide(pid, OTHER_HUMAN, False, "retries hide a real outage")
    assert rejected["status"] == "rejected"
    assert rejected["decisions"][-1]["comment"] == "retries hide a real outage"
    assert (await engine.catalog.get("policy/flaky")).version == 1
    assert [p["id"] for p in await service.list("rejected")] == [pid]


async def test_an_expired_proposal_cannot_be_decided(engine, services, clock):
    service = services(expiry=timedelta(hours=1))
    pid = await _proposal(engine, service)
    clock.advance(minutes=59)
    assert (await service.get(pid))["status"] == "pending"
    clock.advance(minutes=2)
    assert (await service.get(pid))["status"] == "expired"
    with pytest.raises(Conflict, match="expired"):
        await service.decide(pid, HUMAN, True, None)
    assert [p["id"] for p in await service.list("expired")] == [pid]
    assert await service.list("pending") == []
    again = await service.propose(_draft(20), LEARNER, OPERATOR)  # raised anew
    assert (again.outcome, again.proposal["id"]) == ("proposed", pid[:-1] + "2")


async def test_a_stale_target_is_refused(engine, services):
    service = services()
    pid = await _proposal(engine, service)
    await engine.register(FLAKY.replace('counter: ""', 'counter: "x"'))  # version 2
    assert (await service.get(pid))["status"] == "stale"
    with pytest.raises(Conflict, match=r"stale.*suggest again"):
        await service.decide(pid, HUMAN, True, None)
    assert (await engine.catalog.get("policy/flaky")).version == 2
    again = await service.propose(_draft(20, version=2), LEARNER, OPERATOR)
    assert again.outcome == "proposed"
    assert again.proposal["target"]["version"] == 2
    applied = await service.decide(again.proposal["id"], HUMAN, True, None)
    assert applied["applied_version"] == 3


async def test_the_same_change_is_not_raised_twice_while_pending(engine, services):
    service = services()
    await engine.register(FLAKY)
    first = await service.propose(_draft(20), LEARNER, OPERATOR)
    again = await service.propose(_draft(40), LEARNER, OPERATOR)
    assert first.outcome == "proposed"
    assert (again.outcome, again.proposal["id"]) == ("pending", first.proposal["id"])
    assert first.proposal["proposed_by"] == {"name": "learner:retry", "kind": "agent"}
    assert first.proposal["requested_by"] == {"name": "ops-bot", "kind": "agent"}
    with pytest.raises(Conflict, match="proposed already"):
        await service.submit(OPERATOR, "policy/flaky", 1, "fetch", "retry", RETRY_PATCH, "dup")
    assert len(await service.list()) == 1
    # a second service on the same log (another server) sees it too and agrees
    other = services()
    assert (await other.propose(_draft(20), LEARNER, OPERATOR)).outcome == "pending"


async def test_a_rejected_change_comes_back_only_with_more_evidence(engine, services):
    service = services()
    await engine.register(FLAKY)
    first = (await service.propose(_draft(20), LEARNER, OPERATOR)).proposal
    await service.decide(first["id"], HUMAN, False, "not convinced yet")
    held = await service.propose(_draft(29), LEARNER, OPERATOR)
    assert held.outcome == "suppressed"
    assert "raised again at 30" in held.reason
    back = await service.propose(_draft(30), LEARNER, OPERATOR)
    assert back.outcome == "proposed"
    assert back.proposal["id"] == first["id"][:-1] + "2"
    assert back.proposal["generation"] == 2


async def test_a_patch_that_does_not_fit_is_refused_with_what_is_wrong(engine, services):
    service = services()
    await engine.register(FLAKY)
    cases = [
        ([{"op": "replace", "path": "/workflow/7/tool", "value": {}}], "out of range"),
        ([{"op": "remove", "path": "/workload/missing"}], "nothing to remove"),
        ([{"op": "replace", "path": "/workload/counter", "value": ""}], "changes nothing"),
        ([{"op": "replace", "path": "/workflow/0/tool/kind", "value": "nope"}], "invalid"),
    ]
    for patch, problem in cases:
        with pytest.raises(PlaybookInvalid) as raised:
            await service.submit(OPERATOR, "policy/flaky", None, "fetch", "retry", patch, "x")
        assert problem in str(raised.value), str(raised.value)
    with pytest.raises(NotFound, match="no step 'nope'"):
        await service.submit(OPERATOR, "policy/flaky", None, "nope", "retry", RETRY_PATCH, "x")
    with pytest.raises(ProposalRefused, match="not a proposal kind"):
        await service.submit(OPERATOR, "policy/flaky", None, "fetch", "magic", RETRY_PATCH, "x")
    with pytest.raises(Forbidden, match="needs the operator role"):
        await service.submit(VIEWER, "policy/flaky", None, "fetch", "retry", RETRY_PATCH, "x")
    assert await service.list() == []


GATED = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: gated, path: policy/gated}
workflow:
  - step: review
    tool: {kind: approval, prompt: "Release?", approvers: [release-manager, alice]}
"""


async def test_a_workflow_approval_names_who_may_decide(api, stack):
    execution_id = await start(api, stack, GATED)
    url = f"/api/approvals/{execution_id}/review%231/decision"
    for who in ("approver", "admin"):  # human approvers, but not listed by role or name
        refused = await api.post(url, json={"approved": True}, headers=stack.auth(who))
        assert refused.status_code == 403, refused.text
        assert "reserved for release-manager, alice" in refused.json()["detail"]
    agent = await api.post(url, json={"approved": True}, headers=stack.auth("agent-admin"))
    assert agent.status_code == 403
    assert "only a human approver" in agent.json()["detail"]
    assert (await stack.engine.events.get_execution(execution_id)).status == "paused"

    alice = await stack.tokens.create("alice", "human", ["approver"])
    decided = await api.post(
        url, json={"approved": True}, headers={"Authorization": f"Bearer {alice}"}
    )
    assert decided.status_code == 200, decided.text
    assert (await stack.engine.wait(execution_id, timeout=10)).status == "completed"

    by_role = await start(api, stack, GATED.replace("release-manager, alice", "approver"))
    allowed = await api.post(
        f"/api/approvals/{by_role}/review%231/decision",
        json={"approved": True},
        headers=stack.auth("admin"),  # admin implies the listed approver role
    )
    assert allowed.status_code == 200, allowed.text
