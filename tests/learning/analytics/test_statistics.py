"""step_statistics over a golden history, and over what a real engine run recorded."""

from __future__ import annotations

from pathlib import Path

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.core import events as ev
from engine.core.events import Event
from engine.runtime.embedded import Engine
from learning.analytics.service import Analytics
from learning.analytics.store import ClickHouseStore
from tests.learning.analytics.history import KEY_ERROR, OK, TIMEOUT, History, http


async def _corpus(events_db: SqliteDatabase) -> None:
    """Eight runs of `shop/orders` step `fetch` (and one of another step and playbook)."""
    runs: list[tuple[list[dict[str, object]], str, float]] = [
        ([http(503), http(503), OK], "cpu", 300.0),  # recovers on the 3rd attempt
        ([OK], "cpu", 100.0),
        ([OK], "cpu", 110.0),
        ([http(503), OK], "cpu", 200.0),
        ([TIMEOUT, TIMEOUT, TIMEOUT], "gpu", 3000.0),  # never recovers
        ([KEY_ERROR], "gpu", 50.0),  # permanent: fails at once
        ([OK], "gpu", 40.0),
        ([OK], "gpu", 60.0),
    ]
    for index, (outcomes, pool, wall_ms) in enumerate(runs):
        history = History(f"exec-{index}")
        cpu = wall_ms / 2 if pool == "gpu" else None
        peak = 1000 * (index + 1) if pool == "gpu" else None
        history.step("fetch", outcomes, pool=pool, wall_ms=wall_ms, cpu_ms=cpu, peak_rss_kb=peak)
        await events_db.events.append(history.events)
    other = History("exec-other", playbook="shop/returns")
    other.step("fetch", [KEY_ERROR])
    other.step("notify", [OK])
    await events_db.events.append(other.events)


async def test_step_statistics_of_a_golden_history(
    events_db: SqliteDatabase, analytics: Analytics
) -> None:
    await _corpus(events_db)
    stats = await analytics.step_statistics("shop/orders", "fetch")

    assert (stats.runs, stats.succeeded, stats.failed) == (8, 6, 2)
    assert stats.failure_rate == 0.25
    assert (stats.tool_runs, stats.attempts_total) == (8, 13)
    errors = {e.error_class: e for e in stats.errors}
    assert set(errors) == {"http_503", "timeout", "KeyError"}
    assert (errors["http_503"].failed_runs, errors["http_503"].failed_attempts) == (0, 3)
    assert (errors["timeout"].failed_runs, errors["timeout"].failed_attempts) == (1, 3)
    assert (errors["KeyError"].failed_runs, errors["KeyError"].failed_attempts) == (1, 1)
    assert errors["timeout"].run_rate == 0.125
    assert errors["http_503"].attempt_rate == round(3 / 13, 6)

    attempts = {a.attempts: a for a in stats.attempts}
    assert {k: (a.tool_runs, a.succeeded) for k, a in attempts.items()} == {
        1: (5, 4),
        2: (1, 1),
        3: (2, 1),
    }
    assert [a.success_within for a in stats.attempts] == [0.5, 0.625, 0.75]

    pools = {p.pool: p for p in stats.pools}
    assert pools["cpu"].tool_runs == 4 and pools["gpu"].tool_runs == 4
    cpu, gpu = pools["cpu"], pools["gpu"]
    assert cpu.p50_ms in (110.0, 200.0) and cpu.p99_ms == 300.0
    assert gpu.p99_ms == 3000.0 and gpu.p50_ms is not None and gpu.p50_ms <= 60.0
    assert cpu.usage_reported == 0 and cpu.cpu_p50_ms is None and cpu.peak_rss_max_kb is None
    assert gpu.usage_reported == 4 and gpu.peak_rss_max_kb == 8000
    assert gpu.cpu_p95_ms == 1500.0


async def test_statistics_of_every_step_and_of_an_unknown_one(
    events_db: SqliteDatabase, analytics: Analytics
) -> None:
    await _corpus(events_db)
    steps = await analytics.playbook_statistics("shop/returns")
    assert [(s.step, s.runs, s.failed) for s in steps] == [("fetch", 1, 1), ("notify", 1, 0)]
    unknown = await analytics.step_statistics("shop/orders", "nosuch")
    assert (unknown.runs, unknown.tool_runs, unknown.errors, unknown.pools) == (0, 0, [], [])
    assert unknown.failure_rate == 0.0


FLAKY = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: flaky, path: tests/analytics/flaky}
workload: {marker: ""}
workflow:
  - step: count
    desc: fails until it has run three times (the marker file counts the attempts)
    tool:
      kind: shell
      cmds: ["n=$(cat {{ marker }} 2>/dev/null || echo 0); echo $((n+1)) > {{ marker }};
              test $n -ge 2"]
      spec:
        policy:
          rules:
            - when: "{{ output.status == 'error' }}"
              then: {do: retry, attempts: 5, delay: 0}
    spec: {runtime: {pool: gpu}}
    next: {arcs: [{step: lookup}]}
  - step: lookup
    tool:
      kind: python
      code: |
        def main():
            return {}["region"]
"""


async def test_statistics_of_a_real_run(tmp_path: Path, store: ClickHouseStore) -> None:
    db = SqliteDatabase.open(tmp_path / "engine.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    try:
        entry = await engine.register(FLAKY)
        outcome = await engine.run(entry.path, workload={"marker": str(tmp_path / "marker")})
        assert outcome.status == "failed"
        analytics = Analytics(db.events, store)
        count = await analytics.step_statistics("tests/analytics/flaky", "count")
        lookup = await analytics.step_statistics("tests/analytics/flaky", "lookup")
    finally:
        await engine.aclose()
        db.close()

    assert (count.runs, count.succeeded, count.attempts_total) == (1, 1, 3)
    assert [(e.error_class, e.failed_attempts) for e in count.errors] == [("validation_1", 2)]
    assert [(a.attempts, a.success_within) for a in count.attempts] == [(3, 1.0)]
    (pool,) = count.pools
    assert pool.pool == "gpu" and pool.p50_ms is not None and pool.p50_ms > 0
    assert pool.usage_reported == 1 and pool.cpu_p50_ms is not None

    assert (lookup.runs, lookup.failed, lookup.failure_rate) == (1, 1, 1.0)
    assert [(e.error_class, e.failed_runs) for e in lookup.errors] == [("KeyError", 1)]
    (pool,) = lookup.pools
    assert pool.pool == "cpu"  # the default pool
    assert pool.peak_rss_max_kb is not None and pool.peak_rss_max_kb > 0  # python reports it


LOOPING = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: looping, path: tests/analytics/looping}
workload: {items: [1, 2, 3]}
workflow:
  - step: each
    desc: item 1 fails and is let through, item 2 fails twice and fails the loop
    loop: {in: "{{ items }}", iterator: x}
    tool:
      kind: python
      code: |
        def main(x):
            if x < 3:
                return {}["region"]
            return x
      spec:
        policy:
          rules:
            - when: "{{ output.status == 'error' and x == 1 }}"
              then: {do: continue}
            - when: "{{ output.status == 'error' }}"
              then: {do: retry, attempts: 2, delay: 0}
    input: {x: "{{ x }}"}
"""


async def test_a_failed_loop_iteration_is_counted_once(
    tmp_path: Path, store: ClickHouseStore
) -> None:
    db = SqliteDatabase.open(tmp_path / "engine.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    try:
        entry = await engine.register(LOOPING)
        iterations: list[Event] = []
        for _ in range(2):
            outcome = await engine.run(entry.path)
            assert outcome.status == "failed"
            iterations += [
                event
                for event in await engine.events.read(outcome.execution_id)
                if event.event_type == ev.LOOP_ITERATION_FINISHED
            ]
        analytics = Analytics(db.events, store)
        stats = await analytics.step_statistics(entry.path, "each")
        by_type = (
            await analytics.query(
                "SELECT event_type, count() AS n FROM events WHERE error_class = 'KeyError' "
                "GROUP BY event_type ORDER BY event_type"
            )
        ).records()
        described = (await analytics.query("DESCRIBE TABLE events")).records()
    finally:
        await engine.aclose()
        db.close()

    # Per execution: iteration 0 fails once, iteration 1 fails twice; both are reported by
    # a tool.processed and by a loop.iteration.finished carrying the same error.
    failed = [event for event in iterations if event.status == "error"]
    assert [(e.iteration, e.attempt) for e in failed] == [(0, 1), (1, 2)] * 2
    assert {row["event_type"]: row["n"] for row in by_type} == {
        "loop.iteration.finished": 4,
        "playbook.processed": 2,
        "retry.processed": 2,
        "retry.started": 2,
        "step.finished": 2,
        "tool.processed": 4,
    }
    assert (stats.runs, stats.failed, stats.tool_runs) == (2, 2, 4)
    [errors] = stats.errors
    assert errors.error_class == "KeyError"
    assert errors.failed_runs == 2
    assert errors.failed_attempts == sum(e.attempt or 0 for e in failed) == 6
    assert stats.attempts_total == 6 and errors.attempt_rate == 1.0
    assert [(a.attempts, a.tool_runs, a.succeeded) for a in stats.attempts] == [
        (1, 2, 0),
        (2, 2, 0),
    ]
    comments = {row["name"]: row["comment"] for row in described}
    assert "loop.iteration.finished" in comments["error_class"]
    assert "loop.iteration.finished" in comments["attempt"]
