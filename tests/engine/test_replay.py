"""Stored event logs replay through the pure core to identical decisions."""

from __future__ import annotations

import textwrap

import pytest

from engine.core.replay import Nondeterminism, replay
from engine.dsl.loader import parse_playbook
from engine.runtime.embedded import Engine

PLAYBOOKS = {
    "fanout": """
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {name: fanout}
        workload: {items: [3, 1, 2]}
        workflow:
          - step: start
            tool: {kind: noop}
            next: {spec: {mode: inclusive}, arcs: [{step: a}, {step: b}, {step: c}]}
          - step: a
            loop: {in: "{{ items }}", iterator: x, spec: {mode: parallel, max_in_flight: 2}}
            tool: {kind: python, code: "def main(x):\\n    return x * 10"}
            input: {x: "{{ x }}"}
            next: [join]
          - step: b
            tool: {kind: python, code: "raise ValueError('boom')"}
            next:
              arcs:
                - {step: join, when: "{{ event.status == 'error' }}", set: {ctx.b_failed: true}}
          - step: c
            tool: {kind: python, code: "result = 3"}
            next: [join]
          - step: join
            tool:
              kind: python
              code: "def main(a, flag):\\n    return {'sum': sum(a), 'flag': flag}"
            input: {a: "{{ a }}", flag: "{{ ctx.b_failed }}"}
        """,
    "approval": """
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {name: gate}
        workflow:
          - step: start
            tool: {kind: approval, prompt: "go?"}
            next: {arcs: [{step: go, when: "{{ start.approved }}"}, {step: stop}]}
          - step: go
            tool: {kind: noop}
          - step: stop
            tool: {kind: noop}
        """,
}


async def _run(engine: Engine, text: str) -> str:
    entry = await engine.register(textwrap.dedent(text))
    outcome = await engine.run(entry.path)
    return outcome.execution_id


async def test_fanout_loop_and_failure_routing_replay_identically(engine: Engine) -> None:
    execution_id = await _run(engine, PLAYBOOKS["fanout"])
    outcome = await engine.outcome(execution_id)
    assert outcome.status == "completed"
    assert outcome.result == {"sum": 60, "flag": True}
    stored = await engine.events.read(execution_id)
    machine = replay(parse_playbook(textwrap.dedent(PLAYBOOKS["fanout"])), stored)
    assert machine.status == "completed"
    joins = [e for e in stored if e.event_type == "step.started" and e.entity_id == "join"]
    assert len(joins) == 1


async def test_paused_and_resumed_execution_replays_identically(engine: Engine) -> None:
    execution_id = await _run(engine, PLAYBOOKS["approval"])
    assert (await engine.outcome(execution_id)).status == "paused"
    await engine.decide_approval(f"{execution_id}/start#1", approved=True, decided_by="tester")
    outcome = await engine.wait(execution_id)
    assert outcome.status == "completed"
    stored = await engine.events.read(execution_id)
    machine = replay(parse_playbook(textwrap.dedent(PLAYBOOKS["approval"])), stored)
    assert machine.results["start"]["approved"] is True
    assert [e.entity_id for e in stored if e.event_type == "step.started"] == ["start", "go"]


async def test_replay_with_a_changed_playbook_is_a_nondeterminism_error(engine: Engine) -> None:
    execution_id = await _run(engine, PLAYBOOKS["fanout"])
    stored = await engine.events.read(execution_id)
    changed = textwrap.dedent(PLAYBOOKS["fanout"]).replace(
        "arcs: [{step: a}, {step: b}, {step: c}]", "arcs: [{step: a}, {step: c}, {step: b}]"
    )
    with pytest.raises(Nondeterminism, match="seq"):
        replay(parse_playbook(changed), stored)
