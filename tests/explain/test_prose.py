"""Explanations written by a model: litellm's ``mock_response`` stands in for the provider
(through the model client's scripted answers), everything else is real."""

from __future__ import annotations

import pytest

from engine.core import events as ev
from noetl_agent.explain import Explainer
from noetl_agent.explain_prose import calls_log, prompt
from noetl_agent.llm import LlmClient, LlmSettings, record_in
from tests.explain.conftest import World
from tests.explain.playbooks import API_KEY, ENRICH_BROKEN, MERGE_CONTACTS, SECRET

pytestmark = pytest.mark.slow

ANSWER = (
    "Root cause: the record has no 'email' key (event 13).\n"
    "Evidence: past failures of api/enrich_users failed the same way.\n"
    f"Suggested fixes: check the source of the record; the note said {SECRET}."
)


def _explainer(world: World, client: LlmClient) -> Explainer:
    return Explainer(world.engine.events, world.engine.catalog, history=world.history, llm=client)


async def test_a_model_writes_the_explanation_from_the_evidence(world: World) -> None:
    await world.run("enrich", ENRICH_BROKEN)
    failed = await world.run("merge", MERGE_CONTACTS)
    await world.history.index()
    client = LlmClient(
        LlmSettings(model="gpt-4o-mini"),
        scripted=[ANSWER],
        recorder=record_in(world.engine.events, calls_log(failed)),
    )

    explanation = await _explainer(world, client).explain(failed)

    assert explanation.model == "gpt-4o-mini"
    assert explanation.prose is not None and explanation.prose.startswith("Root cause")
    assert SECRET not in explanation.prose  # an answer quoting a secret is masked too
    assert explanation.causes[0].id == "input_shape"  # the structured answer stays
    assert explanation.usage  # tokens and cost of the call, as the model client sums them
    (call,) = await world.engine.events.read(calls_log(failed))
    assert call.event_type == ev.LLM_CALLED and call.payload["purpose"] == "explain"
    own = [e.event_type for e in await world.engine.events.read(failed)]
    assert ev.LLM_CALLED not in own


async def test_the_prompt_holds_the_evidence_and_no_secret(world: World) -> None:
    failed = await world.run("merge", MERGE_CONTACTS)
    explainer = Explainer(world.engine.events, world.engine.catalog, history=world.history)
    explanation = await explainer.explain(failed, use_model=False)

    messages = prompt(explanation.evidence(), await explainer.masker())

    text = "\n".join(message["content"] for message in messages)
    assert SECRET not in text and API_KEY not in text
    assert failed in text and "KeyError" in text and "input_shape" in text


async def test_a_failing_model_leaves_the_offline_explanation(world: World) -> None:
    failed = await world.run("merge", MERGE_CONTACTS)
    client = LlmClient(
        LlmSettings(model="gpt-4o-mini", attempts=1), scripted=["litellm.RateLimitError"]
    )

    explanation = await _explainer(world, client).explain(failed)

    assert explanation.prose is None and explanation.model is None
    assert explanation.causes[0].id == "input_shape"
    assert any("offline" in note for note in explanation.notes)
