"""The embedded runtime: approvals with timeouts, cancellation, sub-playbooks, timeouts."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

from engine.core import events as ev
from engine.errors import Conflict, NotFound
from engine.runtime.embedded import Engine


def _playbook(name: str, workflow: str, extra: str = "") -> str:
    head = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}}}\n{extra}"
    return head + "workflow:\n" + textwrap.indent(textwrap.dedent(workflow), "  ")


async def test_an_approval_that_times_out_follows_on_timeout(engine: Engine) -> None:
    entry = await engine.register(
        _playbook(
            "gate",
            """\
            - step: start
              tool: {kind: approval, prompt: "ship?", timeout: 0.2, on_timeout: approve}
              next: {arcs: [{step: shipped, when: "{{ start.approved }}"}, {step: held}]}
            - step: shipped
              tool: {kind: noop}
            - step: held
              tool: {kind: noop}
            """,
        )
    )
    execution_id = await engine.execute(entry.path)
    assert (await engine.wait(execution_id)).status == "paused"
    outcome = await engine.wait(execution_id, timeout=10, through_pauses=True)
    assert outcome.status == "completed"
    events = await engine.events.read(execution_id)
    decided = [e for e in events if e.event_type == ev.APPROVAL_DECIDED]
    assert decided[0].payload["decided_by"] == "timeout"
    assert "shipped" in [e.entity_id for e in events if e.event_type == ev.STEP_STARTED]


async def test_deciding_unknown_or_decided_approvals_is_refused(engine: Engine) -> None:
    entry = await engine.register(
        _playbook(
            "gate2",
            """\
            - step: start
              tool: {kind: approval, prompt: "ok?"}
            """,
        )
    )
    execution_id = await engine.execute(entry.path)
    await engine.wait(execution_id)
    with pytest.raises(NotFound, match="approvals list"):
        await engine.decide_approval(f"{execution_id}/nope#1", approved=True, decided_by="me")
    await engine.decide_approval(f"{execution_id}/start#1", approved=False, decided_by="me")
    assert (await engine.wait(execution_id, through_pauses=True)).status == "completed"
    with pytest.raises(Conflict, match="already"):
        await engine.decide_approval(f"{execution_id}/start#1", approved=True, decided_by="me")


async def test_cancel_stops_a_running_execution(engine: Engine) -> None:
    entry = await engine.register(
        _playbook(
            "slow",
            """\
            - step: start
              tool: {kind: shell, cmds: ["sleep 30"]}
            """,
        )
    )
    execution_id = await engine.execute(entry.path)
    await asyncio.sleep(0.2)
    await engine.cancel(execution_id, "operator said stop")
    outcome = await engine.wait(execution_id, timeout=10)
    assert outcome.status == "cancelled"
    assert outcome.error is not None and "operator said stop" in outcome.error["message"]
    with pytest.raises(Conflict, match="already finished"):
        await engine.cancel(execution_id)


async def test_step_timeout_fails_the_step_with_a_clear_message(engine: Engine) -> None:
    entry = await engine.register(
        _playbook(
            "timeout",
            """\
            - step: start
              spec: {timeout: 0.3s}
              tool: {kind: python, code: "import time\\ntime.sleep(5)"}
            """,
        )
    )
    outcome = await engine.run(entry.path)
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error["kind"] == "timeout" and "timeout" in outcome.error["message"]


async def test_sub_playbook_result_and_parent_link(engine: Engine) -> None:
    child = await engine.register(
        _playbook(
            "child",
            """\
            - step: start
              tool: {kind: python, code: "def main(n):\\n    return {'twice': n * 2}"}
              input: {n: "{{ n }}"}
            """,
            extra="workload: {n: 1}\n",
        )
    )
    parent = await engine.register(
        _playbook(
            "parent",
            f"""\
            - step: start
              tool: {{kind: playbook, path: {child.path}, input: {{n: 21}}}}
            """,
        )
    )
    outcome = await engine.run(parent.path)
    assert outcome.status == "completed", outcome.error
    assert outcome.result == {"twice": 42}
    children = [
        s for s in await engine.events.list_executions() if s.parent_execution_id is not None
    ]
    assert [c.parent_execution_id for c in children] == [outcome.execution_id]


async def test_unknown_sub_playbook_fails_the_step_with_a_hint(engine: Engine) -> None:
    parent = await engine.register(
        _playbook(
            "orphan_parent",
            """\
            - step: start
              tool: {kind: playbook, path: does/not/exist}
            """,
        )
    )
    outcome = await engine.run(parent.path)
    assert outcome.status == "failed"
    assert outcome.error is not None and "does/not/exist" in outcome.error["message"]


async def test_many_executions_run_concurrently(engine: Engine) -> None:
    entry = await engine.register(
        _playbook(
            "concurrent",
            """\
            - step: start
              tool: {kind: python, code: "def main(i):\\n    return i"}
              input: {i: "{{ i }}"}
            """,
            extra="workload: {i: 0}\n",
        )
    )
    ids = [await engine.execute(entry.path, workload={"i": i}) for i in range(20)]
    outcomes = await asyncio.gather(*(engine.wait(i, timeout=30) for i in ids))
    assert [o.result for o in outcomes] == list(range(20))
