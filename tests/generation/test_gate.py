"""Generated drafts that run code cannot run live until a human operator promotes them;
renaming or re-indenting a draft does not escape the gate; the gate can be switched off."""

from __future__ import annotations

import pytest
import yaml

from engine.dsl.loader import parse_playbook
from engine.errors import NotFound
from engine.runtime.embedded import Engine
from noetl_agent.errors import Forbidden
from noetl_agent.generation import Constraints, DraftNotPromoted, draft_status, promote
from noetl_agent.generation.service import generate_on, promote_version
from noetl_agent.principals import LOCAL_ADMIN, LOCAL_AGENT, Principal
from tests.generation.conftest import ITEMS, Service

HUMAN_OPERATOR = Principal("ada", "human", frozenset({"operator"}))
HUMAN_VIEWER = Principal("vic", "human", frozenset({"viewer"}))


async def _draft(engine: Engine, service: Service) -> dict[str, object]:
    draft = await generate_on(
        engine,
        f"Fetch {service.url}/items and compute the average price",
        Constraints(examples=0),
        principal=LOCAL_AGENT,
        register=True,
    )
    assert draft.valid and draft.gated and draft.code_tools == ["python"]
    assert draft.registered is not None
    return draft.registered


async def test_a_gated_draft_runs_only_after_a_human_operator_promotes_it(
    gated_engine: Engine, service: Service
) -> None:
    registered = await _draft(gated_engine, service)
    path = str(registered["path"])
    with pytest.raises(DraftNotPromoted, match="promote"):
        await gated_engine.execute(path)
    assert service.requests == []  # refused before anything ran
    with pytest.raises(Forbidden, match="only a human operator"):
        await promote_version(gated_engine, path, None, principal=LOCAL_AGENT)
    with pytest.raises(Forbidden, match="operator role"):
        await promote_version(gated_engine, path, None, principal=HUMAN_VIEWER)
    status = await promote_version(gated_engine, path, None, principal=HUMAN_OPERATOR)
    assert status.promoted_by == "ada" and not status.blocked
    outcome = await gated_engine.run(path)
    assert outcome.status == "completed", outcome
    assert outcome.result["average_price"] == sum(i["price"] for i in ITEMS) / len(ITEMS)
    assert service.requests == ["GET /items"]


async def test_renaming_and_reformatting_a_draft_does_not_escape_the_gate(
    gated_engine: Engine, service: Service
) -> None:
    registered = await _draft(gated_engine, service)
    entry = await gated_engine.catalog.get(str(registered["path"]))
    document = yaml.safe_load(entry.content)
    document["metadata"] = {"name": "innocent", "path": "other/innocent", "description": "x"}
    renamed = await gated_engine.register(yaml.safe_dump(document, default_flow_style=True))
    with pytest.raises(DraftNotPromoted):
        await gated_engine.execute(renamed.path)


async def test_a_sub_playbook_call_to_a_gated_draft_fails_its_step(
    gated_engine: Engine, service: Service
) -> None:
    registered = await _draft(gated_engine, service)
    parent = await gated_engine.register(
        "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: parent, path: test/parent}\n"
        "workflow:\n  - step: start\n"
        f"    tool: {{kind: playbook, path: {registered['path']}}}\n"
    )
    outcome = await gated_engine.run(parent.path)
    assert outcome.status == "failed"
    assert "promote" in str(outcome.error)
    assert service.requests == []


async def test_drafts_without_code_run_at_once(gated_engine: Engine, service: Service) -> None:
    draft = await generate_on(
        gated_engine,
        f"Fetch {service.url}/items",
        Constraints(examples=0),
        principal=LOCAL_AGENT,
        register=True,
    )
    assert not draft.gated and draft.registered is not None
    outcome = await gated_engine.run(str(draft.registered["path"]))
    assert outcome.status == "completed"


async def test_the_gate_can_be_switched_off(
    gated_engine: Engine, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered = await _draft(gated_engine, service)
    monkeypatch.setenv("NOETL_GENERATED_GATE", "off")
    outcome = await gated_engine.run(str(registered["path"]))
    assert outcome.status == "completed"


async def test_promoting_what_was_not_generated_is_refused(gated_engine: Engine) -> None:
    entry = await gated_engine.register(
        "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: own, path: test/own}\n"
        "workflow:\n  - step: start\n    tool: {kind: python, code: 'result = 1'}\n"
    )
    with pytest.raises(NotFound, match="not a generated draft"):
        await promote_version(gated_engine, entry.path, None, principal=LOCAL_ADMIN)
    outcome = await gated_engine.run(entry.path)  # hand-written playbooks are not gated
    assert outcome.status == "completed"


async def test_the_generated_record_says_what_the_gate_needs(
    gated_engine: Engine, service: Service
) -> None:
    registered = await _draft(gated_engine, service)
    entry = await gated_engine.catalog.get(str(registered["path"]))
    playbook = parse_playbook(entry.content)
    status = await draft_status(gated_engine.events, playbook)
    assert status.generated and status.gated and status.blocked
    assert status.code_tools == ["python"]
    promoted = await promote(gated_engine.events, playbook, HUMAN_OPERATOR, "reviewed")
    again = await promote(gated_engine.events, playbook, LOCAL_ADMIN)
    assert promoted.promoted_by == again.promoted_by == "ada"
