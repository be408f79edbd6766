"""The ``postgres`` tool: run SQL on PostgreSQL through asyncpg.

```yaml
tool:
  kind: postgres
  auth: warehouse                # keychain name; or {type: postgres, credential: warehouse}
  query: SELECT id, total FROM orders WHERE placed_at >= $1
  params: ["2024-01-01"]         # bound to $1, $2, ...
```

``query`` returns the rows as a list of dicts (JSON-friendly values: decimals as floats,
dates as ISO strings, json/jsonb decoded). ``command`` returns ``{rowcount, status}`` from
the command tag (``UPDATE 3`` → ``{"rowcount": 3, "status": "UPDATE 3"}``); without
``params`` it may hold several statements separated by ``;``.

The credential resolves, through the run's credential provider, to ``{dsn}`` or
``{host, port, user, password, database}`` (upstream's ``db_host``, ``db_port``,
``db_user``, ``db_password`` and ``db_name`` are accepted too, and ``schema`` sets the
``search_path``). One small pool is kept per distinct credential and closed by ``aclose``.

Errors: a statement the server rejects is a ``sql`` error whose ``code`` is the SQLSTATE
(serialization failures, deadlocks and resource exhaustion are retryable); failing to
connect is a retryable ``connection`` error, except a wrong password, an unknown role or
an unknown database, which retrying cannot fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

import asyncpg

from engine.errors import ToolConfigError
from engine.ports import ToolContext
from engine.tools.config import ConfigInvalid, effective_timeout, jsonable
from engine.tools.outcome import ToolOutcome

DEFAULT_TIMEOUT = 300.0
POOL_MAX_SIZE = 4
_CLOSE_TIMEOUT = 5.0
# SQLSTATE classes worth retrying: transaction rollback (40: serialization failure,
# deadlock), insufficient resources (53), operator intervention (57: shutdown, restart).
_RETRYABLE_SQLSTATE_CLASSES = frozenset({"40", "53", "57"})
# Connect failures that retrying cannot fix: bad password or role, unknown database.
_PERMANENT_CONNECT_SQLSTATES = frozenset({"28P01", "28000", "3D000"})
_FIELD_ALIASES = {
    "host": ("host", "db_host", "hostname"),
    "port": ("port", "db_port"),
    "user": ("user", "username", "db_user"),
    "password": ("password", "db_password"),
    "database": ("database", "dbname", "db_name", "db"),
    "ssl": ("ssl", "sslmode"),
}


def _statement(config: Mapping[str, Any]) -> tuple[str, str]:
    """``("query" | "command", sql)``."""
    given = [f for f in ("query", "command") if config.get(f) is not None]
    if not given:
        raise ConfigInvalid("missing `query` (returns rows) or `command` (returns a row count)")
    if len(given) > 1:
        raise ConfigInvalid("give either `query` or `command`, not both")
    sql = config[given[0]]
    if not isinstance(sql, str) or not sql.strip():
        raise ConfigInvalid(f"`{given[0]}` must be a non-empty SQL string, got {sql!r}")
    return given[0], sql


def _params(config: Mapping[str, Any]) -> list[Any]:
    params = config.get("params")
    if params is None:
        return []
    if isinstance(params, list | tuple):
        return list(params)
    raise ConfigInvalid(
        f"`params` must be a list bound to $1, $2, ... in order, got {type(params).__name__}"
    )


def _connect_fields(fields: Mapping[str, Any], where: str) -> dict[str, Any]:
    """asyncpg ``connect`` arguments from a credential's fields (never echoing values)."""
    kwargs: dict[str, Any] = {}
    dsn = fields.get("dsn") or fields.get("url") or fields.get("connection_string")
    if dsn:
        kwargs["dsn"] = str(dsn)
    for target, names in _FIELD_ALIASES.items():
        value = next((fields[n] for n in names if fields.get(n) not in (None, "")), None)
        if value is not None:
            kwargs[target] = value
    if "port" in kwargs:
        try:
            kwargs["port"] = int(kwargs["port"])
        except (TypeError, ValueError):
            raise ConfigInvalid(f"{where}: `port` must be a number") from None
    if "password" in kwargs:
        kwargs["password"] = str(kwargs["password"])
    schema = fields.get("schema") or fields.get("search_path")
    if schema:
        kwargs["server_settings"] = {"search_path": str(schema)}
    if "dsn" not in kwargs and "host" not in kwargs and "database" not in kwargs:
        raise ConfigInvalid(
            f"{where} has neither `dsn` nor `host`/`database`; give it "
            "{host, port, user, password, database} or {dsn}"
        )
    return kwargs


async def _connection_settings(config: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    auth = config.get("auth")
    if auth is None:
        if config.get("dsn"):
            return {"dsn": str(config["dsn"])}
        raise ConfigInvalid(
            "missing `auth`: name the keychain credential of the database "
            "(`auth: NAME` or `auth: {type: postgres, credential: NAME}`)"
        )
    name: Any
    if isinstance(auth, Mapping):
        name = auth.get("credential") or auth.get("name") or auth.get("key")
        if name is None:
            return _connect_fields(auth, "`auth`")
    else:
        name = auth
    if not isinstance(name, str) or not name:
        raise ConfigInvalid(f"`auth` must name a keychain credential, got {name!r}")
    if ctx.credentials is None:
        raise ConfigInvalid(
            f"`auth: {name}` needs credentials, but none are configured for this run; "
            "start the engine with a credential provider"
        )
    try:
        fields = await ctx.credentials.get(name)
    except ToolConfigError as e:
        raise ConfigInvalid(str(e)) from None
    return _connect_fields(fields, f"credential {name!r}")


def _rowcount(status: str) -> int:
    last = status.rsplit(" ", 1)[-1] if status else ""
    return int(last) if last.isdigit() else 0


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


def _connect_failure(error: BaseException, timeout: float) -> ToolOutcome:
    if isinstance(error, TimeoutError):
        return ToolOutcome.fail(
            "timeout",
            f"postgres: no connection within {timeout:g}s; check that the server is "
            "reachable, or raise `timeout`",
            retryable=True,
        )
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = error.sqlstate
        permanent = sqlstate in _PERMANENT_CONNECT_SQLSTATES
        hint = (
            "fix the credential's user, password or database"
            if permanent
            else "retry once the server accepts connections"
        )
        return ToolOutcome.fail(
            "connection",
            f"postgres refused the connection ({sqlstate}): {error}; {hint}",
            code=sqlstate,
            retryable=not permanent,
        )
    if isinstance(error, asyncpg.ClientConfigurationError | ValueError):
        return ToolOutcome.fail(
            "validation", f"postgres: the connection settings are invalid: {error}"
        )
    detail = str(error) or type(error).__name__
    return ToolOutcome.fail(
        "connection",
        f"postgres: cannot connect: {detail}; check the host and port and that the server "
        "is running",
        retryable=True,
    )


def _query_failure(error: BaseException, what: str, timeout: float) -> ToolOutcome:
    if isinstance(error, TimeoutError):
        return ToolOutcome.fail(
            "timeout",
            f"postgres {what} timed out after {timeout:g}s and was cancelled; raise "
            "`timeout` or make the statement cheaper",
            retryable=True,
        )
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = error.sqlstate or ""
        if sqlstate.startswith("08"):
            return ToolOutcome.fail(
                "connection",
                f"postgres lost the connection during the {what} ({sqlstate}): {error}",
                code=sqlstate,
                retryable=True,
            )
        detail = str(error)
        hint = getattr(error, "hint", None)
        if hint:
            detail += f" (hint: {hint})"
        return ToolOutcome.fail(
            "sql",
            f"postgres {what} failed ({sqlstate}): {detail}",
            code=sqlstate or type(error).__name__,
            retryable=sqlstate[:2] in _RETRYABLE_SQLSTATE_CLASSES,
        )
    if isinstance(error, asyncpg.ConnectionDoesNotExistError | OSError):
        return ToolOutcome.fail(
            "connection",
            f"postgres lost the connection during the {what}: {error}",
            retryable=True,
        )
    return ToolOutcome.fail(
        "validation",
        f"postgres {what} cannot be sent as written: {error}; check `params` against the "
        "$1, $2, ... placeholders",
        code=type(error).__name__,
    )


class PostgresTool:
    """Runs one query or command per run; see the module docstring for fields and result."""

    kind = "postgres"

    def __init__(self, *, pool_max_size: int = POOL_MAX_SIZE) -> None:
        self._pool_max_size = pool_max_size
        self._pools: dict[str, asyncpg.Pool] = {}
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PostgresTool(pools={len(self._pools)})"

    async def _pool(self, settings: Mapping[str, Any]) -> asyncpg.Pool:
        key = json.dumps(settings, sort_keys=True, default=str)
        pool = self._pools.get(key)
        if pool is not None:
            return pool
        async with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                # min_size=0: nothing connects here, so failures surface on acquire,
                # where they are classified, and an idle pool holds no connections.
                pool = await asyncpg.create_pool(
                    min_size=0,
                    max_size=self._pool_max_size,
                    init=_init_connection,
                    **settings,
                )
                self._pools[key] = pool
        return pool

    async def run(
        self, config: Mapping[str, Any], inputs: Mapping[str, Any], ctx: ToolContext
    ) -> ToolOutcome:
        """Run the statement; return rows or ``{rowcount, status}``, or a classified failure."""
        try:
            what, sql = _statement(config)
            params = _params(config)
            timeout = effective_timeout(config, ctx) or DEFAULT_TIMEOUT
            settings = await _connection_settings(config, ctx)
        except ConfigInvalid as e:
            return ToolOutcome.fail("validation", f"postgres tool: {e}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            pool = await self._pool(settings)
        except (asyncpg.ClientConfigurationError, ValueError, TypeError) as e:
            return ToolOutcome.fail(
                "validation", f"postgres: the connection settings are invalid: {e}"
            )
        try:
            conn = await pool.acquire(timeout=timeout)
        except (
            OSError,
            TimeoutError,
            ValueError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
        ) as e:
            return _connect_failure(e, timeout)
        try:
            remaining = max(deadline - loop.time(), 0.001)
            if what == "query":
                records = await conn.fetch(sql, *params, timeout=remaining)
                rows = [
                    {key: jsonable(value) for key, value in record.items()} for record in records
                ]
                return ToolOutcome.ok(rows)
            status = await conn.execute(sql, *params, timeout=remaining)
            return ToolOutcome.ok({"rowcount": _rowcount(status), "status": status})
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            return _query_failure(e, what, timeout)
        finally:
            await pool.release(conn)

    async def aclose(self) -> None:
        """Close every pool; a later run opens new ones."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            try:
                await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                with contextlib.suppress(Exception):
                    pool.terminate()
