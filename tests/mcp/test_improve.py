"""Improve and humans tools through the MCP client: the learners' proposals, reading
them, the review link, and the workflow approvals waiting for a person."""

from __future__ import annotations

from tests.mcp.conftest import GATE, REVIEW_URL, call, refused

# A permanent error the current policy retries: the retry learner proposes to stop.
RETRIED_FOR_NOTHING = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: enrich, path: mcp/enrich}
workflow:
  - step: fetch
    tool:
      kind: python
      code: |
        def main():
            raise KeyError("customer_id")
      spec:
        policy:
          rules:
            - when: "{{ output.status == 'error' }}"
              then: {do: retry, attempts: 3, delay: 0.01}
"""


async def _useless_retries(client, runs: int = 10) -> None:
    await call(client, "register_playbook", {"yaml": RETRIED_FOR_NOTHING})
    for _ in range(runs):
        run = await call(client, "execute_playbook", {"path": "mcp/enrich"})
        assert run["status"] == "failed" and run["steps"][0]["attempts"] == 3


async def test_suggest_read_and_request_review(connect):
    async with connect() as client:
        await _useless_retries(client)
        suggested = await call(client, "suggest_policies", {"playbook": "mcp/enrich"})
        assert len(suggested["proposed"]) == 1, suggested
        proposal = suggested["proposed"][0]
        assert proposal["kind"] == "retry_remove" and proposal["status"] == "pending"
        assert proposal["target"] == {"playbook": "mcp/enrich", "version": 1, "step": "fetch"}
        assert proposal["requested_by"] == {"name": "local-agent", "kind": "agent"}
        assert "+" in proposal["diff"]

        again = await call(client, "suggest_policies", {"playbook": "mcp/enrich"})
        assert again["proposed"] == []
        assert [p["id"] for p in again["pending"]] == [proposal["id"]]

        listed = await call(client, "list_proposals", {"status": "pending"})
        assert [p["id"] for p in listed["proposals"]] == [proposal["id"]]
        assert (await call(client, "list_proposals", {"status": "applied"}))["proposals"] == []
        shown = await call(client, "get_proposal", {"proposal_id": proposal["id"]})
        assert shown["evidence"] == proposal["evidence"]

        review = await call(client, "request_review", {"proposal_id": proposal["id"]})
        assert review["review_url"] == f"{REVIEW_URL}/review/proposals/{proposal['id']}"
        assert review["status"] == "pending"
        assert "human approver" in review["message"]
        # Nothing was decided: the catalog still holds version 1 only.
        assert (await call(client, "get_playbook", {"path": "mcp/enrich"}))["version"] == 1


async def test_improve_tools_refuse_bad_input(connect):
    async with connect() as client:
        unknown = await refused(client, "get_proposal", {"proposal_id": "p-nope-1"})
        assert "p-nope-1" in unknown and "list_proposals" in unknown
        review = await refused(client, "request_review", {"proposal_id": "p-nope-1"})
        assert "list_proposals" in review
        status = await refused(client, "list_proposals", {"status": "maybe"})
        assert "`status`" in status
        no_playbook = await refused(client, "suggest_policies", {"playbook": "mcp/none"})
        assert "mcp/none" in no_playbook


async def test_pending_approvals_are_listed_not_decided(connect):
    async with connect() as client:
        assert (await call(client, "list_pending_approvals"))["approvals"] == []
        await call(client, "register_playbook", {"yaml": GATE})
        run = await call(client, "execute_playbook", {"path": "mcp/gate"})
        pending = await call(client, "list_pending_approvals")
        assert [(a["execution_id"], a["step"], a["prompt"]) for a in pending["approvals"]] == [
            (run["execution_id"], "review", "Ship it?")
        ]
        assert f"{REVIEW_URL}/review" in pending["note"]
        extra = await refused(client, "list_pending_approvals", {"approve": True})
        assert "no argument `approve`" in extra
