"""analytics_query: read-only, one statement, the analytics tables only, within limits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.adapters.sqlite.stores import SqliteDatabase
from learning.analytics.errors import QueryFailed, QueryLimitExceeded, QueryRejected
from learning.analytics.service import Analytics
from tests.learning.analytics.history import OK, History, http

REJECTED = [
    ("", "empty"),
    ("  ;  -- nothing", "empty"),
    ("SELECT 1; DROP TABLE events", "only one statement"),
    ("SELECT 1; SELECT 2;", "only one statement"),
    ("SELECT 1 # ; SELECT line FROM file('/etc/hostname', 'LineAsString')", "only one"),
    ("SELECT 1 /* /* */ ; SELECT file('/etc/hostname') */", "only one statement"),
    ("DROP TABLE events", "`DROP TABLE` is not allowed"),
    ("INSERT INTO events (seq) VALUES (1)", "`INSERT INTO` is not allowed"),
    ("ALTER TABLE events DELETE WHERE 1", "`ALTER TABLE` is not allowed"),
    ("SET readonly = 0", "`SET READONLY` is not allowed"),
    ("SHOW DATABASES", "`SHOW DATABASES` is not allowed"),
    ("/* hidden */ TRUNCATE TABLE events", "`TRUNCATE TABLE` is not allowed"),
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table function `file`"),
    ("SELECT * FROM url('http://127.0.0.1:9/x', CSV)", "table function `url`"),
    ("SELECT * FROM s3('http://127.0.0.1:9/b/k.csv')", "table function `s3`"),
    ("SELECT * FROM remote('127.0.0.1:9', system.one)", "table function `remote`"),
    ("SELECT 1 UNION ALL SELECT * FROM mysql('h:1', 'd', 't', 'u', 'p')", "`mysql`"),
    ("SELECT * FROM (SELECT * FROM url('http://x', CSV))", "table function `url`"),
    ("DESCRIBE TABLE file('/etc/passwd')", "table function `file`"),
    ("SELECT file('/etc/passwd')", "function `file` is not allowed"),
    ("SELECT * FROM system.tables", "table `system.tables` is not allowed"),
    ("SELECT 1 WHERE 'default' IN system.users", "`system.users` is not allowed"),
    ("SELECT count() FROM other.events", "table `other.events` is not allowed"),
    ("SELECT 1 SETTINGS max_result_rows = 1000000", "SETTINGS is not allowed"),
    ("SELECT 1 FORMAT CSV", "FORMAT and INTO OUTFILE are not allowed"),
]


@pytest.mark.parametrize(("sql", "message"), REJECTED, ids=[r[0][:40] for r in REJECTED])
async def test_what_is_not_allowed_is_refused_saying_what_is(
    analytics: Analytics, sql: str, message: str
) -> None:
    with pytest.raises(QueryRejected, match="(?i)" + re.escape(message)) as refused:
        await analytics.query(sql)
    assert "allowed" in str(refused.value)


async def test_into_outfile_writes_nothing(analytics: Analytics, tmp_path: Path) -> None:
    target = tmp_path / "leak.csv"
    with pytest.raises(QueryRejected, match="INTO OUTFILE"):
        await analytics.query(f"SELECT 1 INTO OUTFILE '{target}'")
    assert not target.exists()


async def test_reading_statements_answer(events_db: SqliteDatabase, analytics: Analytics) -> None:
    history = History("exec-1")
    history.step("fetch", [http(503), OK])
    await events_db.events.append(history.events)

    result = await analytics.query(
        """
        -- failed attempts by class; a ';' in a string or comment is not a second statement
        WITH failed AS (
            SELECT error_class FROM noetl.events WHERE event_type = 'retry.started'
        )
        SELECT error_class, count() AS n, 'a;b' AS s FROM failed GROUP BY error_class;
        """
    )
    assert result.columns == ["error_class", "n", "s"]
    assert result.rows == [["http_503", 1, "a;b"]]
    described = await analytics.query("DESCRIBE TABLE events")
    names = [row[0] for row in described.rows]
    assert {"execution_id", "error_class", "pool", "wall_ms"} <= set(names)
    assert (await analytics.query("SHOW TABLES")).rows == [["events"]]
    numbers = await analytics.query("SELECT sum(number) AS s FROM numbers(10)")
    assert numbers.records() == [{"s": 45}]
    twice = await analytics.query("SELECT 1, 1")
    assert twice.rows == [[1, 1]] and len(twice.columns) == 2
    timestamps = await analytics.query("SELECT min(timestamp) AS t FROM events")
    assert timestamps.rows[0][0].startswith("2026-11-30T10:00:")


async def test_row_and_time_limits(analytics: Analytics) -> None:
    with pytest.raises(QueryLimitExceeded, match="max rows: 10"):
        await analytics.query("SELECT number FROM numbers(100)", max_rows=10)
    assert (await analytics.query("SELECT number FROM numbers(10)", max_rows=10)).row_count == 10
    with pytest.raises(QueryLimitExceeded, match=r"(?i)timeout"):
        await analytics.query("SELECT sleepEachRow(0.3) FROM numbers(10)", timeout=0.5)
    with pytest.raises(QueryRejected, match="max_rows"):
        await analytics.query("SELECT 1", max_rows=0)


async def test_sql_that_clickhouse_refuses_says_why(analytics: Analytics) -> None:
    with pytest.raises(QueryFailed, match="nosuch"):
        await analytics.query("SELECT nosuch FROM events")
    with pytest.raises(QueryFailed, match=r"(?i)syntax"):
        await analytics.query("SELECT FROM WHERE")
