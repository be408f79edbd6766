"""PostgresTool against the real server on 127.0.0.1:5432, in a schema made for this run."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from engine.adapters.credentials import MemoryCredentialProvider
from engine.ports import ToolContext
from engine.tools.postgres import PostgresTool

HOST, PORT, USER, DATABASE = "127.0.0.1", 5432, "postgres", "postgres"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(host=HOST, port=PORT, user=USER, database=DATABASE, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def schema() -> Iterator[str]:
    name = f"noetl_tools_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f"CREATE SCHEMA {name}"))
    except (OSError, TimeoutError, asyncpg.PostgresError) as e:
        reason = (
            f"POSTGRES IS NOT REACHABLE at {HOST}:{PORT} as {USER} ({e!r}); "
            "the postgres tool tests did not run. Start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    yield name
    asyncio.run(_admin(f"DROP SCHEMA {name} CASCADE"))


@pytest.fixture
def credentials(schema: str) -> MemoryCredentialProvider:
    fields = {"host": HOST, "port": PORT, "user": USER, "database": DATABASE, "schema": schema}
    upstream = {
        "db_host": HOST,
        "db_port": str(PORT),
        "db_user": USER,
        "db_password": "unused-with-trust-auth",
        "db_name": DATABASE,
        "schema": schema,
    }
    return MemoryCredentialProvider(
        {
            "pg_local": {"kind": "postgres", "data": fields},
            "pg_upstream": {"kind": "postgres", "data": upstream},
            "pg_missing_db": {"kind": "postgres", "data": {**fields, "database": "no_such_db_x"}},
        }
    )


@pytest.fixture
async def tool() -> AsyncIterator[PostgresTool]:
    executor = PostgresTool()
    yield executor
    await executor.aclose()


@pytest.fixture
def ctx(credentials: MemoryCredentialProvider) -> ToolContext:
    return ToolContext(execution_id="e1", step="sql", step_run_id="r1", credentials=credentials)


async def _run(tool: PostgresTool, ctx: ToolContext, **config: Any) -> Any:
    return await tool.run({"auth": "pg_local", **config}, {}, ctx)


async def test_command_reports_rowcount_and_status(tool: PostgresTool, ctx: ToolContext) -> None:
    table = f"orders_{uuid.uuid4().hex[:8]}"
    created = await _run(
        tool,
        ctx,
        command=f"CREATE TABLE {table} (id int, total numeric(8,2), placed date, meta jsonb);"
        f"INSERT INTO {table} VALUES (1, 9.50, '2024-05-01', '{{\"vip\": true}}'),"
        "(2, 20.00, '2024-05-02', NULL), (3, 1.25, '2024-05-03', '[]')",
    )
    assert created.status == "ok"
    assert created.data == {"rowcount": 3, "status": "INSERT 0 3"}
    updated = await _run(
        tool, ctx, command=f"UPDATE {table} SET total = total + $1 WHERE id >= $2", params=[1, 2]
    )
    assert updated.data == {"rowcount": 2, "status": "UPDATE 2"}


async def test_query_returns_json_friendly_rows_with_params(
    tool: PostgresTool, ctx: ToolContext
) -> None:
    table = f"items_{uuid.uuid4().hex[:8]}"
    await _run(
        tool,
        ctx,
        command=f"CREATE TABLE {table} (id int, price numeric(8,2), day date, meta jsonb);"
        f"INSERT INTO {table} VALUES (1, 9.50, '2024-05-01', '{{\"vip\": true}}'),"
        "(2, 20.00, '2024-05-02', NULL)",
    )
    outcome = await _run(
        tool,
        ctx,
        query=f"SELECT * FROM {table} WHERE id = $1 OR price > $2 ORDER BY id",
        params=[1, 100],
    )
    assert outcome.status == "ok"
    assert outcome.data == [{"id": 1, "price": 9.5, "day": "2024-05-01", "meta": {"vip": True}}]


async def test_auth_mapping_and_upstream_field_names(tool: PostgresTool, ctx: ToolContext) -> None:
    config = {"auth": {"type": "postgres", "credential": "pg_upstream"}, "query": "SELECT 1 AS one"}
    outcome = await tool.run(config, {}, ctx)
    assert outcome.data == [{"one": 1}]


async def test_one_pool_per_credential(tool: PostgresTool, ctx: ToolContext) -> None:
    for _ in range(3):
        assert (await _run(tool, ctx, query="SELECT 1 AS one")).status == "ok"
    assert repr(tool) == "PostgresTool(pools=1)"


async def test_sql_error_carries_the_sqlstate(tool: PostgresTool, ctx: ToolContext) -> None:
    # The statement of the conformance fixture broken_sql.yaml: a trailing comma.
    outcome = await _run(tool, ctx, command="SELECT\n  COUNT(*) as row_count,\nFROM patient_info;")
    assert outcome.status == "error"
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.code, outcome.error.retryable) == (
        "sql",
        "42601",
        False,
    )
    assert "syntax error" in outcome.error.message
    missing = await _run(tool, ctx, query="SELECT * FROM patient_info")
    assert missing.error is not None
    assert (missing.error.kind, missing.error.code) == ("sql", "42P01")
    assert "patient_info" in missing.error.message


async def test_wrong_param_count_is_a_validation_error(
    tool: PostgresTool, ctx: ToolContext
) -> None:
    outcome = await _run(tool, ctx, query="SELECT $1::int AS x")
    assert outcome.error is not None
    assert outcome.error.kind == "validation"
    assert "params" in outcome.error.message


async def test_unknown_credential_is_a_validation_error(
    tool: PostgresTool, ctx: ToolContext
) -> None:
    outcome = await tool.run({"auth": "pg_nope", "query": "SELECT 1"}, {}, ctx)
    assert outcome.error is not None
    assert outcome.error.kind == "validation"
    assert "credential 'pg_nope' is not defined" in outcome.error.message


async def test_unknown_database_is_not_retryable(tool: PostgresTool, ctx: ToolContext) -> None:
    outcome = await tool.run({"auth": "pg_missing_db", "query": "SELECT 1"}, {}, ctx)
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.code, outcome.error.retryable) == (
        "connection",
        "3D000",
        False,
    )


async def test_connection_refused_is_retryable(tool: PostgresTool) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    credentials = MemoryCredentialProvider(
        {"closed": {"host": "127.0.0.1", "port": port, "user": USER, "database": DATABASE}}
    )
    ctx = ToolContext(execution_id="e1", step="sql", step_run_id="r1", credentials=credentials)
    outcome = await tool.run({"auth": "closed", "query": "SELECT 1"}, {}, ctx)
    assert outcome.error is not None
    assert outcome.error.kind == "connection"
    assert outcome.error.retryable is True


async def test_timeout_cancels_the_statement(tool: PostgresTool, ctx: ToolContext) -> None:
    outcome = await _run(tool, ctx, query="SELECT pg_sleep(5)", timeout=0.3)
    assert outcome.error is not None
    assert outcome.error.kind == "timeout"
    assert outcome.error.retryable is True
    assert (await _run(tool, ctx, query="SELECT 2 AS two")).data == [{"two": 2}]


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"auth": "pg_local"}, "`query`"),
        ({"auth": "pg_local", "query": "SELECT 1", "command": "SELECT 1"}, "not both"),
        ({"auth": "pg_local", "query": "SELECT $1", "params": {"a": 1}}, "`params`"),
        ({"query": "SELECT 1"}, "`auth`"),
    ],
)
async def test_invalid_config_is_a_validation_error(
    tool: PostgresTool, ctx: ToolContext, config: dict[str, object], needle: str
) -> None:
    outcome = await tool.run(config, {}, ctx)
    assert outcome.error is not None
    assert outcome.error.kind == "validation"
    assert needle in outcome.error.message
