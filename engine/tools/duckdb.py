"""The ``duckdb`` tool: run SQL in an embedded DuckDB database.

```yaml
tool:
  kind: duckdb
  database: data/warehouse.duckdb   # default ':memory:'; relative to the playbook's directory
  query: |                          # or `command`; several statements separated by `;`
    CREATE TABLE users AS SELECT * FROM read_csv('users.csv');
    SELECT name, age FROM users WHERE age >= $min_age ORDER BY age;
  params: {min_age: 30}             # a list for `?`/`$1`, a mapping for `$name`
```

Every statement runs, in order, on one connection opened for the run. The result is
the rows of the last statement that returns rows (``SELECT``, ``PRAGMA``, ``... RETURNING``),
as a list of dicts with JSON-friendly values (dates as ISO strings, decimals as floats);
``[]`` when none does. ``params`` bind to every statement that has placeholders.

DuckDB is synchronous, so each run works in a thread and the event loop stays free; a
timeout interrupts the running statement. A DuckDB error is a ``sql`` error whose
``code`` is the DuckDB exception class (``ParserException``, ``CatalogException``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from engine.ports import ToolContext
from engine.tools.config import ConfigInvalid, effective_timeout, jsonable
from engine.tools.outcome import ToolOutcome

MEMORY = ":memory:"
# Statement types whose result is rows; the others report a status column unless they
# have a ``RETURNING`` clause.
_ROW_STATEMENTS = frozenset({"SELECT", "PRAGMA", "EXPLAIN", "CALL", "EXECUTE", "RELATION"})
_STATUS_COLUMNS = (["Count"], ["Success"])
_ZONED = "WITH TIME ZONE"
_HAVE_PYTZ = importlib.util.find_spec("pytz") is not None


def _sql(config: Mapping[str, Any]) -> str:
    given = [f for f in ("query", "command", "sql") if config.get(f) is not None]
    if not given:
        raise ConfigInvalid("missing `query`: give the SQL to run (or use `command`)")
    if len(given) > 1:
        raise ConfigInvalid(f"give one of {' or '.join(f'`{f}`' for f in given)}, not both")
    sql = config[given[0]]
    if not isinstance(sql, str) or not sql.strip():
        raise ConfigInvalid(f"`{given[0]}` must be a non-empty SQL string, got {sql!r}")
    return sql


def _database(config: Mapping[str, Any], ctx: ToolContext) -> str:
    database = config.get("database")
    if database is None or database == "" or database == MEMORY:
        return MEMORY
    if not isinstance(database, str):
        raise ConfigInvalid(f"`database` must be a file path or ':memory:', got {database!r}")
    if database.startswith(("md:", "motherduck:")):
        return database
    path = os.path.expanduser(database)
    if not os.path.isabs(path) and ctx.base_dir:
        path = os.path.join(ctx.base_dir, path)
    return path


def _params(config: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any] | None:
    params = config.get("params")
    if params is None:
        return None
    if isinstance(params, Mapping):
        return dict(params)
    if isinstance(params, list | tuple):
        return list(params)
    raise ConfigInvalid(
        f"`params` must be a list (for `?` or `$1`) or a mapping (for `$name`), got {params!r}"
    )


class _SqlFailure(Exception):
    """A statement failed; carries which one, for the message."""

    def __init__(self, error: duckdb.Error, index: int, total: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.index = index
        self.total = total


class _ConnectFailure(Exception):
    def __init__(self, error: duckdb.Error) -> None:
        super().__init__(str(error))
        self.error = error


class _Run:
    """One run's work, done in a worker thread; ``interrupt`` may be called from the loop."""

    def __init__(
        self,
        database: str,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None,
    ) -> None:
        self.database = database
        self.sql = sql
        self.params = params
        self.conn: duckdb.DuckDBPyConnection | None = None
        self.interrupted = False

    def interrupt(self) -> None:
        self.interrupted = True
        conn = self.conn
        if conn is not None:
            with contextlib.suppress(duckdb.Error):
                conn.interrupt()

    def __call__(self) -> list[dict[str, Any]]:
        try:
            conn = duckdb.connect(self.database)
        except duckdb.Error as e:
            raise _ConnectFailure(e) from e
        self.conn = conn
        try:
            return self._execute(conn)
        finally:
            self.conn = None
            conn.close()

    def _bind(self, statement: Any) -> Sequence[Any] | Mapping[str, Any] | None:
        if self.params is None or not statement.named_parameters:
            return None
        if isinstance(self.params, Mapping):
            names = statement.named_parameters
            return {k: v for k, v in self.params.items() if k in names}
        return self.params

    def _execute(self, conn: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
        try:
            statements = conn.extract_statements(self.sql)
        except duckdb.Error as e:
            raise _SqlFailure(e, 0, 0) from e
        rows: list[dict[str, Any]] = []
        total = len(statements)
        for index, statement in enumerate(statements):
            if self.interrupted:
                raise TimeoutError
            try:
                relation = conn.sql(statement.query, params=self._bind(statement))
                if relation is None:
                    continue
                columns = list(relation.columns)
                if statement.type.name not in _ROW_STATEMENTS and columns in _STATUS_COLUMNS:
                    relation.fetchall()
                    continue
                if not _HAVE_PYTZ and any(_ZONED in str(kind) for kind in relation.types):
                    # DuckDB's conversion of zoned timestamps needs pytz; Arrow's does not.
                    rows = [
                        {str(k): jsonable(v) for k, v in row.items()}
                        for row in relation.to_arrow_table().to_pylist()
                    ]
                    continue
                fetched = relation.fetchall()
            except duckdb.Error as e:
                raise _SqlFailure(e, index, total) from e
            rows = [
                {name: jsonable(value) for name, value in zip(columns, row, strict=True)}
                for row in fetched
            ]
        return rows


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve the result of a run nobody awaits any more, so it is not reported."""
    if not task.cancelled():
        task.exception()


class DuckdbTool:
    """Runs SQL in DuckDB; see the module docstring for fields and result."""

    kind = "duckdb"

    async def run(
        self, config: Mapping[str, Any], inputs: Mapping[str, Any], ctx: ToolContext
    ) -> ToolOutcome:
        """Run every statement; return the last rows, or a ``sql`` failure."""
        try:
            sql = _sql(config)
            database = _database(config, ctx)
            params = _params(config)
            timeout = effective_timeout(config, ctx)
        except ConfigInvalid as e:
            return ToolOutcome.fail("validation", f"duckdb tool: {e}")
        work = _Run(database, sql, params)
        task = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            rows = await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            work.interrupt()
            with contextlib.suppress(Exception):
                await task
            return ToolOutcome.fail(
                "timeout",
                f"duckdb query timed out after {timeout:g}s and was interrupted; raise "
                "`timeout` or make the query cheaper",
                retryable=True,
            )
        except asyncio.CancelledError:
            work.interrupt()
            task.add_done_callback(_consume)
            raise
        except _ConnectFailure as e:
            message = str(e.error)
            busy = "lock" in message.lower()
            return ToolOutcome.fail(
                "connection",
                f"duckdb cannot open database {database!r}: {message}"
                + ("; another process holds it, retry later" if busy else ""),
                code=type(e.error).__name__,
                retryable=busy,
            )
        except _SqlFailure as e:
            where = f"statement {e.index + 1} of {e.total}" if e.total > 1 else "query"
            return ToolOutcome.fail(
                "sql",
                f"duckdb {where} failed: {e.error}",
                code=type(e.error).__name__,
            )
        return ToolOutcome.ok(rows)

    async def aclose(self) -> None:
        """Nothing to release: every run opens and closes its own connection."""
