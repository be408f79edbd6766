"""Tool runs, loop runs and executions read from real event logs of the embedded engine."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.runtime.embedded import Engine
from learning.policy.history import PolicyHistory
from learning.policy.learners import execution_runs
from tests.flaky_service import always, every, flaky_service

RETRIED = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: retried}
pools: [{name: cpu, cost_per_hour: 36.0}]
workload: {counter: ""}
workflow:
  - step: start
    input: {counter: "{{ workload.counter }}"}
    tool:
      kind: python
      code: |
        from pathlib import Path
        def main(counter):
            path = Path(counter)
            seen = int(path.read_text()) if path.exists() else 0
            path.write_text(str(seen + 1))
            if seen == 0:
                raise KeyError("not yet")
            return seen
      spec:
        policy:
          rules:
            - when: "{{ output.status == 'error' }}"
              then: {do: retry, attempts: 3, delay: 0.05}
"""

LOOPED = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: looped}
workflow:
  - step: fan
    loop: {in: [1, 2, 3, 4], iterator: x, spec: {mode: parallel, max_in_flight: 2}}
    tool:
      - {kind: noop, name: first}
      - kind: python
        name: second
        input: {x: "{{ x }}"}
        code: |
          import time
          def main(x):
              time.sleep(0.05)
              return x
"""


def http_playbook(name: str, url: str, policy: str = "") -> str:
    text = textwrap.dedent(
        f"""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {{name: {name}}}
        workflow:
          - step: call
            tool:
              kind: http
              url: {url}
        """
    )
    if policy:
        text += "      spec:\n        policy:\n" + textwrap.indent(
            textwrap.dedent(policy), " " * 10
        )
    return text


async def test_attempts_delays_usage_and_cost_of_a_retried_python_step(
    engine: Engine, tmp_path: Path
) -> None:
    entry = await engine.register(RETRIED)
    outcome = await engine.run(entry.path, workload={"counter": str(tmp_path / "count")})
    assert outcome.status == "completed"
    history = PolicyHistory(engine.events, engine.catalog)
    assert await history.refresh() > 0

    (run,) = history.tool_runs("retried")
    assert (run.step, run.step_run_id, run.iteration, run.tool_kind) == (
        "start",
        "start#1",
        None,
        "python",
    )
    assert run.ok and run.pool == "cpu" and run.playbook_version == 1
    first, second = run.attempts
    assert (first.number, first.ok, first.error_class) == (1, False, "KeyError")
    assert (second.number, second.ok, second.error_class) == (2, True, None)
    assert second.delay_before_s == pytest.approx(0.05)
    assert first.ended_at is not None and second.ended_at is not None
    assert run.started_at <= first.ended_at <= second.ended_at <= run.finished_at
    assert second.ended_at - first.ended_at >= 0.05  # the policy's delay lies between
    assert run.wall_ms is not None and run.wall_ms >= 50

    (execution,) = history.execution_runs("retried")
    assert execution.ok and execution.playbook_version == 1
    assert execution.duration_s >= run.duration_s
    assert execution.cost == pytest.approx(run.wall_ms / 1000 * 36.0 / 3600)


async def test_loop_iterations_and_pipeline_members(engine: Engine) -> None:
    entry = await engine.register(LOOPED)
    assert (await engine.run(entry.path)).status == "completed"
    history = PolicyHistory(engine.events, engine.catalog)
    await history.refresh()

    runs = history.tool_runs("looped")
    # One run per iteration: the pipeline's first member is part of it, not a run.
    assert sorted(run.iteration for run in runs if run.iteration is not None) == [0, 1, 2, 3]
    assert len(runs) == 4
    assert {(run.tool, run.tool_index, run.tool_kind) for run in runs} == {("second", 1, "python")}
    assert all(run.ok and len(run.attempts) == 1 for run in runs)
    assert all(run.wall_ms is not None and run.wall_ms >= 50 for run in runs)

    (loop,) = history.loop_runs("looped")
    assert (loop.step, loop.iterations, loop.max_in_flight, loop.ok) == ("fan", 4, 2, True)
    assert loop.busy_s >= 4 * 0.05
    assert loop.wall_s > 0
    (execution,) = history.execution_runs("looped")
    assert execution.cost is None  # no pool declares a price


async def test_http_error_classes_from_a_real_service(engine: Engine) -> None:
    with flaky_service({"flaky": every(2, {0}), "deny": always(401)}) as base:
        retried = await engine.register(
            http_playbook(
                "flaky",
                f"{base}/flaky",
                """\
                rules:
                  - when: "{{ output.status == 'error' and output.error.code in [503] }}"
                    then: {do: retry, attempts: 3, delay: 0.01}
                """,
            )
        )
        denied = await engine.register(http_playbook("denied", f"{base}/deny"))
        assert (await engine.run(retried.path)).status == "completed"
        assert (await engine.run(denied.path)).status == "failed"
    history = PolicyHistory(engine.events, engine.catalog)
    await history.refresh()

    (run,) = history.tool_runs("flaky")
    assert [(a.ok, a.error_class) for a in run.attempts] == [(False, "http_503"), (True, None)]
    assert run.attempts[1].delay_before_s == pytest.approx(0.01)
    (refused,) = history.tool_runs("denied")
    assert not refused.ok
    assert [(a.error_class, a.retryable) for a in refused.attempts] == [("http_401", False)]
    assert [e.ok for e in history.execution_runs("denied")] == [False]
    assert history.playbooks() == ["denied", "flaky"]


async def test_refresh_reads_only_what_is_new(engine: Engine, tmp_path: Path) -> None:
    entry = await engine.register(RETRIED)
    history = PolicyHistory(engine.events, engine.catalog, page=3, lookback=5)
    await engine.run(entry.path, workload={"counter": str(tmp_path / "a")})
    assert await history.refresh() > 0
    assert await history.refresh() == 0
    assert len(history.tool_runs("retried")) == 1

    await engine.run(entry.path, workload={"counter": str(tmp_path / "b")})
    assert await history.refresh() > 0
    runs = history.tool_runs("retried")
    assert len(runs) == 2 and len({run.execution_id for run in runs}) == 2

    # Read at once, the log gives the same runs as read in steps.
    whole = PolicyHistory(engine.events, engine.catalog)
    await whole.refresh()
    assert whole.tool_runs("retried") == runs
    assert whole.execution_runs("retried") == history.execution_runs("retried")


async def test_execution_runs_of_one_version(engine: Engine, tmp_path: Path) -> None:
    first = await engine.register(RETRIED)
    await engine.run(first.path, workload={"counter": str(tmp_path / "a")})
    second = await engine.register(RETRIED.replace("delay: 0.05", "delay: 0.01"))
    assert second.version == 2
    await engine.run(second.path, workload={"counter": str(tmp_path / "b")})
    await engine.run(second.path, workload={"counter": str(tmp_path / "c")})
    runs = await execution_runs(engine.events, engine.catalog, "retried", 2)
    assert len(runs) == 2 and all(run.playbook_version == 2 and run.ok for run in runs)
    assert len(await execution_runs(engine.events, engine.catalog, "retried")) == 3


CHAINED = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: chained}
workload: {base: 1}
workflow:
  - step: first
    tool:
      kind: python
      input: {base: "{{ workload.base }}"}
      code: |
        def main(base):
            return {"items": [int(base), int(base) + 1]}
    next: [{step: second}]
  - step: second
    loop: {in: "{{ first.items }}", iterator: item, spec: {mode: parallel}}
    tool:
      kind: python
      input: {item: "{{ item }}"}
      code: |
        def main(item):
            return item * 2
"""


async def test_runs_with_the_same_input_share_an_input_key(engine: Engine) -> None:
    entry = await engine.register(CHAINED)
    for workload in ({"base": 1}, {"base": 1}, {"base": 5}):
        assert (await engine.run(entry.path, workload=workload)).status == "completed"
    history = PolicyHistory(engine.events, engine.catalog)
    await history.refresh()
    runs = history.tool_runs("chained")
    by_execution: dict[str, dict[tuple[str, int | None], str | None]] = {}
    for run in runs:
        by_execution.setdefault(run.execution_id, {})[(run.step, run.iteration)] = run.input_key
    same_a, same_b, other = (
        by_execution[e]
        for e in sorted(
            by_execution, key=lambda e: min(r.started_at for r in runs if r.execution_id == e)
        )
    )
    assert all(key is not None for key in same_a.values())
    assert same_a == same_b  # the same workload: the same inputs, step by step
    assert same_a[("first", None)] != other[("first", None)]
    # Each loop iteration has its own input, and the upstream output is part of it.
    assert same_a[("second", 0)] != same_a[("second", 1)]
    assert same_a[("second", 0)] != other[("second", 0)]
