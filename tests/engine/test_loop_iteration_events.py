"""Every loop iteration is closed by exactly one ``loop.iteration.finished`` in the log."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.adapters.memory.queue import MemoryCommandQueue
from engine.adapters.sqlite.stores import SqliteDatabase
from engine.core import events as ev
from engine.core.commands import RunTool
from engine.core.events import Event
from engine.core.replay import INPUT_TYPES, replay
from engine.dsl.loader import parse_playbook
from engine.runtime.embedded import Engine


def _playbook(name: str, loop: str, body: str, workload: str, extra: str = "") -> str:
    code = textwrap.indent(textwrap.dedent(body), " " * 8)
    head = (
        "apiVersion: noetl.io/v2\n"
        "kind: Playbook\n"
        f"metadata: {{name: {name}}}\n"
        f"workload: {workload}\n"
        "workflow:\n"
        "  - step: start\n"
        f"    loop: {loop}\n"
        "    tool:\n"
        "      kind: python\n"
        "      code: |\n"
        f"{code}"
        '    input: {x: "{{ x }}"}\n'
    )
    return head + textwrap.indent(textwrap.dedent(extra), "  ")


SEQUENTIAL = _playbook(
    "seq",
    '{in: "{{ items }}", iterator: x}',
    """\
    def main(x):
        return x * 10
    """,
    "{items: [1, 2, 3]}",
)
FAILING = _playbook(
    "failing",
    '{in: "{{ items }}", iterator: x}',
    """\
    def main(x):
        if x == 2:
            raise ValueError('two is not allowed')
        return x
    """,
    "{items: [1, 2, 3]}",
)
PARALLEL = _playbook(
    "par",
    '{in: "{{ items }}", iterator: x, spec: {mode: parallel, max_in_flight: 2}}',
    """\
    import time
    def main(x):
        time.sleep(0.01 * (x % 3))
        return {'x': x}
    """,
    "{items: [1, 2, 3, 4, 5, 6]}",
)


def _loop_events(events: list[Event]) -> list[Event]:
    return [e for e in events if e.event_type.startswith("loop.")]


def _check_iterations_closed(events: list[Event]) -> dict[tuple[str, int], Event]:
    """Each started iteration has one finished event, after its final tool report and
    before its loop's ``loop.finished``; return the finished events by (run, index)."""
    started: dict[tuple[str, int], int] = {}
    finished: dict[tuple[str, int], Event] = {}
    reported: dict[tuple[str, int], int] = {}
    loops_done: dict[str, int] = {}
    for position, event in enumerate(events):
        run = event.step_run_id or ""
        key = (run, event.iteration if event.iteration is not None else -1)
        if event.event_type == ev.LOOP_ITERATION_STARTED:
            assert key not in started, f"{key} started twice"
            started[key] = position
        elif event.event_type == ev.LOOP_ITERATION_FINISHED:
            assert key in started, f"{key} finished without starting"
            assert key not in finished, f"{key} finished twice"
            assert run not in loops_done, f"{key} finished after its loop"
            finished[key] = event
        elif event.event_type == ev.TOOL_PROCESSED and event.iteration is not None:
            if not event.payload.get("partial"):
                reported.setdefault(key, position)
        elif event.event_type == ev.LOOP_FINISHED:
            loops_done[run] = position
    assert set(finished) == set(started)
    for key, event in finished.items():
        if event.status != ev.STATUS_CANCELLED:
            assert reported[key] < events.index(event), f"{key} finished before its report"
    return finished


async def _run(engine: Engine, text: str, **workload: object) -> tuple[str, list[Event]]:
    entry = await engine.register(text)
    outcome = await engine.run(entry.path, workload=workload or None)
    return outcome.status, await engine.events.read(outcome.execution_id)


async def test_a_sequential_loop_closes_each_iteration_before_the_next(engine: Engine) -> None:
    status, events = await _run(engine, SEQUENTIAL)
    assert status == "completed"
    finished = _check_iterations_closed(events)
    assert [(e.iteration, e.status, e.payload["output"]) for e in finished.values()] == [
        (0, "success", 10),
        (1, "success", 20),
        (2, "success", 30),
    ]
    (first,) = [e for e in finished.values() if e.iteration == 0]
    assert (first.entity_type, first.entity_id, first.parent_id) == (
        "loop",
        "start",
        "step:start#1",
    )
    assert first.attempt == 1 and first.payload["error"] is None
    kinds = [(e.event_type, e.iteration) for e in _loop_events(events)]
    assert kinds == [
        (ev.LOOP_STARTED, None),
        (ev.LOOP_ITERATION_STARTED, 0),
        (ev.LOOP_ITERATION_FINISHED, 0),
        (ev.LOOP_ITERATION_STARTED, 1),
        (ev.LOOP_ITERATION_FINISHED, 1),
        (ev.LOOP_ITERATION_STARTED, 2),
        (ev.LOOP_ITERATION_FINISHED, 2),
        (ev.LOOP_FINISHED, None),
    ]
    assert first.to_dict()["event_alias"] == "LoopIterationFinished"
    replay(parse_playbook(SEQUENTIAL), events)


async def test_a_failing_iteration_is_finished_with_its_error(engine: Engine) -> None:
    status, events = await _run(engine, FAILING)
    assert status == "failed"
    finished = _check_iterations_closed(events)
    assert [(e.iteration, e.status) for e in finished.values()] == [(0, "success"), (1, "error")]
    failed = finished[("start#1", 1)]
    assert failed.payload["output"] is None and failed.payload["action"] == "fail"
    assert failed.payload["error"]["message"] == "ValueError: two is not allowed"
    (loop_finished,) = [e for e in events if e.event_type == ev.LOOP_FINISHED]
    assert loop_finished.status == "error"
    replay(parse_playbook(FAILING), events)


async def test_an_iteration_is_finished_once_after_its_retries(
    engine: Engine, tmp_path: Path
) -> None:
    text = _playbook(
        "retrying",
        '{in: "{{ items }}", iterator: x}',
        """\
        from pathlib import Path
        def main(x, marks):
            mark = Path(marks) / str(x)
            if x == 2 and not mark.exists():
                mark.write_text('tried')
                raise ConnectionError('flaky')
            return x
        """,
        "{items: [1, 2, 3]}",
    ).replace('input: {x: "{{ x }}"}', 'input: {x: "{{ x }}", marks: "{{ marks }}"}')
    text = text.replace(
        "    input:",
        "      spec:\n"
        "        policy:\n"
        "          rules:\n"
        "            - when: \"{{ output.status == 'error' }}\"\n"
        "              then: {do: retry, attempts: 3, delay: 0}\n"
        "    input:",
    )
    status, events = await _run(engine, text, marks=str(tmp_path))
    assert status == "completed"
    finished = _check_iterations_closed(events)
    retried = finished[("start#1", 1)]
    assert (retried.status, retried.attempt, retried.payload["output"]) == ("success", 2, 2)
    retries = [e for e in events if e.event_type == ev.RETRY_PROCESSED and e.iteration == 1]
    assert len(retries) == 1
    assert events.index(retries[0]) < events.index(retried)
    replay(parse_playbook(text), events)


async def test_a_parallel_loop_closes_every_iteration_within_its_limit(engine: Engine) -> None:
    status, events = await _run(engine, PARALLEL)
    assert status == "completed"
    finished = _check_iterations_closed(events)
    assert sorted(e.iteration or 0 for e in finished.values()) == [0, 1, 2, 3, 4, 5]
    assert all(e.status == "success" for e in finished.values())
    assert {e.iteration: e.payload["output"] for e in finished.values()} == {
        i: {"x": i + 1} for i in range(6)
    }
    open_iterations = 0
    for event in _loop_events(events):
        if event.event_type == ev.LOOP_ITERATION_STARTED:
            open_iterations += 1
            assert open_iterations <= 2
        elif event.event_type == ev.LOOP_ITERATION_FINISHED:
            open_iterations -= 1
    replay(parse_playbook(PARALLEL), events)


async def test_iterations_running_when_the_loop_fails_are_finished_cancelled(
    engine: Engine,
) -> None:
    text = _playbook(
        "abandoned",
        '{in: "{{ items }}", iterator: x, spec: {mode: parallel, max_in_flight: 3}}',
        """\
        import time
        def main(x):
            if x == 1:
                raise ValueError('one fails at once')
            time.sleep(0.5)
            return x
        """,
        "{items: [1, 2, 3]}",
        extra="""\
        - step: after
          tool: {kind: python, code: "import time\\ntime.sleep(1.5)\\nresult = 'done'"}
        """,
    )
    text = text.replace(
        '    input: {x: "{{ x }}"}',
        '    input: {x: "{{ x }}"}\n'
        "    next: {arcs: [{step: after, when: \"{{ event.status == 'error' }}\"}]}",
    )
    status, events = await _run(engine, text)
    assert status == "completed"
    finished = _check_iterations_closed(events)
    assert finished[("start#1", 0)].status == "error"
    for index in (1, 2):
        late = finished[("start#1", index)]
        assert late.status == "cancelled"
        assert late.payload["error"]["kind"] == "cancelled"
    # The cancelled iterations' own reports came in later and changed nothing.
    late_reports = [
        e for e in events if e.event_type == ev.TOOL_PROCESSED and e.iteration in (1, 2)
    ]
    assert len(late_reports) == 2
    replay(parse_playbook(text), events)


def _without_iteration_finished(events: list[Event]) -> list[Event]:
    """The log an engine that did not emit ``loop.iteration.finished`` wrote: the same
    decisions, numbered by their position in the shorter log."""
    execution_id = events[0].execution_id
    kept = [e for e in events if e.event_type != ev.LOOP_ITERATION_FINISHED]
    legacy: list[Event] = []
    for seq, event in enumerate(kept, start=1):
        event_id = event.event_id
        if event.event_type not in INPUT_TYPES:
            event_id = f"{execution_id}:{seq}"
        legacy.append(
            Event.from_dict({**event.to_dict(), "event_id": event_id, "seq": seq}),
        )
    return legacy


def _cut_before_report(
    events: list[Event], iteration: int, report: str = ev.TOOL_PROCESSED
) -> list[Event]:
    """The log as a crash left it just before ``report`` of ``iteration``."""
    for position, event in enumerate(events):
        if event.event_type == report and event.iteration == iteration:
            return events[:position]
    raise AssertionError(f"no {report} of iteration {iteration}")


async def _resume_from(tmp_path: Path, text: str, stored: list[Event]) -> list[Event]:
    """Store ``stored`` in a fresh event log and let a new engine finish it."""
    db = SqliteDatabase.open(tmp_path / "restarted.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "restarted-locks")
    try:
        await engine.register(text)
        await db.events.append([Event.from_dict({**e.to_dict(), "seq": None}) for e in stored])
        execution_id = stored[0].execution_id
        await engine.resume(execution_id)
        outcome = await engine.wait(execution_id, timeout=30)
        assert outcome.status == "completed", outcome.error
        assert outcome.result == [10, 20, 30]
        return await engine.events.read(execution_id)
    finally:
        await engine.aclose()
        db.close()


async def test_a_log_without_iteration_finished_events_replays(engine: Engine) -> None:
    status, events = await _run(engine, PARALLEL)
    assert status == "completed"
    legacy = _without_iteration_finished(events)
    assert not [e for e in legacy if e.event_type == ev.LOOP_ITERATION_FINISHED]
    machine = replay(parse_playbook(PARALLEL), legacy)
    assert machine.status == "completed"
    assert machine.result == [{"x": i} for i in range(1, 7)]


async def test_resuming_mid_loop_finishes_each_iteration_once(
    engine: Engine, tmp_path: Path
) -> None:
    status, events = await _run(engine, SEQUENTIAL)
    assert status == "completed"
    recovered = await _resume_from(tmp_path, SEQUENTIAL, _cut_before_report(events, 2))
    finished = _check_iterations_closed(recovered)
    assert [e.payload["output"] for e in finished.values()] == [10, 20, 30]
    replay(parse_playbook(SEQUENTIAL), recovered)


@pytest.mark.parametrize("cut_before", [ev.TOOL_STARTED, ev.TOOL_PROCESSED])
async def test_resuming_an_older_log_mid_loop_finishes_the_reported_iterations(
    engine: Engine, tmp_path: Path, cut_before: str
) -> None:
    status, events = await _run(engine, SEQUENTIAL)
    assert status == "completed"
    legacy = _cut_before_report(_without_iteration_finished(events), 2, cut_before)
    recovered = await _resume_from(tmp_path, SEQUENTIAL, legacy)
    finished = _check_iterations_closed(recovered)
    assert [(e.iteration, e.payload["output"]) for e in finished.values()] == [
        (0, 10),
        (1, 20),
        (2, 30),
    ]
    # The two reported before the restart are finished together when it resumes.
    resumed_at = len(legacy)
    assert [recovered.index(e) for e in finished.values()][:2] == [resumed_at, resumed_at + 1]
    machine = replay(parse_playbook(SEQUENTIAL), recovered)
    assert machine.status == "completed"


async def test_iterations_reported_in_one_batch_are_finished_once_and_replay(
    tmp_path: Path,
) -> None:
    """Workers send reports in batches: two iterations' outcomes may arrive together."""
    db = SqliteDatabase.open(tmp_path / "queued.db")
    queue = MemoryCommandQueue()
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "queued-locks", queue=queue)
    try:
        entry = await engine.register(PARALLEL)
        execution_id = await engine.execute(entry.path)
        for _ in range(3):
            commands = [await queue.take("cpu") for _ in range(2)]
            await engine.report([_reported(command) for command in commands])
        outcome = await engine.wait(execution_id, timeout=10)
        assert outcome.status == "completed"
        assert outcome.result == [{"x": i} for i in range(1, 7)]
        events = await engine.events.read(execution_id)
    finally:
        await engine.aclose()
        db.close()
    finished = _check_iterations_closed(events)
    assert len(finished) == 6
    reported = next(i for i, e in enumerate(events) if e.event_type == ev.TOOL_PROCESSED)
    first_batch = [e.event_type for e in events[reported : reported + 6]]
    assert first_batch == [
        ev.TOOL_PROCESSED,
        ev.TOOL_PROCESSED,
        ev.LOOP_ITERATION_FINISHED,
        ev.LOOP_ITERATION_FINISHED,
        ev.LOOP_ITERATION_STARTED,
        ev.LOOP_ITERATION_STARTED,
    ]
    replay(parse_playbook(PARALLEL), events)


def _reported(command: RunTool) -> Event:
    """The final report a worker sends for ``command``."""
    return Event(
        event_id=f"{command.execution_id}:{command.command_id}:0:done",
        event_type=ev.TOOL_PROCESSED,
        execution_id=command.execution_id,
        timestamp="2026-01-01T00:00:00Z",
        entity_type="tool",
        entity_id=f"{command.step}.python",
        parent_id=f"step:{command.step_run_id}",
        step_run_id=command.step_run_id,
        iteration=command.iteration,
        attempt=1,
        status=ev.STATUS_SUCCESS,
        payload={"output": {"x": command.context["x"]}, "error": None, "action": "continue"},
    )
