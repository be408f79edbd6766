"""An approved proposal changes what runs next: the patched playbook is a new catalog
version, ``policy.applied`` records it, and the next execution uses it and succeeds where
the previous one failed. After enough executions its effect is measured; a change that
made things worse raises a rollback proposal, which applied restores the old behaviour."""

from __future__ import annotations

import yaml

from engine.core import events as ev
from noetl_agent.review_queue import POLICY_STREAM
from tests.policy.conftest import (
    FLAKY,
    FLAKY_HTTP,
    HUMAN,
    OPERATOR,
    OTHER_HUMAN,
    RETRY_PATCH,
    SWITCH,
)


async def _policy_events(engine) -> list[str]:
    return [event.event_type for event in await engine.events.read(POLICY_STREAM)]


async def test_an_approved_retry_makes_the_next_run_succeed(engine, services, counters):
    service = services()
    await engine.register(FLAKY)
    before = await engine.run("policy/flaky", workload={"counter": counters()})
    assert before.status == "failed"
    assert "transient failure on attempt 1" in (before.error or {}).get("message", "")

    proposal = await service.submit(
        OPERATOR, "policy/flaky", 1, "fetch", "retry", RETRY_PATCH, "the error is transient"
    )
    assert proposal["target"] == {"playbook": "policy/flaky", "version": 1, "step": "fetch"}
    assert "+    spec:" in proposal["diff"] and "+            do: retry" in proposal["diff"]
    assert (await engine.catalog.get("policy/flaky")).version == 1  # nothing changes yet

    applied = await service.decide(proposal["id"], HUMAN, True, "retry it")
    assert (applied["status"], applied["from_version"], applied["applied_version"]) == (
        "applied",
        1,
        2,
    )
    latest = await engine.catalog.get("policy/flaky")
    assert latest.version == 2
    rules = yaml.safe_load(latest.content)["workflow"][0]["tool"]["spec"]["policy"]["rules"]
    assert rules[0]["then"]["attempts"] == 3
    events = await engine.events.read(POLICY_STREAM)
    assert [e.event_type for e in events] == [
        ev.POLICY_PROPOSED,
        ev.POLICY_APPROVED,
        ev.POLICY_APPLIED,
    ]
    assert events[1].payload["decided_by"] == "alice"
    assert events[2].payload["from_version"] == 1 and events[2].payload["to_version"] == 2
    assert events[2].payload["inverse_patch"] == [{"op": "remove", "path": "/workflow/0/tool/spec"}]

    after = await engine.run("policy/flaky", workload={"counter": counters()})
    assert after.status == "completed", after.error
    assert after.result == {"attempt": 2}
    summary = await engine.events.get_execution(after.execution_id)
    assert summary.playbook_version == 2
    assert [s.execution_id for s in await engine.events.list_executions()] == [
        after.execution_id,
        before.execution_id,
    ]  # policy events are no execution


async def test_a_learned_retry_proposal_approved_by_a_human(engine, services, flaky_service):
    service = services()
    await engine.register(FLAKY_HTTP)
    workload = {"base": flaky_service}  # every other request answers 503
    outcomes = [(await engine.run("policy/flakyhttp", workload=workload)).status for _ in range(20)]
    assert outcomes.count("failed") == 10

    report = await service.suggest(OPERATOR, "policy/flakyhttp")
    assert len(report.proposed) == 1, report.to_dict()
    proposal = report.proposed[0]
    assert proposal["kind"] == "retry" and proposal["target"]["step"] == "fetch"
    assert proposal["proposed_by"] == {"name": "learner:retry", "kind": "agent"}
    assert proposal["requested_by"] == {"name": "ops-bot", "kind": "agent"}
    assert proposal["evidence"]["error_class"] == "http_503"
    assert proposal["evidence"]["similar_failures"]["available"] is False
    again = await service.suggest(OPERATOR, "policy/flakyhttp")
    assert again.proposed == [] and [p["id"] for p in again.pending] == [proposal["id"]]

    await service.decide(proposal["id"], HUMAN, True, "the learner is right")
    after = [await engine.run("policy/flakyhttp", workload=workload) for _ in range(4)]
    assert [o.status for o in after] == ["completed"] * 4
    assert await _policy_events(engine) == [
        ev.POLICY_PROPOSED,
        ev.POLICY_APPROVED,
        ev.POLICY_APPLIED,
    ]


async def test_a_change_that_made_things_worse_is_rolled_back(engine, services):
    service = services(evaluate_after=6)
    await engine.register(SWITCH)
    for _ in range(6):
        assert (await engine.run("policy/switch")).status == "completed"
    bad = await service.submit(
        OPERATOR,
        "policy/switch",
        1,
        "work",
        "timeout",
        [{"op": "replace", "path": "/workload/fail", "value": True}],
        "a hand-written change that turns out badly",
    )
    await service.decide(bad["id"], HUMAN, True, "try it")
    for count in range(6):
        assert await service.evaluate_due() == []  # not enough executions yet
        assert (await engine.run("policy/switch")).status == "failed", count

    evaluated = await service.evaluate_due()
    assert [item["id"] for item in evaluated] == [bad["id"]]
    evaluation = evaluated[0]["evaluation"]
    assert evaluation["verdict"] == "worse"
    assert (evaluation["n_before"], evaluation["n_after"]) == (6, 6)
    rollback_id = evaluation["rollback_proposal_id"]
    rollback = await service.get(rollback_id)
    assert rollback["kind"] == "rollback" and rollback["status"] == "pending"
    assert rollback["target"] == {"playbook": "policy/switch", "version": 2, "step": "work"}
    assert rollback["patch"] == [{"op": "replace", "path": "/workload/fail", "value": False}]
    assert rollback["proposed_by"] == {"name": "learner:evaluator", "kind": "agent"}
    assert rollback["evidence"]["rolls_back"] == bad["id"]
    assert await service.evaluate_due() == []  # measured once
    assert (await engine.catalog.get("policy/switch")).version == 2  # waits for a person

    restored = await service.decide(rollback_id, OTHER_HUMAN, True, "undo it")
    assert restored["status"] == "applied" and restored["applied_version"] == 3
    original = await service.get(bad["id"])
    assert original["status"] == "rolled_back"
    assert original["rolled_back_by"] == rollback_id
    assert (await engine.run("policy/switch")).status == "completed"
    assert await _policy_events(engine) == [
        ev.POLICY_PROPOSED,
        ev.POLICY_APPROVED,
        ev.POLICY_APPLIED,
        ev.POLICY_PROPOSED,
        ev.POLICY_EVALUATED,
        ev.POLICY_APPROVED,
        ev.POLICY_APPLIED,
        ev.POLICY_ROLLED_BACK,
    ]


SLEEPER = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: sleeper, path: policy/sleeper}
workload: {pause: 0.0}
workflow:
  - step: work
    tool:
      kind: python
      code: |
        import time

        def main(pause):
            time.sleep(pause)
            return {"slept": pause}
      input:
        pause: "{{ pause }}"
"""
SLOWER = [{"op": "replace", "path": "/workload/pause", "value": 0.3}]


async def _slowed_down(engine, services, kind: str) -> dict:
    """Apply a change of ``kind`` that makes every run 0.3 s slower; return its evaluation."""
    service = services(evaluate_after=8)
    await engine.register(SLEEPER)
    for _ in range(8):
        assert (await engine.run("policy/sleeper")).status == "completed"
    change = await service.submit(OPERATOR, "policy/sleeper", 1, "work", kind, SLOWER, "slower")
    await service.decide(change["id"], HUMAN, True, "measure it")
    for _ in range(8):
        assert (await engine.run("policy/sleeper")).status == "completed"
    [evaluated] = await service.evaluate_due()
    return evaluated["evaluation"]


async def test_a_slower_pool_change_is_rolled_back(engine, services):
    evaluation = await _slowed_down(engine, services, "pool")
    assert evaluation["verdict"] == "worse"
    assert evaluation["rollback_proposal_id"] is not None


async def test_a_removed_retry_is_not_put_back_for_a_slow_down_alone(engine, services):
    # undoing it would retry an error found permanent again: only more failures justify that
    evaluation = await _slowed_down(engine, services, "retry_remove")
    assert evaluation["verdict"] == "worse"
    assert evaluation["rollback_proposal_id"] is None
