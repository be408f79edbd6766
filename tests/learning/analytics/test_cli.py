"""`noetl-agent export`, `stats` and `analytics query`, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from learning.analytics.schema import COLUMN_NAMES
from tests.processes import serve, stop

NOETL_AGENT = Path(sys.executable).parent / "noetl-agent"

PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: twice, path: tests/analytics/twice}
workflow:
  - step: greet
    tool: {kind: shell, cmds: ["echo hello"]}
    spec: {runtime: {pool: io}}
"""


def _cli(home: Path, *args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NOETL_HOME": str(home), "COLUMNS": "200"}
    env.pop("NOETL_CLICKHOUSE_URL", None)
    return subprocess.run(
        [str(NOETL_AGENT), *map(str, args)], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow  # eleven `noetl-agent` processes, each loading chDB
def test_export_stats_and_query_from_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    playbook = tmp_path / "twice.yaml"
    playbook.write_text(PLAYBOOK)
    for _ in range(2):
        ran = _cli(home, "run", playbook, "--json")
        assert ran.returncode == 0, ran.stderr

    exported = _cli(home, "export", "--parquet", tmp_path / "out")
    assert exported.returncode == 0, exported.stderr
    assert "exported" in exported.stdout and "events.parquet" in exported.stdout
    table = pq.read_table(tmp_path / "out" / "events.parquet")
    assert table.column_names == list(COLUMN_NAMES)
    assert set(table.column("execution_id").to_pylist()) and table.num_rows > 10
    again = _cli(home, "export", "--json")
    assert json.loads(again.stdout)["exported"] == 0  # nothing new, nothing twice

    stats = _cli(home, "stats", "tests/analytics/twice", "greet", "--json")
    assert stats.returncode == 0, stats.stderr
    (greet,) = json.loads(stats.stdout)["steps"]
    assert (greet["runs"], greet["succeeded"], greet["failure_rate"]) == (2, 2, 0.0)
    assert [p["pool"] for p in greet["pools"]] == ["io"]
    shown = _cli(home, "stats", "tests/analytics/twice")
    assert shown.returncode == 0, shown.stderr
    assert "step greet: 2 run(s), 2 succeeded, 0 failed" in shown.stdout
    assert "P(success within k)" in shown.stdout and "p95 ms" in shown.stdout
    missing = _cli(home, "stats", "tests/analytics/twice", "nosuch")
    assert missing.returncode == 1
    assert "no finished runs of step `nosuch`" in missing.stderr and "hint:" in missing.stderr

    query = _cli(
        home,
        "analytics",
        "query",
        "SELECT step, count() AS runs FROM events WHERE event_type = 'step.finished' GROUP BY step",
        "--json",
    )
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)["rows"] == [["greet", 2]]
    table_view = _cli(home, "analytics", "query", "SHOW TABLES")
    assert "events" in table_view.stdout and "1 row(s)" in table_view.stdout
    refused = _cli(home, "analytics", "query", "DROP TABLE events")
    assert refused.returncode == 2
    assert (
        "`DROP TABLE` is not allowed" in refused.stderr and "allowed: one SELECT" in refused.stderr
    )
    too_many = _cli(home, "analytics", "query", "SELECT * FROM numbers(20)", "--max-rows", "5")
    assert too_many.returncode == 1 and "--max-rows" in too_many.stderr


@pytest.mark.slow  # a server and several `noetl-agent` processes, each loading chDB
def test_export_stats_and_query_through_a_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    playbook = tmp_path / "twice.yaml"
    playbook.write_text(PLAYBOOK)
    for _ in range(2):
        assert _cli(home, "run", playbook, "--json").returncode == 0
    tokens = {}
    for name, role in (("ann", "viewer"), ("ops", "operator")):
        created = _cli(home, "tokens", "create", "--name", name, "--kind", "human", "--role", role)
        assert created.returncode == 0, created.stderr
        tokens[name] = created.stdout.strip().splitlines()[-1]
    env = {**os.environ, "NOETL_HOME": str(home), "COLUMNS": "200"}
    env.pop("NOETL_CLICKHOUSE_URL", None)
    process, url = serve(env, tmp_path / "server.log")
    try:

        def remote(who: str, *args: object) -> subprocess.CompletedProcess[str]:
            return _cli(home, "--server", url, "--token", tokens[who], *args)

        refused = remote("ann", "export")
        assert refused.returncode == 1 and "operator" in refused.stderr
        exported = remote("ops", "export", "--json")
        assert exported.returncode == 0, exported.stderr
        assert json.loads(exported.stdout)["store"] == f"the server at {url}"
        parquet = remote("ops", "export", "--parquet", tmp_path / "out")
        assert parquet.returncode == 2 and "cannot go through --server" in parquet.stderr

        shown = remote("ann", "stats", "tests/analytics/twice")
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == _cli(home, "stats", "tests/analytics/twice").stdout
        as_json = remote("ann", "stats", "tests/analytics/twice", "greet", "--json")
        (greet,) = json.loads(as_json.stdout)["steps"]
        assert (greet["runs"], greet["succeeded"]) == (2, 2)

        sql = (
            "SELECT step, count() AS runs FROM events"
            " WHERE event_type = 'step.finished' GROUP BY step"
        )
        query = remote("ann", "analytics", "query", sql, "--json")
        assert query.returncode == 0, query.stderr
        assert json.loads(query.stdout)["rows"] == [["greet", 2]]
        bad = remote("ann", "analytics", "query", "DROP TABLE events")
        assert bad.returncode == 2 and "`DROP TABLE` is not allowed" in bad.stderr
    finally:
        stop(process)


def test_run_never_loads_the_analytics_libraries() -> None:
    code = (
        "import sys, noetl_agent.cli.app\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pyarrow', 'chdb', 'clickhouse_connect'))\n"
        "print(heavy)\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert loaded.stdout.strip() == "[]"
