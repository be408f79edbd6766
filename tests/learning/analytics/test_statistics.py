"""step_statistics over a golden history, and over what a real engine run recorded."""

from __future__ import annotations

from pathlib import Path

from engine.adapters.sqlite.stores import SqliteDatabase
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
