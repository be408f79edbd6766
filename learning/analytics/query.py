"""``analytics_query``: read-only ClickHouse SQL over the analytics tables, with limits.

A statement runs only when every check passes, each failure saying what is not allowed
and what is:

1. **one statement**: a ``;`` may end it, but no second statement may follow;
2. **a reading statement**: ``SELECT``, ``WITH ... SELECT``, ``DESCRIBE [TABLE] name``
   or ``SHOW TABLES``;
3. **over the analytics tables only**, judged on ClickHouse's own parse of the statement
   (``EXPLAIN AST``, which parses without running anything): tables of another database
   are refused (``system.*`` included), and so is every table function except the
   generators ``numbers``, ``zeros``, ``generate_series`` and ``values``: the ones that
   read files, URLs, object stores or other servers (``file``, ``url``, ``s3``,
   ``remote``, ``mysql``, ...) never run. The ``file`` function is refused too;
4. **no clauses that escape the limits**: ``SETTINGS``, ``FORMAT`` and ``INTO OUTFILE``.

It then runs with ``readonly = 2`` (no writes, no DDL, whatever the checks missed),
``max_result_rows`` with ``result_overflow_mode = 'throw'`` and ``max_execution_time``:
a query over the limit fails with ``QueryLimitExceeded`` rather than returning a silently
cut result. The same settings apply on chDB and on a ClickHouse server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from learning.analytics.errors import QueryFailed, QueryRejected
from learning.analytics.schema import DATABASE, TABLES
from learning.analytics.store import AnalyticsStore

DEFAULT_MAX_ROWS = 1000
MAX_ROWS = 100_000
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 120.0
STATEMENTS = ("SELECT", "WITH", "DESCRIBE", "DESC", "SHOW")
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "values"}
)
GENERATORS = "numbers, zeros, generate_series, values"
DENIED_FUNCTIONS = frozenset({"file"})  # a scalar function that reads a local file
_SYSTEM = frozenset({"system", "information_schema"})  # `x IN system.users` names a table
_ALLOWED_TEXT = (
    "allowed: one SELECT (or WITH ... SELECT), DESCRIBE TABLE or SHOW TABLES over the "
    f"analytics tables ({', '.join(sorted(TABLES))})"
)
_WORD = re.compile(r"[A-Za-z_]+")
_NODE = re.compile(
    r"^(?P<indent> *)(?P<kind>\w+)(?: (?P<name>.*?))?(?: \(alias [^)]*\))?"
    r"(?: +\(children \d+\))?$"
)


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Rows of a query, as JSON-ready lists in column order."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "types": self.types,
            "rows": self.rows,
            "row_count": self.row_count,
        }

    def records(self) -> list[dict[str, Any]]:
        """The rows as ``{column: value}`` mappings."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def analytics_query(
    store: AnalyticsStore,
    sql: str,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout: float = DEFAULT_TIMEOUT,
) -> QueryResult:
    """Run ``sql`` read-only (see the module docstring) returning at most ``max_rows`` rows
    within ``timeout`` seconds. Raises ``QueryRejected`` when a check fails,
    ``QueryLimitExceeded`` past a limit, ``QueryFailed`` when ClickHouse refuses it."""
    if not 1 <= max_rows <= MAX_ROWS:
        raise QueryRejected(f"max_rows must be between 1 and {MAX_ROWS}, got {max_rows}")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise QueryRejected(f"timeout must be above 0 and at most {MAX_TIMEOUT:g}s")
    statement = check_statement(sql)
    settings = {
        "readonly": 2,
        "max_result_rows": max_rows,
        "result_overflow_mode": "throw",
        "max_execution_time": timeout,
        "timeout_overflow_mode": "throw",
    }
    check_tree(_explain(store, statement), database=_database(store))
    table = store.query(statement, settings=settings)
    # Column by column: two columns may share a name (``SELECT 1, 1``).
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return QueryResult(
        columns=list(table.column_names),
        types=[str(t) for t in table.schema.types],
        rows=[[_plain(v) for v in row] for row in zip(*columns, strict=True)],
    )


def check_statement(sql: str) -> str:
    """``sql`` without a trailing ``;``, when it is one statement of an allowed kind;
    raises ``QueryRejected`` otherwise."""
    statements = [s for s in _statements(sql) if s.strip()]
    if not statements:
        raise QueryRejected(f"the query is empty; {_ALLOWED_TEXT}")
    if len(statements) > 1:
        raise QueryRejected(
            f"only one statement is allowed, got {len(statements)}; run them one at a time "
            f"({_ALLOWED_TEXT})"
        )
    statement = statements[0].strip()
    words = _WORD.findall(_code_only(statement))
    first = words[0].upper() if words else ""
    if first not in STATEMENTS or (
        first == "SHOW" and [w.upper() for w in words[1:2]] != ["TABLES"]
    ):
        shown = " ".join(words[:2]).upper() or statement[:20]
        raise QueryRejected(
            f"`{shown}` is not allowed: analytics queries are read-only; {_ALLOWED_TEXT}"
        )
    return statement


def check_tree(ast: str, *, database: str = DATABASE) -> None:
    """Check ClickHouse's ``EXPLAIN AST`` of a statement (see the module docstring);
    raises ``QueryRejected`` naming the first thing that is not allowed."""
    nodes = [_node(line) for line in ast.splitlines() if line.strip()]
    if not nodes:
        raise QueryRejected(f"the query could not be understood; {_ALLOWED_TEXT}")
    top = nodes[0][1]
    if top not in ("SelectWithUnionQuery", "DescribeQuery", "ShowTables", "ShowTablesQuery"):
        raise QueryRejected(f"`{top}` statements are not allowed; {_ALLOWED_TEXT}")
    for index, (depth, kind, name) in enumerate(nodes):
        if top == "SelectWithUnionQuery" and depth == 1 and kind != "ExpressionList":
            raise QueryRejected(
                "FORMAT and INTO OUTFILE are not allowed: results come back as a table; "
                "remove the clause"
            )
        if kind == "Set":
            raise QueryRejected(
                "SETTINGS is not allowed: the row and time limits are fixed; remove the clause"
            )
        if kind == "Identifier" and name.split(".", 1)[0].strip('`"').lower() in _SYSTEM:
            raise QueryRejected(
                f"`{name}` is not allowed: only the analytics tables of database "
                f"`{database}` can be read ({', '.join(sorted(TABLES))})"
            )
        if kind == "TableIdentifier" and "." in name:
            owner = name.split(".", 1)[0].strip('`"')
            if owner != database:
                raise QueryRejected(
                    f"table `{name}` is not allowed: only the analytics tables of database "
                    f"`{database}` can be read ({', '.join(sorted(TABLES))})"
                )
        if kind == "Function":
            function = name.strip('`"')
            parent = _parent(nodes, index)
            if parent == "TableExpression" and function.lower() not in ALLOWED_TABLE_FUNCTIONS:
                raise QueryRejected(
                    f"table function `{function}` is not allowed: queries read only the "
                    f"analytics tables ({', '.join(sorted(TABLES))}) and the generators "
                    f"{GENERATORS}"
                )
            if function.lower() in DENIED_FUNCTIONS:
                raise QueryRejected(
                    f"function `{function}` is not allowed: it reads files outside the "
                    "analytics tables"
                )


def _explain(store: AnalyticsStore, statement: str) -> str:
    try:
        return store.explain_ast(statement)
    except QueryFailed as exc:
        raise QueryFailed(f"the query cannot be parsed: {exc}") from exc


def _database(store: AnalyticsStore) -> str:
    return str(getattr(store, "database", DATABASE))


def _node(line: str) -> tuple[int, str, str]:
    found = _NODE.match(line.rstrip())
    if found is None:
        stripped = line.lstrip(" ")
        return len(line) - len(stripped), stripped.split(" ", 1)[0], ""
    return len(found["indent"]), found["kind"], (found["name"] or "").strip()


def _parent(nodes: list[tuple[int, str, str]], index: int) -> str | None:
    depth = nodes[index][0]
    for earlier in range(index - 1, -1, -1):
        if nodes[earlier][0] < depth:
            return nodes[earlier][1]
    return None


def _statements(sql: str) -> list[str]:
    """Split on ``;`` outside strings, quoted names and ``--`` / ``/* */`` comments.

    Where this and ClickHouse's lexer could disagree, this errs towards seeing a ``;``
    (``#`` is not taken for a comment), so a second statement is never missed: chDB would
    run it, and ``EXPLAIN AST`` would have checked only the first."""
    parts: list[str] = []
    start = i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            i = _skip_quoted(sql, i)
            continue
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if ch == ";":
            parts.append(sql[start:i])
            start = i + 1
        i += 1
    parts.append(sql[start:])
    return [part for part in parts if _code_only(part).strip()]


def _code_only(sql: str) -> str:
    """``sql`` with comments removed and string literals emptied."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            end = _skip_quoted(sql, i)
            out.append(sql[i:end] if ch != "'" else "''")
            i = end
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _skip_quoted(sql: str, i: int) -> int:
    """Index just past the quoted run starting at ``i`` (backslash and doubled quotes)."""
    quote = sql[i]
    i += 1
    while i < len(sql):
        if sql[i] == "\\":
            i += 2
            continue
        if sql[i] == quote:
            if i + 1 < len(sql) and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return i


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
