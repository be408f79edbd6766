"""DuckdbTool: several statements per run, parameters, JSON-friendly rows, SQL errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.ports import ToolContext
from engine.tools.duckdb import DuckdbTool

# The statement list of the conformance fixture duckdb_test.yaml, as upstream writes it.
USERS = """CREATE TABLE users (id INTEGER, name VARCHAR, age INTEGER);
INSERT INTO users VALUES (1, 'Alice', 30), (2, 'Bob', 25), (3, 'Charlie', 35);
SELECT name, age FROM users WHERE age >= 30 ORDER BY age;
"""


def _ctx(*, base_dir: str | None = None, timeout: float | None = None) -> ToolContext:
    return ToolContext(
        execution_id="e1", step="query", step_run_id="r1", base_dir=base_dir, timeout=timeout
    )


async def test_multi_statement_returns_rows_of_the_last_select() -> None:
    outcome = await DuckdbTool().run({"database": ":memory:", "query": USERS}, {}, _ctx())
    assert outcome.status == "ok"
    assert outcome.data == [{"name": "Alice", "age": 30}, {"name": "Charlie", "age": 35}]


async def test_command_field_and_trailing_statements_without_rows() -> None:
    sql = "SELECT 42 AS answer, 'success' AS status; CREATE TABLE t (a INTEGER); SET threads = 1"
    outcome = await DuckdbTool().run({"command": sql}, {}, _ctx())
    assert outcome.data == [{"answer": 42, "status": "success"}]


async def test_no_statement_returning_rows_gives_an_empty_list() -> None:
    sql = "CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1), (2)"
    assert (await DuckdbTool().run({"command": sql}, {}, _ctx())).data == []


async def test_returning_clause_counts_as_rows() -> None:
    sql = "CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1), (2) RETURNING a * 10 AS b"
    assert (await DuckdbTool().run({"command": sql}, {}, _ctx())).data == [{"b": 10}, {"b": 20}]


async def test_positional_and_named_params() -> None:
    positional = {
        "query": "CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (?), (?); "
        "SELECT sum(a) AS total FROM t",
        "params": [4, 5],
    }
    assert (await DuckdbTool().run(positional, {}, _ctx())).data == [{"total": 9}]
    named = {"query": "SELECT $city AS city, $n + 1 AS n", "params": {"city": "Austin", "n": 1}}
    assert (await DuckdbTool().run(named, {}, _ctx())).data == [{"city": "Austin", "n": 2}]


async def test_values_are_json_friendly() -> None:
    sql = (
        "SELECT DATE '2024-05-01' AS d, TIMESTAMP '2024-05-01 10:00:00' AS ts, "
        "TIMESTAMPTZ '2024-05-01 10:00:00+00' AS tz, 12.50::DECIMAL(6, 2) AS price, "
        "[1, 2] AS xs, {'k': 'v'} AS s, NULL AS nothing"
    )
    outcome = await DuckdbTool().run({"query": sql}, {}, _ctx())
    assert outcome.data == [
        {
            "d": "2024-05-01",
            "ts": "2024-05-01T10:00:00",
            "tz": "2024-05-01T10:00:00+00:00",
            "price": 12.5,
            "xs": [1, 2],
            "s": {"k": "v"},
            "nothing": None,
        }
    ]


async def test_syntax_error_is_a_sql_error() -> None:
    outcome = await DuckdbTool().run({"query": "SELECT 1; SELEC 2"}, {}, _ctx())
    assert outcome.status == "error"
    assert outcome.error is not None
    assert outcome.error.kind == "sql"
    assert outcome.error.code == "ParserException"
    assert "SELEC" in outcome.error.message
    assert outcome.error.retryable is False


async def test_missing_table_names_the_failing_statement() -> None:
    sql = "CREATE TABLE a (x INTEGER); SELECT * FROM patient_info"
    outcome = await DuckdbTool().run({"query": sql}, {}, _ctx())
    assert outcome.error is not None
    assert outcome.error.kind == "sql"
    assert outcome.error.code == "CatalogException"
    assert "statement 2 of 2" in outcome.error.message
    assert "patient_info" in outcome.error.message


async def test_file_database_resolves_under_base_dir(tmp_path: Path) -> None:
    ctx = _ctx(base_dir=str(tmp_path))
    create = {"database": "data/w.duckdb", "command": "CREATE TABLE t AS SELECT 7 AS v"}
    (tmp_path / "data").mkdir()
    assert (await DuckdbTool().run(create, {}, ctx)).status == "ok"
    assert (tmp_path / "data" / "w.duckdb").exists()
    read = {"database": "data/w.duckdb", "query": "SELECT v FROM t"}
    assert (await DuckdbTool().run(read, {}, ctx)).data == [{"v": 7}]


async def test_unopenable_database_is_a_connection_error(tmp_path: Path) -> None:
    config = {"database": str(tmp_path / "no" / "such" / "dir" / "x.duckdb"), "query": "SELECT 1"}
    outcome = await DuckdbTool().run(config, {}, _ctx())
    assert outcome.error is not None
    assert outcome.error.kind == "connection"
    assert outcome.error.retryable is False


async def test_timeout_interrupts_the_query() -> None:
    config = {"query": "SELECT count(*) FROM range(100000000000)", "timeout": 0.2}
    outcome = await DuckdbTool().run(config, {}, _ctx())
    assert outcome.error is not None
    assert outcome.error.kind == "timeout"
    assert outcome.error.retryable is True


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({}, "`query`"),
        ({"query": "SELECT 1", "command": "SELECT 2"}, "not both"),
        ({"query": "   "}, "`query`"),
        ({"query": "SELECT ?", "params": "x"}, "`params`"),
        ({"query": "SELECT 1", "database": 5}, "`database`"),
    ],
)
async def test_invalid_config_is_a_validation_error(config: dict[str, object], needle: str) -> None:
    outcome = await DuckdbTool().run(config, {}, _ctx())
    assert outcome.error is not None
    assert outcome.error.kind == "validation"
    assert needle in outcome.error.message
