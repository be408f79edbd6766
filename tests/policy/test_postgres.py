"""The review queue on PostgreSQL, shared by two servers: racing suggestions of the same
change collapse into one proposal, each server's queue folds the other's decisions, and
a quorum of two reached across them applies the change once."""

from __future__ import annotations

import asyncio

from engine.core import events as ev
from engine.runtime.embedded import Engine
from learning.policy.model import ProposalDraft, Target
from noetl_agent.policy_settings import PolicySettings
from noetl_agent.principals import Principal
from noetl_agent.proposals import ProposalService
from noetl_agent.review_queue import POLICY_STREAM
from tests.conformance.conftest import fresh_postgres, require_postgres
from tests.policy.conftest import FLAKY, HUMAN, OPERATOR, OTHER_HUMAN, RETRY_PATCH

LEARNER = Principal("learner:retry", "agent", frozenset())


async def test_two_servers_share_one_review_queue() -> None:
    dsn = await require_postgres()
    async with fresh_postgres(dsn) as db:
        first, second = Engine(db.events, db.catalog), Engine(db.events, db.catalog)
        try:
            await first.register(FLAKY)
            settings = PolicySettings(quorum=2)
            one = ProposalService(first, settings=settings)
            two = ProposalService(second, settings=settings)
            draft = ProposalDraft(
                target=Target("policy/flaky", 1, "fetch"),
                kind="retry",
                patch=RETRY_PATCH,
                evidence={"error_class": "ConnectionError"},
                rationale="Connection errors recover on the next attempt.",
                evidence_size=12,
                learner="retry",
            )
            raised = await asyncio.gather(
                one.propose(draft, LEARNER, OPERATOR), two.propose(draft, LEARNER, OPERATOR)
            )
            ids = {result.proposal["id"] for result in raised}
            assert len(ids) == 1, raised
            [pid] = ids
            stored = await db.events.read(POLICY_STREAM)
            assert [e.event_type for e in stored] == [ev.POLICY_PROPOSED]
            assert await db.events.list_executions() == []  # the policy stream is no execution

            half = await one.decide(pid, HUMAN, True, "yes")
            assert (half["status"], half["approvals"]) == ("pending", 1)
            assert (await two.get(pid))["approvals"] == 1  # folded from the shared log
            done = await two.decide(pid, OTHER_HUMAN, True, "yes too")
            assert (done["status"], done["applied_version"]) == ("applied", 2)
            assert (await one.get(pid))["status"] == "applied"
            assert (await db.catalog.get("policy/flaky")).version == 2
            assert [e.event_type for e in await db.events.read(POLICY_STREAM)] == [
                ev.POLICY_PROPOSED,
                ev.POLICY_APPROVED,
                ev.POLICY_APPROVED,
                ev.POLICY_APPLIED,
            ]
        finally:
            await first.aclose()
            await second.aclose()
