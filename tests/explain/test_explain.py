"""Explaining failures through the service: real executions on the embedded engine, a
real search index, the ranking of causes, resolutions, redaction and feedback."""

from __future__ import annotations

import json

import pytest

from engine.core import events as ev
from engine.core.events import Event
from engine.errors import NotFound
from noetl_agent.explain import Explainer
from noetl_agent.principals import LOCAL_ADMIN
from tests.explain.conftest import World
from tests.explain.playbooks import (
    API_KEY,
    ENRICH_BROKEN,
    ENRICH_FIXED,
    MERGE_CONTACTS,
    SECRET,
    WORKS,
    stalled,
)
from tests.learning import corpus


async def _history_of_failures(world: World) -> str:
    """Earlier failures (two missing keys, one fixed since; a refused connection; a
    rejected token), then the failure to explain; returns its execution id."""
    await world.run("enrich", ENRICH_BROKEN)
    await world.run("enrich", ENRICH_BROKEN)
    await world.run("enrich_fixed", ENRICH_FIXED)
    await world.run("db", corpus.DB_DOWN)
    await world.run("auth", corpus.AUTH)
    failed = await world.run("merge", MERGE_CONTACTS)
    await world.history.index()
    return failed


async def test_a_missing_key_is_explained_by_input_shape_with_similar_failures(
    world: World,
) -> None:
    failed = await _history_of_failures(world)

    explanation = await world.explainer.explain(failed)

    assert explanation.failed and explanation.status == "failed"
    assert explanation.failure is not None
    assert explanation.failure.step == "merge"
    assert explanation.failure.error.code == "KeyError"
    root = explanation.causes[0]
    assert root.id == "input_shape", [c.id for c in explanation.causes]
    assert set(world.runs["enrich"]) <= set(root.supported_by)
    assert root.score > 0.5
    assert [c.score for c in explanation.causes] == sorted(
        (c.score for c in explanation.causes), reverse=True
    )
    # The nearest past failures are the other missing keys, not the refused connection.
    nearest = {item.execution_id for item in explanation.similar[:2]}
    assert nearest == set(world.runs["enrich"])
    assert any("input" in fix for fix in explanation.suggested_fixes)
    assert "likely cause" in explanation.summary
    assert explanation.failure.events[-1]["event_type"] in {ev.STEP_FINISHED, ev.NEXT_EVALUATED}


async def test_a_later_success_shows_how_a_similar_failure_was_resolved(world: World) -> None:
    failed = await _history_of_failures(world)

    explanation = await world.explainer.explain(failed)

    by_id = {item.execution_id: item for item in explanation.similar}
    fixed_by = world.runs["enrich_fixed"][0]
    for earlier in world.runs["enrich"]:
        (resolution,) = by_id[earlier].resolutions
        assert resolution.kind == "later_success"
        assert resolution.execution_id == fixed_by
        assert "playbook v1 -> v2" in resolution.changes
    assert explanation.causes[0].resolved == 2
    assert any(fixed_by in fix for fix in explanation.suggested_fixes)

    # The broken run itself is shown as resolved since then.
    own = await world.explainer.explain(world.runs["enrich"][0])
    assert own.resolutions[0].execution_id == fixed_by
    assert "since then" in own.summary


async def test_a_policy_applied_after_a_failure_is_a_resolution(world: World) -> None:
    failed = await world.run("db", corpus.DB_DOWN)
    applied_at = "2999-01-01T00:00:00Z"  # after the failure, whatever the clock says
    await world.engine.events.append(
        [
            Event(
                "p-1:proposed",
                ev.POLICY_PROPOSED,
                "policy",
                "2999-01-01T00:00:00Z",
                payload={
                    "proposal_id": "p-1",
                    "target": {"playbook": "etl/load_orders", "version": 1, "step": "work"},
                    "kind": "retry",
                    "rationale": "connection errors recover within 3 attempts",
                },
            ),
            Event(
                "p-1:applied",
                ev.POLICY_APPLIED,
                "policy",
                applied_at,
                payload={"proposal_id": "p-1", "from_version": 1, "to_version": 2},
            ),
        ]
    )

    explanation = await world.explainer.explain(failed)

    (resolution,) = explanation.resolutions
    assert resolution.kind == "policy_applied"
    assert (resolution.proposal_id, resolution.from_version, resolution.to_version) == (
        "p-1",
        1,
        2,
    )
    assert resolution.policy_kind == "retry"
    assert explanation.causes[0].id == "service_down"


async def test_secrets_in_inputs_and_errors_are_masked(world: World) -> None:
    failed = await world.run("merge", MERGE_CONTACTS)

    explanation = await world.explainer.explain(failed)

    text = json.dumps(explanation.to_dict())
    assert SECRET not in text
    assert API_KEY not in text
    assert explanation.failure is not None
    assert explanation.failure.workload["api_key"] == "***"
    assert explanation.failure.workload["record"]["note"] == "***"
    assert "***" in explanation.failure.error.message
    assert explanation.failure.inputs == {"record": "{{ record }}"}


async def test_an_execution_that_did_not_fail_is_answered_plainly(world: World) -> None:
    done = await world.run("ok", WORKS)

    explanation = await world.explainer.explain(done)

    assert explanation.failed is False
    assert explanation.status == "completed"
    assert "did not fail" in explanation.summary
    assert explanation.causes == [] and explanation.failure is None


async def test_an_unknown_execution_is_not_found(world: World) -> None:
    with pytest.raises(NotFound, match="nope"):
        await world.explainer.explain("nope")
    with pytest.raises(NotFound):
        await world.explainer.record_feedback("nope", helpful=True, principal=LOCAL_ADMIN)


async def test_without_an_index_the_rules_alone_rank_causes(world: World) -> None:
    failed = await world.run("auth", corpus.AUTH)
    explainer = Explainer(world.engine.events, world.engine.catalog)

    explanation = await explainer.explain(failed)

    assert explanation.causes[0].id == "credentials"
    assert explanation.similar == []
    assert any("no search index" in note for note in explanation.notes)


async def test_feedback_is_recorded_on_the_execution_and_shown(world: World) -> None:
    failed = await _history_of_failures(world)

    recorded = await world.explainer.record_feedback(
        failed, helpful=True, principal=LOCAL_ADMIN, comment=f"yes, the email key ({SECRET})"
    )

    assert recorded.cause == "input_shape"  # the first cause of the explanation
    assert recorded.principal == "local-admin"
    assert SECRET not in (recorded.comment or "")
    stored = [
        e for e in await world.engine.events.read(failed) if e.event_type == ev.FEEDBACK_RECORDED
    ]
    assert [e.payload["helpful"] for e in stored] == [True]
    summary = await world.engine.events.get_execution(failed)
    assert summary.status == "failed"  # feedback changes nothing of the execution
    explanation = await world.explainer.explain(failed)
    assert [(f.helpful, f.principal) for f in explanation.feedback] == [(True, "local-admin")]


async def test_feedback_on_similar_failures_weighs_the_causes(world: World) -> None:
    first = await world.run("stalled", stalled("ops/frobnicate_a"))
    second = await world.run("stalled", stalled("ops/frobnicate_b"))
    await world.history.index()
    before = await world.explainer.explain(second)
    assert before.causes[0].id == "error:RuntimeError"

    # A person said the transient-error explanation helped on the first failure.
    await world.explainer.record_feedback(
        first, helpful=True, principal=LOCAL_ADMIN, cause="transient"
    )
    after = await world.explainer.explain(second)

    assert after.causes[0].id == "transient", [(c.id, c.score) for c in after.causes]
    assert first in after.causes[0].supported_by
    assert any("feedback confirmed" in line for line in after.causes[0].evidence)

    # Two people saying it did not help outvote the one who said it did.
    for _ in range(2):
        await world.explainer.record_feedback(
            first, helpful=False, principal=LOCAL_ADMIN, cause="transient"
        )
    refuted = await world.explainer.explain(second)
    scores = {c.id: c.score for c in refuted.causes}
    assert scores.get("transient", 0.0) < after.causes[0].score
    assert refuted.causes[0].id == "error:RuntimeError"
