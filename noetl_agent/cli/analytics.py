"""CLI commands over the analytics store: ``export``, ``stats`` and ``analytics query``.

They read the local event log (``$NOETL_HOME/noetl.db``), or the PostgreSQL one with
``--database``, export what is new to the analytics store (chDB under
``$NOETL_HOME/analytics``, or the server of ``NOETL_CLICKHOUSE_URL``) and answer from it;
with ``--server`` (or ``NOETL_SERVER_URL``) they ask that API server instead, and print
the same.
chDB, clickhouse-connect and pyarrow load only when one of these commands runs, so they
never slow down ``noetl-agent run``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from noetl_agent.cli.app import (
    EXIT_FAILED,
    EXIT_INVALID,
    SCHEMA_OPTION,
    SERVER_OPTION,
    TOKEN_OPTION,
    _call_remote,
    _endpoint,
    _fail,
    _principal,
    _print_json,
    _run,
    _table,
    app,
    out,
)

if TYPE_CHECKING:
    from engine.ports import EventStore
    from learning.analytics.service import Analytics
    from noetl_agent.client import AsyncClient

T = TypeVar("T")
analytics_app = typer.Typer(
    help="Read-only SQL over the analytics store (ClickHouse SQL, table `events`).",
    no_args_is_help=True,
)
app.add_typer(analytics_app, name="analytics")
DATABASE_OPTION: Any = typer.Option(
    None,
    "--database",
    envvar="NOETL_DATABASE_URL",
    help="Read events from this PostgreSQL URL (distributed mode) instead of NOETL_HOME.",
    show_default=False,
)


@asynccontextmanager
async def _events(database: str | None, schema: str, home: Path) -> AsyncIterator[EventStore]:
    """The PostgreSQL event log of ``database``, else the SQLite one under ``home``."""
    if database:
        from engine.adapters.postgres import PostgresDatabase

        pg = await PostgresDatabase.open(database, schema=schema, max_size=2)
        try:
            yield pg.events
        finally:
            await pg.close()
        return
    from engine.adapters.sqlite.stores import SqliteDatabase

    home.mkdir(parents=True, exist_ok=True)
    db = SqliteDatabase.open(home / "noetl.db")
    try:
        yield db.events
    finally:
        db.close()


def _with_analytics(
    database: str | None, schema: str, work: Callable[[Analytics], Awaitable[T]]
) -> T:
    """Run ``work`` on the analytics service over the chosen event log, closing both after."""
    from noetl_agent.analytics import open_analytics
    from noetl_agent.config import noetl_home

    async def go() -> T:
        home = noetl_home()
        async with _events(database, schema, home) as events:
            analytics = await open_analytics(events, home)
            try:
                return await work(analytics)
            finally:
                analytics.close()

    return _run(go, "interrupted; exporting again later continues where it stopped")


def _remote(
    server: str | None, token: str | None, work: Callable[[AsyncClient], Awaitable[T]]
) -> T | None:
    """``work`` against the API server when there is one (None otherwise); a request the
    server finds invalid (400, 422) exits 2 like a local one."""
    endpoint = _endpoint(server, token)
    if endpoint is None:
        return None
    from noetl_agent.errors import ApiError

    async def checked(api: AsyncClient) -> T:
        try:
            return await work(api)
        except ApiError as exc:
            if exc.status in (400, 422):
                raise _fail(str(exc), EXIT_INVALID) from None
            raise

    return _call_remote(endpoint, checked)


@app.command()
def export(
    parquet: Path | None = typer.Option(
        None,
        "--parquet",
        help="Also write every exported row to DIR/events.parquet.",
        file_okay=False,
        metavar="DIR",
    ),
    full: bool = typer.Option(
        False, "--full", help="Rescan the whole event log (still writes no row twice)."
    ),
    database: str | None = DATABASE_OPTION,
    schema: str = SCHEMA_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Export new events to the analytics store (redacted; resumable; no row twice)."""

    endpoint = _endpoint(server, token)

    async def remote(api: AsyncClient) -> dict[str, Any]:
        where = endpoint[0] if endpoint else "the server"
        return {**await api.export_analytics(full=full), "store": f"the server at {where}"}

    async def work(analytics: Analytics) -> dict[str, Any]:
        report = await analytics.export(full=full)
        result: dict[str, Any] = {**report.to_dict(), "store": analytics.store.where}
        if parquet is not None:
            path, rows = await analytics.write_parquet(parquet)
            result.update(parquet=str(path), rows=rows)
        return result

    if parquet is not None and endpoint is not None:
        raise _fail(
            "--parquet writes files on this machine and cannot go through --server",
            EXIT_INVALID,
            "run `noetl-agent export --parquet DIR` where the event log is",
        )
    result = _remote(server, token, remote)
    if result is None:
        _principal().require("operator", "export analytics")
        result = _with_analytics(database, schema, work)
    if as_json:
        _print_json(result)
        return
    out.print(
        f"exported {result['exported']} new event(s) of {result['read']} read "
        f"to analytics at {result['store']}",
        soft_wrap=True,
    )
    if parquet is not None:
        out.print(f"wrote {result['rows']} row(s) to {result['parquet']}", soft_wrap=True)


@app.command()
def stats(
    playbook: str = typer.Argument(..., help="Catalog path of the playbook."),
    step: str | None = typer.Argument(None, help="Step name; every step when omitted."),
    database: str | None = DATABASE_OPTION,
    schema: str = SCHEMA_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Step statistics: runs, failures by error class, attempts, success after k attempts,
    durations and resource use per worker pool."""

    async def remote(api: AsyncClient) -> list[dict[str, Any]]:
        answer = await api.step_statistics(playbook, step)
        return list(answer.get("steps") or [])

    async def work(analytics: Analytics) -> list[dict[str, Any]]:
        if step is None:
            return [s.to_dict() for s in await analytics.playbook_statistics(playbook)]
        return [(await analytics.step_statistics(playbook, step)).to_dict()]

    steps = _remote(server, token, remote)
    if steps is None:
        _principal().require("viewer", "read analytics")
        steps = _with_analytics(database, schema, work)
    found = [s for s in steps if s.get("runs") or s.get("tool_runs")]
    if as_json:
        _print_json({"playbook": playbook, "steps": found})
        return
    if not found:
        what = f"step `{step}` of playbook `{playbook}`" if step else f"playbook `{playbook}`"
        raise _fail(
            f"no finished runs of {what} in the event log",
            EXIT_FAILED,
            "check the names with `noetl-agent executions list` and `executions show ID`",
        )
    for entry in found:
        _print_statistics(entry)


def _print_statistics(s: dict[str, Any]) -> None:
    out.print(
        f"[bold]{s['playbook']}[/] step [bold]{s['step']}[/]: {s['runs']} run(s), "
        f"{s['succeeded']} succeeded, {s['failed']} failed (failure rate "
        f"{s['failure_rate']:.1%}); {s['tool_runs']} tool run(s), {s['attempts_total']} "
        "attempt(s)",
        soft_wrap=True,
    )
    if s.get("errors"):
        table = _table("error class", "failed runs", "of runs", "failed attempts", "of attempts")
        for e in s["errors"]:
            table.add_row(
                e["error_class"],
                str(e["failed_runs"]),
                f"{e['run_rate']:.1%}",
                str(e["failed_attempts"]),
                f"{e['attempt_rate']:.1%}",
            )
        out.print(table)
    if s.get("attempts"):
        table = _table("attempts", "tool runs", "succeeded", "P(success within k)")
        for a in s["attempts"]:
            table.add_row(
                str(a["attempts"]),
                str(a["tool_runs"]),
                str(a["succeeded"]),
                f"{a['success_within']:.1%}",
            )
        out.print(table)
    if s.get("pools"):
        table = _table(
            "pool", "tool runs", "p50 ms", "p95 ms", "p99 ms", "cpu p50 ms", "peak RSS max KiB"
        )
        for p in s["pools"]:
            table.add_row(
                p["pool"],
                str(p["tool_runs"]),
                _number(p.get("p50_ms")),
                _number(p.get("p95_ms")),
                _number(p.get("p99_ms")),
                _number(p.get("cpu_p50_ms")),
                _number(p.get("peak_rss_max_kb")),
            )
        out.print(table)


@analytics_app.command("query")
def query(
    sql: str = typer.Argument(..., help="One SELECT / WITH / DESCRIBE TABLE / SHOW TABLES."),
    max_rows: int = typer.Option(1000, "--max-rows", min=1, max=100_000),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, max=120.0, help="Seconds."),
    database: str | None = DATABASE_OPTION,
    schema: str = SCHEMA_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run read-only ClickHouse SQL over the analytics tables (exports new events first)."""
    from learning.analytics.errors import QueryFailed, QueryLimitExceeded, QueryRejected

    async def remote(api: AsyncClient) -> dict[str, Any]:
        return await api.analytics_query(sql, max_rows=max_rows, timeout=timeout)

    async def work(analytics: Analytics) -> dict[str, Any]:
        try:
            answer = await analytics.query(sql, max_rows=max_rows, timeout=timeout)
            return answer.to_dict()
        except QueryLimitExceeded as exc:
            raise _fail(
                str(exc),
                EXIT_FAILED,
                "add a LIMIT or aggregate, or raise --max-rows / --timeout",
            ) from None
        except QueryRejected as exc:
            raise _fail(str(exc), EXIT_INVALID) from None
        except QueryFailed as exc:
            raise _fail(
                str(exc),
                EXIT_INVALID,
                "see the columns with `noetl-agent analytics query 'DESCRIBE TABLE events'`",
            ) from None

    result = _remote(server, token, remote)
    if result is None:
        _principal().require("viewer", "read analytics")
        result = _with_analytics(database, schema, work)
    if as_json:
        _print_json(result)
        return
    table = _table(*result["columns"])
    for row in result["rows"]:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)
    out.print(f"[dim]{result['row_count']} row(s)[/]")


def _number(value: float | int | None) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)
