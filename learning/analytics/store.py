"""The analytics store: where exported events live and ClickHouse SQL runs.

One port, :class:`AnalyticsStore`, and one adapter, :class:`ClickHouseStore`, built on a
clickhouse-connect ``Client`` with either transport:

- embedded (the default): chDB, the ClickHouse engine in this process, keeping its data
  in a folder (``$NOETL_HOME/analytics``); ``ClickHouseStore.embedded(path)``;
- server: a ClickHouse server over HTTP(S), ``ClickHouseStore.server(url)`` (what
  ``NOETL_CLICKHOUSE_URL`` selects).

Both run exactly the same statements through the same client API (DDL, Arrow inserts,
parameterised queries with per-query settings), so what works embedded works on a server.
chDB holds one engine per process and locks its folder: a second process (or a second
folder in this one) gets :class:`AnalyticsUnavailable` saying so.

Errors of the driver are translated at this edge: a failed or limited query becomes
``QueryFailed`` / ``QueryLimitExceeded`` with ClickHouse's own explanation, an engine or
server that cannot be reached ``AnalyticsUnavailable``.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from learning.analytics.errors import AnalyticsUnavailable, QueryFailed, QueryLimitExceeded
from learning.analytics.schema import DATABASE, TABLE, create_table_sql

if TYPE_CHECKING:
    import pyarrow as pa
    from clickhouse_connect.driver.client import Client

# ClickHouse error codes that mean "your query hit a limit" rather than "it is wrong".
_LIMIT_CODES = frozenset({158, 159, 160, 396})  # TOO_MANY_ROWS, TIMEOUT_EXCEEDED, ...
_CODE = re.compile(r"Code: (\d+)\.")
_NOISE = re.compile(r"^.*?DB::Exception: |\s*\(version [^)]*\)\s*$|\s*Stack trace.*$", re.S)
READ_SETTINGS: dict[str, Any] = {"final": 1}  # collapse rows written twice (see schema)


class AnalyticsStore(Protocol):
    """Exported events and SQL over them (the tables of :mod:`learning.analytics.schema`)."""

    @property
    def where(self) -> str:
        """Where the data lives, for messages (a folder or a server URL, no password)."""
        ...

    def ensure_schema(self) -> None:
        """Create the database and tables when missing (safe to repeat)."""
        ...

    def insert(self, table: pa.Table) -> int:
        """Append the rows of ``table`` (the exported Arrow schema); return how many."""
        ...

    def query(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        """Run one statement with ``{name:Type}`` parameters and ClickHouse settings."""
        ...

    def explain_ast(self, sql: str) -> str:
        """ClickHouse's ``EXPLAIN AST`` of ``sql``: its parse tree, one node a line, nothing
        run. Raises ``QueryFailed`` when it does not parse."""
        ...

    def close(self) -> None: ...


class ClickHouseStore:
    """:class:`AnalyticsStore` on a clickhouse-connect client (chDB or a server)."""

    def __init__(self, client: Client, where: str, *, database: str = DATABASE) -> None:
        self._client = client
        self._where = where
        self.database = database
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ClickHouseStore({self._where!r})"

    @property
    def where(self) -> str:
        return self._where

    # ------------------------------------------------------------------ opening

    @classmethod
    def embedded(cls, path: Path, *, database: str = DATABASE) -> ClickHouseStore:
        """chDB keeping its data in ``path`` (created when missing).

        Raises ``AnalyticsUnavailable`` when another process has the folder open, or this
        process has another folder open (chDB runs one engine per process)."""
        import clickhouse_connect

        path.mkdir(parents=True, exist_ok=True)
        hint = (
            "chDB opens one folder per process and locks it: stop the other process using "
            "it (a running `noetl-agent server`?), or use a ClickHouse server through "
            "NOETL_CLICKHOUSE_URL"
        )
        with _unavailable(f"cannot open the analytics folder {path}", hint):
            client = clickhouse_connect.get_client(interface="chdb", path=str(path))
            try:
                client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            except BaseException:
                client.close()
                raise
            client.database = database  # unqualified names (user SQL) resolve here
        return cls(client, str(path), database=database)

    @classmethod
    def server(cls, url: str, *, database: str = DATABASE) -> ClickHouseStore:
        """A ClickHouse server at ``url`` (``http://user:password@host:8123``); the
        database is created when missing. Raises ``AnalyticsUnavailable`` when the
        server cannot be reached or refuses the credentials."""
        import clickhouse_connect

        shown = _without_password(url)
        hint = "check NOETL_CLICKHOUSE_URL and that the server is running"
        with _unavailable(f"cannot reach the ClickHouse server at {shown}", hint):
            bootstrap = clickhouse_connect.get_client(dsn=url, connect_timeout=10)
            try:
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            finally:
                bootstrap.close()
            client = clickhouse_connect.get_client(
                dsn=url, database=database, connect_timeout=10, send_receive_timeout=120
            )
        return cls(client, shown, database=database)

    # ------------------------------------------------------------------ the port

    def ensure_schema(self) -> None:
        with self._lock, _translated(self._where):
            self._client.command(create_table_sql(self.database))

    def insert(self, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        with self._lock, _translated(self._where):
            self._client.insert_arrow(TABLE, table, database=self.database)
        return int(table.num_rows)

    def query(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        merged = {**READ_SETTINGS, **(settings or {})}
        with self._lock, _translated(self._where):
            return self._client.query_arrow(
                sql, parameters=dict(parameters or {}), settings=merged, use_strings=True
            )

    def explain_ast(self, sql: str) -> str:
        # ``command`` sends the text as it is: ``query`` would append SETTINGS and FORMAT
        # clauses (differently per transport) that would show up in the tree.
        with self._lock, _translated(self._where):
            result = self._client.command(f"EXPLAIN AST {sql}")
        if isinstance(result, str):
            return result
        if isinstance(result, list | tuple):
            return "\n".join(str(line) for line in result)
        return str(result)

    def close(self) -> None:
        with self._lock:
            self._client.close()


def open_store(url: str | None, path: Path) -> ClickHouseStore:
    """The server at ``url`` when given, else chDB in ``path``."""
    return ClickHouseStore.server(url) if url else ClickHouseStore.embedded(path)


def clickhouse_message(exc: BaseException) -> str:
    """ClickHouse's explanation without the code prefix, version and stack trace."""
    text = str(exc).strip()
    cleaned = _NOISE.sub("", text).strip()
    return cleaned or text


@contextlib.contextmanager
def _translated(where: str) -> Iterator[None]:
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    try:
        yield
    except OperationalError as exc:
        raise AnalyticsUnavailable(
            f"the analytics store at {where} failed: {clickhouse_message(exc)}; check that "
            "it is running and reachable"
        ) from exc
    except DatabaseError as exc:
        found = _CODE.search(str(exc))
        message = clickhouse_message(exc)
        if found and int(found.group(1)) in _LIMIT_CODES:
            raise QueryLimitExceeded(f"the query went over its limit: {message}") from exc
        raise QueryFailed(message) from exc


@contextlib.contextmanager
def _unavailable(what: str, hint: str) -> Iterator[None]:
    from clickhouse_connect.driver.exceptions import ClickHouseError

    try:
        yield
    except (ClickHouseError, OSError, RuntimeError) as exc:
        raise AnalyticsUnavailable(f"{what}: {clickhouse_message(exc)}; {hint}") from exc


def _without_password(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)
