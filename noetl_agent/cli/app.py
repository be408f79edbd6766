"""`noetl-agent`: run, validate and inspect playbooks on the embedded stack or a server.

The local CLI acts as the local human administrator; ``--as-agent`` makes the call as the
local agent principal (the identity the MCP server uses). With ``--server URL`` (or
``NOETL_SERVER_URL``) and a token (``--token`` or ``NOETL_TOKEN``) the run, catalog,
executions and approvals commands go through the HTTP API instead, as the token's
principal, with the same output and exit codes. Errors are one clear line and a hint;
``--debug`` shows tracebacks. Exit codes: 0 success, 1 failure, 2 invalid input.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
import yaml

from engine.core import events as ev
from engine.core.events import Event
from engine.dsl.loader import load_playbook, read_playbook_text
from engine.dsl.models import Playbook
from engine.errors import Conflict, NoetlError, NotFound, PlaybookInvalid
from engine.ports import ExecutionSummary
from engine.runtime.embedded import Engine, ExecutionOutcome
from noetl_agent.decision_rules import require_approval_decider
from noetl_agent.errors import Forbidden, Unauthorized
from noetl_agent.executions import pending_approvals, summarize
from noetl_agent.generation.gate import install_draft_gate
from noetl_agent.local import local_engine
from noetl_agent.principals import LOCAL_ADMIN, LOCAL_AGENT, Principal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from noetl_agent.client import AsyncClient
    from noetl_agent.tokens import TokenStore

T = TypeVar("T")
app = typer.Typer(
    name="noetl-agent",
    help="Playbook orchestration with a closed learning loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
catalog_app = typer.Typer(help="Register and list playbook versions.", no_args_is_help=True)
executions_app = typer.Typer(help="Inspect executions and their events.", no_args_is_help=True)
approvals_app = typer.Typer(
    help="Workflow decision points waiting for a person.", no_args_is_help=True
)
app.add_typer(catalog_app, name="catalog")
app.add_typer(executions_app, name="executions")
credentials_app = typer.Typer(
    help="Credentials referenced by name from playbooks (values are never shown).",
    no_args_is_help=True,
)
app.add_typer(approvals_app, name="approvals")
app.add_typer(credentials_app, name="credentials")
tokens_app = typer.Typer(
    help="API tokens for `noetl-agent server` (shown once, stored only as a hash).",
    no_args_is_help=True,
)
app.add_typer(tokens_app, name="tokens")
db_app = typer.Typer(help="The PostgreSQL schema of the distributed mode.", no_args_is_help=True)
app.add_typer(db_app, name="db")


class _LazyConsole:
    """A Rich console created on first use, so `run --json` never imports Rich."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, highlight=False)
        return getattr(self._console, name)


out: Any = _LazyConsole(stderr=False)
err: Any = _LazyConsole(stderr=True)
_state: dict[str, Any] = {"debug": False, "principal": LOCAL_ADMIN, "server": None, "token": None}
EXIT_FAILED = 1
EXIT_INVALID = 2
SERVER_OPTION: Any = typer.Option(
    None,
    "--server",
    envvar="NOETL_SERVER_URL",
    help="Go through the API server at this URL instead of the local state.",
)
TOKEN_OPTION: Any = typer.Option(
    None, "--token", envvar="NOETL_TOKEN", help="API token for --server.", show_default=False
)
DATABASE_OPTION: Any = typer.Option(
    None,
    "--database",
    envvar="NOETL_DATABASE_URL",
    help="PostgreSQL URL of the distributed mode (postgresql://user@host/db).",
    show_default=False,
)
SCHEMA_OPTION: Any = typer.Option(
    "noetl", "--schema", envvar="NOETL_DATABASE_SCHEMA", help="PostgreSQL schema to use."
)
NATS_STREAM_OPTION: Any = typer.Option(
    "NOETL_COMMANDS", "--nats-stream", envvar="NOETL_NATS_STREAM", help="JetStream stream."
)
NATS_SUBJECT_PREFIX_OPTION: Any = typer.Option(
    "noetl.commands",
    "--nats-subject-prefix",
    envvar="NOETL_NATS_SUBJECT_PREFIX",
    help="Subjects are PREFIX.<pool>.",
)


@app.callback()
def main_options(
    as_agent: bool = typer.Option(
        False, "--as-agent", help="Act as the local agent principal instead of the local human."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    _state["debug"] = debug
    _state["principal"] = LOCAL_AGENT if as_agent else LOCAL_ADMIN
    _state["server"] = server
    _state["token"] = token


def _principal() -> Principal:
    principal: Principal = _state["principal"]
    return principal


def _fail(message: str, code: int, hint: str | None = None) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    if hint:
        err.print(f"[dim]hint: {hint}[/]", soft_wrap=True)
    return typer.Exit(code)


def _call(work: Callable[[Engine], Awaitable[T]]) -> T:
    """Run ``work`` against the local engine, turning errors into one clear message."""

    async def go() -> T:
        async with local_engine() as engine:
            install_draft_gate(engine)
            return await work(engine)

    return _run(go, "interrupted; the execution can be finished with `noetl-agent resume`")


def _call_remote(endpoint: tuple[str, str], work: Callable[[AsyncClient], Awaitable[T]]) -> T:
    """Run ``work`` against the API server at ``endpoint`` (URL, token), errors as `_call`."""
    from noetl_agent.client import AsyncClient

    async def go() -> T:
        async with AsyncClient(*endpoint) as api:
            return await work(api)

    return _run(go, f"interrupted; the execution goes on in the server at {endpoint[0]}")


def _run(go: Callable[[], Coroutine[Any, Any, T]], interrupted: str, *, service: bool = False) -> T:
    """Run ``go`` and turn errors into messages; a long-running ``service`` (the
    distributed server, a worker) gets uvloop and a tuned garbage collector."""
    loop_factory = None
    if service:
        from noetl_agent.service_tuning import event_loop_factory, tune_garbage_collector

        loop_factory = event_loop_factory()
        tune_garbage_collector()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(go())
    except typer.Exit:
        raise
    except PlaybookInvalid as exc:
        if _state["debug"]:
            traceback.print_exc()
        raise _fail(str(exc), EXIT_INVALID) from None
    except Unauthorized as exc:
        if _state["debug"]:
            traceback.print_exc()
        raise _fail(
            str(exc), EXIT_FAILED, "pass --token or set NOETL_TOKEN to a token the server knows"
        ) from None
    except (NotFound, Conflict, Forbidden) as exc:
        if _state["debug"]:
            traceback.print_exc()
        raise _fail(str(exc), EXIT_FAILED) from None
    except NoetlError as exc:
        if _state["debug"]:
            traceback.print_exc()
        raise _fail(str(exc), EXIT_FAILED) from None
    except KeyboardInterrupt:
        raise _fail(interrupted, 130) from None


def _endpoint(server: str | None = None, token: str | None = None) -> tuple[str, str] | None:
    """The API server (URL, token) to use, or None for the local state."""
    url = server or _state["server"]
    if not url:
        return None
    secret = token or _state["token"]
    if not secret:
        raise _fail(
            f"no API token for the server at {url}",
            EXIT_INVALID,
            "pass --token or set NOETL_TOKEN; create one on the server's host with "
            "`noetl-agent tokens create`",
        )
    return str(url), str(secret)


def _table(*columns: str) -> Table:
    from rich.table import Table  # only listings need it; keeps `run` start-up light

    return Table(*columns)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")


def _parse_sets(values: list[str]) -> dict[str, Any]:
    workload: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise _fail(
                f"--set expects KEY=VALUE, got '{item}'", EXIT_INVALID, "e.g. --set city=Paris"
            )
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        target = workload
        parts = key.strip().split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return workload


class _Progress:
    """Prints one line per finished step, retry and pause while an execution runs."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.started: dict[str, str] = {}

    def __call__(self, event: Event) -> None:
        kind = event.event_type
        depth = event.execution_id.count(".")
        pad = "  " * depth
        if kind == ev.STEP_STARTED and event.step_run_id:
            self.started[f"{event.execution_id}/{event.step_run_id}"] = event.timestamp
        elif kind == ev.STEP_FINISHED:
            mark = "[green]✓[/]" if event.status == "success" else "[red]✗[/]"
            began = self.started.pop(f"{event.execution_id}/{event.step_run_id}", None)
            took = f" [dim]{_elapsed_ms(began, event.timestamp)}[/]" if began else ""
            message = ""
            if event.status == "error":
                message = f" [red]{(event.payload.get('error') or {}).get('message', '')}[/]"
            self.console.print(f"{pad}{mark} {event.entity_id}{took}{message}", soft_wrap=True)
        elif kind == ev.RETRY_STARTED:
            delay = event.payload.get("delay_ms", 0)
            reason = event.payload.get("reason") or "error"
            self.console.print(
                f"{pad}[yellow]↻[/] {event.entity_id} attempt {event.attempt} "
                f"in {delay} ms ({reason})"
            )
        elif kind == ev.LOOP_STARTED:
            self.console.print(
                f"{pad}[cyan]⟳[/] {event.entity_id}: {event.payload.get('count')} items"
            )
        elif kind == ev.APPROVAL_REQUESTED:
            self.console.print(
                f"{pad}[magenta]⏸[/] {event.entity_id} waits for a person: "
                f"{event.payload.get('prompt')}\n{pad}  approve with "
                f"[bold]noetl-agent approvals approve {event.payload.get('approval_id')}[/]",
                soft_wrap=True,
            )


def _elapsed_ms(start: str, end: str) -> str:
    from datetime import datetime

    try:
        delta = datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(
            start.replace("Z", "+00:00")
        )
    except ValueError:
        return ""
    ms = delta.total_seconds() * 1000
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _report_outcome(outcome: ExecutionOutcome, as_json: bool) -> None:
    if as_json:
        _print_json(outcome.to_dict())
    else:
        style = {"completed": "green", "failed": "red", "paused": "magenta"}.get(
            outcome.status, "yellow"
        )
        out.print(f"[bold {style}]{outcome.status}[/] execution {outcome.execution_id}")
        if outcome.result is not None:
            out.print_json(json.dumps(outcome.result, default=str))
        if outcome.error:
            err.print(
                f"[red]{outcome.error.get('step', 'execution')}: {outcome.error.get('message')}[/]",
                soft_wrap=True,
            )
    if outcome.status in ("failed", "cancelled"):
        raise typer.Exit(EXIT_FAILED)


def _target(spec: str) -> tuple[str | None, int | None, Path | None]:
    """``catalog://PATH[@VERSION]`` or a file path."""
    if spec.startswith("catalog://"):
        rest = spec.removeprefix("catalog://")
        path, _, version = rest.partition("@")
        if version and not version.isdigit():
            raise _fail(f"version '{version}' is not a number", EXIT_INVALID, "catalog://PATH@3")
        return path.strip("/"), int(version) if version else None, None
    return None, None, Path(spec)


@app.command()
def run(
    target: str = typer.Argument(..., help="Playbook file, or catalog://PATH\\[@VERSION]."),
    sets: list[str] = typer.Option([], "--set", help="Workload value KEY=VALUE (YAML value)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Run a playbook and show live step progress; exit 1 if it fails, 2 if it is invalid."""
    workload = _parse_sets(sets)
    path, version, file = _target(target)
    endpoint = _endpoint(server, token)
    if endpoint is not None:
        _report_outcome(_run_remote(endpoint, path, version, file, workload, as_json), as_json)
        return
    _principal().require("operator", "run playbooks")

    async def work(engine: Engine) -> ExecutionOutcome:
        nonlocal path
        if file is not None:
            content = read_playbook_text(file)
            entry = await engine.register(content, source=str(file.resolve()))
            path = entry.path
        if not as_json:
            engine.subscribe(_Progress(err))
        assert path is not None
        execution_id = await engine.execute(path, version=version, workload=workload)
        if not as_json:
            err.print(f"[dim]execution {execution_id}[/]")
        return await engine.wait(execution_id)

    _report_outcome(_call(work), as_json)


def _run_remote(
    endpoint: tuple[str, str],
    path: str | None,
    version: int | None,
    file: Path | None,
    workload: dict[str, Any],
    as_json: bool,
) -> ExecutionOutcome:
    async def work(api: AsyncClient) -> ExecutionOutcome:
        nonlocal path
        if file is not None:
            content = read_playbook_text(file)
            try:
                path = (await api.register(content)).path
            except PlaybookInvalid as exc:
                exc.source = str(file)
                raise
        assert path is not None
        started = await api.execute(path, version=version, workload=workload)
        if not as_json:
            err.print(f"[dim]execution {started.execution_id} on {endpoint[0]}[/]")
        return await api.wait(started.execution_id, on_event=None if as_json else _Progress(err))

    return _call_remote(endpoint, work)


@app.command()
def server(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8080, "--port", min=0, max=65535),
    max_body: int = typer.Option(
        1024 * 1024, "--max-body-bytes", min=1, help="Largest request body accepted."
    ),
    database: str | None = DATABASE_OPTION,
    nats_url: str | None = typer.Option(
        None,
        "--nats",
        envvar="NOETL_NATS_URL",
        help="NATS JetStream URL of the distributed mode (with --database).",
        show_default=False,
    ),
    schema: str = SCHEMA_OPTION,
    stream: str = NATS_STREAM_OPTION,
    subject_prefix: str = NATS_SUBJECT_PREFIX_OPTION,
    lease: float = typer.Option(
        30.0,
        "--lease",
        min=1.0,
        max=600.0,
        help="Seconds a claim lasts when the worker names none, and that a queued command "
        "waits unclaimed before it is announced again.",
    ),
    reap_interval: float = typer.Option(
        2.0, "--reap-interval", min=0.1, help="Seconds between passes of the command reaper."
    ),
    max_claims: int = typer.Option(
        5,
        "--max-claims",
        min=1,
        help="Claims of one command whose worker never finished before its step fails.",
    ),
) -> None:
    """Serve the HTTP API (OpenAPI at /docs); running executions left by a stopped process
    are picked up first. Stop it with Ctrl-C.

    Without --database and --nats it serves the local state and runs tools itself. With
    both, events, catalog, tokens and commands live in PostgreSQL and `noetl-agent worker`
    processes run the tools."""
    _principal().require("admin", "serve the API")

    def announce(message: str) -> None:
        err.print(f"[dim]{message}[/]", soft_wrap=True)

    if database or nats_url:
        if not (database and nats_url):
            missing = "--nats (NOETL_NATS_URL)" if database else "--database (NOETL_DATABASE_URL)"
            raise _fail(
                f"the distributed mode needs {missing} too",
                EXIT_INVALID,
                "pass both --database and --nats, or neither for the embedded stack",
            )
        from noetl_agent.api.server import Distributed, serve_distributed

        settings = Distributed(
            database,
            nats_url,
            schema=schema,
            stream=stream,
            subject_prefix=subject_prefix,
            lease=lease,
            reap_interval=reap_interval,
            max_claims=max_claims,
        )

        async def distributed() -> None:
            await serve_distributed(
                settings, host, port, max_body_bytes=max_body, announce=announce
            )

        _run(distributed, "stopped", service=True)
        return
    from noetl_agent.api.server import serve
    from noetl_agent.config import noetl_home

    async def go() -> None:
        await serve(noetl_home(), host, port, max_body_bytes=max_body, announce=announce)

    _run(go, "stopped")


@app.command()
def worker(
    server: str | None = typer.Option(
        None, "--server", envvar="NOETL_SERVER_URL", help="The API server to claim from."
    ),
    nats_url: str = typer.Option(
        "nats://127.0.0.1:4222", "--nats", envvar="NOETL_NATS_URL", help="NATS JetStream URL."
    ),
    token: str | None = TOKEN_OPTION,
    pool: str = typer.Option("cpu", "--pool", help="The pool whose commands to run."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Commands run at once."),
    lease: float = typer.Option(
        30.0,
        "--lease",
        min=1.0,
        max=600.0,
        help="Seconds a claim lasts; heartbeats every third of it.",
    ),
    worker_id: str | None = typer.Option(
        None, "--worker-id", help="Name in claims (default HOSTNAME-PID).", show_default=False
    ),
    grace: float = typer.Option(
        30.0, "--grace", min=0.0, help="Seconds running commands get to finish on SIGTERM."
    ),
    stream: str = NATS_STREAM_OPTION,
    subject_prefix: str = NATS_SUBJECT_PREFIX_OPTION,
) -> None:
    """Run commands of one pool for a `noetl-agent server` (distributed mode) until SIGTERM
    or Ctrl-C; the token needs the worker role. Serves no HTTP endpoints."""
    from noetl_agent.worker import WorkerSettings, configure_logging, run_worker

    endpoint = _endpoint(server, token)
    if endpoint is None:
        raise _fail(
            "a worker needs the API server's address",
            EXIT_INVALID,
            "pass --server URL or set NOETL_SERVER_URL",
        )
    settings = WorkerSettings(
        *endpoint,
        nats_url=nats_url,
        pool=pool,
        concurrency=concurrency,
        lease_seconds=lease,
        grace=grace,
        worker_id=worker_id or "",
        stream=stream,
        subject_prefix=subject_prefix,
    )
    configure_logging(_state["debug"])

    def announce(message: str) -> None:
        err.print(f"[dim]{message}[/]", soft_wrap=True)

    async def go() -> None:
        await run_worker(settings, announce)

    try:
        _run(go, "stopped", service=True)
    except ValueError as exc:
        raise _fail(str(exc), EXIT_INVALID) from None


@app.command()
def validate(
    file: Path = typer.Argument(..., help="Playbook file."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check a playbook without running it; exit 2 with every problem found if it is invalid."""
    try:
        playbook = load_playbook(file)
    except PlaybookInvalid as exc:
        if as_json:
            _print_json({"valid": False, "issues": [issue.to_dict() for issue in exc.issues]})
            raise typer.Exit(EXIT_INVALID) from None
        raise _fail(str(exc), EXIT_INVALID) from None
    if as_json:
        _print_json({"valid": True, "path": playbook.path, "steps": len(playbook.workflow)})
    else:
        out.print(f"[green]valid[/] {playbook.path} ({len(playbook.workflow)} steps)")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the playbook language."""
    _print_json(Playbook.model_json_schema(by_alias=True))


@app.command()
def resume(as_json: bool = typer.Option(False, "--json")) -> None:
    """Finish executions a stopped process left running; no finished step runs again."""
    _principal().require("operator", "resume executions")

    async def work(engine: Engine) -> list[ExecutionOutcome]:
        if not as_json:
            engine.subscribe(_Progress(err))
        ids = await engine.recover()
        return [await engine.wait(execution_id) for execution_id in ids]

    outcomes = _call(work)
    if as_json:
        _print_json([outcome.to_dict() for outcome in outcomes])
    elif not outcomes:
        out.print("nothing to resume")
    else:
        for outcome in outcomes:
            out.print(f"{outcome.status} execution {outcome.execution_id}")
    if any(outcome.status == "failed" for outcome in outcomes):
        raise typer.Exit(EXIT_FAILED)


@catalog_app.command("register")
def catalog_register(
    file: Path = typer.Argument(..., help="Playbook file."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Register a playbook file as a new catalog version (unchanged content keeps its version)."""
    endpoint = _endpoint()
    if endpoint is not None:

        async def remote(api: AsyncClient) -> Any:
            try:
                return await api.register(read_playbook_text(file))
            except PlaybookInvalid as exc:
                exc.source = str(file)
                raise

        entry = _call_remote(endpoint, remote)
    else:
        _principal().require("operator", "register playbooks")

        async def work(engine: Engine) -> Any:
            return await engine.register(read_playbook_text(file), source=str(file.resolve()))

        entry = _call(work)
    if as_json:
        _print_json({"path": entry.path, "version": entry.version, "name": entry.name})
    else:
        out.print(f"registered [bold]{entry.path}[/] version {entry.version}")


@catalog_app.command("list")
def catalog_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the latest version of every registered playbook."""

    async def work(engine: Engine) -> list[dict[str, Any]]:
        return [
            {
                "path": e.path,
                "version": e.version,
                "name": e.name,
                "description": e.description,
                "registered_at": e.registered_at,
            }
            for e in await engine.catalog.list()
        ]

    async def remote(api: AsyncClient) -> list[dict[str, Any]]:
        return await api.list_playbooks()

    endpoint = _endpoint()
    entries = _call(work) if endpoint is None else _call_remote(endpoint, remote)
    if as_json:
        _print_json(entries)
        return
    table = _table("path", "version", "name", "registered")
    for e in entries:
        table.add_row(e["path"], str(e["version"]), e["name"], e["registered_at"])
    out.print(table)


@executions_app.command("list")
def executions_list(
    status: str | None = typer.Option(None, help="running, paused, completed, failed, cancelled"),
    limit: int = typer.Option(20, min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List executions, newest first."""

    async def work(engine: Engine) -> Any:
        return await engine.events.list_executions(status=status, limit=limit)

    async def remote(api: AsyncClient) -> Any:
        listed = await api.list_executions(status=status, limit=limit)
        return [ExecutionSummary(**row) for row in listed]

    endpoint = _endpoint()
    rows = _call(work) if endpoint is None else _call_remote(endpoint, remote)
    if as_json:
        _print_json(
            [
                {
                    "execution_id": r.execution_id,
                    "playbook_path": r.playbook_path,
                    "playbook_version": r.playbook_version,
                    "status": r.status,
                    "started_at": r.started_at,
                    "finished_at": r.finished_at,
                    "parent_execution_id": r.parent_execution_id,
                }
                for r in rows
            ]
        )
        return
    table = _table("execution", "playbook", "version", "status", "started")
    for r in rows:
        table.add_row(
            r.execution_id, r.playbook_path, str(r.playbook_version), r.status, r.started_at
        )
    out.print(table)


@executions_app.command("show")
def executions_show(
    execution_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")
) -> None:
    """Show an execution: status, step runs, result or error."""

    async def work(engine: Engine) -> dict[str, Any]:
        summary = await engine.events.get_execution(execution_id)
        return summarize(summary, await engine.events.read(execution_id)).to_dict()

    async def remote(api: AsyncClient) -> dict[str, Any]:
        return asdict(await api.get_execution(execution_id))

    endpoint = _endpoint()
    view = _call(work) if endpoint is None else _call_remote(endpoint, remote)
    if as_json:
        _print_json(view)
        return
    out.print(
        f"[bold]{view['execution_id']}[/] {view['playbook_path']} "
        f"v{view['playbook_version']}: {view['status']}"
    )
    table = _table("step run", "status", "attempts", "iterations", "error")
    for r in view["steps"]:
        message = (r["error"] or {}).get("message", "")
        table.add_row(
            r["step_run_id"], r["status"], str(r["attempts"]), str(r["iterations"] or ""), message
        )
    out.print(table)
    if view["result"] is not None:
        out.print_json(json.dumps(view["result"], default=str))


@executions_app.command("cancel")
def executions_cancel(
    execution_id: str = typer.Argument(...),
    reason: str = typer.Option("cancelled by request", "--reason"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Cancel a running or paused execution; tools still running are stopped."""
    endpoint = _endpoint()
    if endpoint is not None:

        async def remote(api: AsyncClient) -> ExecutionOutcome:
            await api.cancel(execution_id, reason)
            return await api.wait(execution_id)

        outcome = _call_remote(endpoint, remote)
    else:
        _principal().require("operator", "cancel executions")

        async def work(engine: Engine) -> ExecutionOutcome:
            await engine.cancel(execution_id, reason)
            return await engine.wait(execution_id)

        outcome = _call(work)
    if as_json:
        _print_json(outcome.to_dict())
    else:
        out.print(f"[yellow]{outcome.status}[/] execution {outcome.execution_id}")


@executions_app.command("events")
def executions_events(
    execution_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")
) -> None:
    """Print an execution's event log in order."""

    async def work(engine: Engine) -> Any:
        await engine.events.get_execution(execution_id)
        return await engine.events.read(execution_id)

    async def remote(api: AsyncClient) -> Any:
        return await api.events(execution_id)

    endpoint = _endpoint()
    events = _call(work) if endpoint is None else _call_remote(endpoint, remote)
    if as_json:
        _print_json([event.to_dict() for event in events])
        return
    table = _table("seq", "type", "entity", "status", "attempt", "timestamp")
    for e in events:
        table.add_row(
            str(e.seq),
            e.event_type,
            e.entity_id or "",
            e.status or "",
            str(e.attempt or ""),
            e.timestamp,
        )
    out.print(table)


@approvals_app.command("list")
def approvals_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List workflow decision points waiting for a person."""

    async def work(engine: Engine) -> Any:
        return await pending_approvals(engine.events)

    async def remote(api: AsyncClient) -> Any:
        return await api.approvals()

    endpoint = _endpoint()
    items = _call(work) if endpoint is None else _call_remote(endpoint, remote)
    if as_json:
        _print_json([item.to_dict() for item in items])
        return
    table = _table("approval", "step", "prompt", "requested")
    for item in items:
        table.add_row(item.approval_id, item.step, item.prompt, item.requested_at)
    out.print(table)


def _decide(approval_id: str, approved: bool, comment: str | None, as_json: bool) -> None:
    endpoint = _endpoint()
    if endpoint is not None:

        async def remote(api: AsyncClient) -> ExecutionOutcome:
            execution_id = approval_id.partition("/")[0]
            seen = (await api.get_execution(execution_id)).events
            await api.decide(approval_id, approved=approved, comment=comment)
            on_event = None if as_json else _Progress(err)
            return await api.wait(execution_id, after_seq=seen, on_event=on_event)

        _report_outcome(_call_remote(endpoint, remote), as_json)
        return
    principal = _principal()
    principal.require_human_approver("approve or reject workflow decisions")

    async def work(engine: Engine) -> ExecutionOutcome:
        engine.subscribe(_Progress(err)) if not as_json else None
        await require_approval_decider(engine.events, approval_id, principal)
        await engine.decide_approval(
            approval_id, approved=approved, decided_by=principal.name, comment=comment
        )
        execution_id = approval_id.partition("/")[0]
        return await engine.wait(execution_id)

    try:
        outcome = _call(work)
    except typer.Exit:
        raise
    _report_outcome(outcome, as_json)


@approvals_app.command("approve")
def approvals_approve(
    approval_id: str = typer.Argument(..., help="EXECUTION/STEP#N from `approvals list`."),
    comment: str | None = typer.Option(None, "--comment"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Approve a pending workflow decision and let the execution go on."""
    _guarded(lambda: _decide(approval_id, True, comment, as_json))


@approvals_app.command("reject")
def approvals_reject(
    approval_id: str = typer.Argument(...),
    comment: str | None = typer.Option(None, "--comment"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Reject a pending workflow decision and let the execution go on."""
    _guarded(lambda: _decide(approval_id, False, comment, as_json))


def _credential_store() -> Any:
    from noetl_agent.local import LocalCredentials

    return LocalCredentials()


@credentials_app.command("set")
def credentials_set(
    name: str = typer.Argument(..., help="The name playbooks use in `auth:`."),
    kind: str = typer.Option("generic", "--kind", help="postgres, http, ..."),
    fields: list[str] = typer.Option(
        [], "--field", "-f", help="FIELD=VALUE, repeatable (e.g. -f host=db -f password=...)."
    ),
    from_stdin: bool = typer.Option(
        False, "--stdin", help="Read the fields as one JSON object from standard input."
    ),
) -> None:
    """Store a credential, encrypted, in $NOETL_HOME/noetl.db (key: NOETL_CREDENTIAL_KEY or
    $NOETL_HOME/credential.key); with --server, on that server (admin token)."""
    endpoint = _endpoint()
    if endpoint is None:
        _principal().require("admin", "manage credentials")
    data: dict[str, Any] = {}
    if from_stdin:
        try:
            loaded = json.loads(sys.stdin.read())
        except json.JSONDecodeError as exc:
            raise _fail(f"standard input is not a JSON object: {exc.msg}", EXIT_INVALID) from None
        if not isinstance(loaded, dict):
            raise _fail("standard input must hold one JSON object of fields", EXIT_INVALID)
        data.update(loaded)
    for item in fields:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _fail(f"--field expects FIELD=VALUE, got '{key}'", EXIT_INVALID)
        data[key] = value
    if not data:
        raise _fail(
            "a credential needs fields", EXIT_INVALID, "use -f FIELD=VALUE or pipe a JSON object"
        )
    if endpoint is not None:

        async def remote(api: AsyncClient) -> Any:
            return await api.set_credential(name, kind, data)

        _call_remote(endpoint, remote)
    else:
        try:
            _credential_store().set(name, kind, data)
        except NoetlError as exc:
            raise _fail(str(exc), EXIT_INVALID) from None
    out.print(f"stored credential [bold]{name}[/] ({kind}, {len(data)} fields)")


@credentials_app.command("list")
def credentials_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List stored credentials by name and kind."""
    endpoint = _endpoint()
    if endpoint is not None:

        async def remote(api: AsyncClient) -> list[dict[str, Any]]:
            return await api.list_credentials()

        listed = _call_remote(endpoint, remote)
        if as_json:
            _print_json(listed)
            return
        table = _table("name", "kind")
        for entry in listed:
            table.add_row(entry["name"], entry["kind"])
        out.print(table)
        return
    store = _credential_store()
    try:
        items, legacy = store.list(), store.legacy_names()
    except NoetlError as exc:
        raise _fail(str(exc), EXIT_FAILED) from None
    if legacy:
        err.print(
            f"[dim]{len(legacy)} credential(s) are still in the plain {store.legacy.path}; "
            "encrypt them with `noetl-agent credentials import-file`[/]",
            soft_wrap=True,
        )
    if as_json:
        _print_json([{"name": item.name, "kind": item.kind} for item in items])
        return
    table = _table("name", "kind")
    for item in items:
        table.add_row(item.name, item.kind)
    out.print(table)


@credentials_app.command("delete")
def credentials_delete(name: str = typer.Argument(...)) -> None:
    """Remove a stored credential."""
    endpoint = _endpoint()
    if endpoint is not None:

        async def remote(api: AsyncClient) -> None:
            await api.delete_credential(name)

        _call_remote(endpoint, remote)
        out.print(f"deleted credential {name}")
        return
    _principal().require("admin", "manage credentials")
    try:
        deleted = _credential_store().delete(name)
    except NoetlError as exc:
        raise _fail(str(exc), EXIT_FAILED) from None
    if not deleted:
        raise _fail(f"credential '{name}' is not stored", EXIT_FAILED, "see `credentials list`")
    out.print(f"deleted credential {name}")


@credentials_app.command("import-file")
def credentials_import_file(
    path: Path | None = typer.Argument(
        None, help="A JSON file of credentials; default $NOETL_HOME/credentials.json."
    ),
    keep: bool = typer.Option(False, "--keep", help="Keep the plain file after importing."),
) -> None:
    """Encrypt the credentials of a plain JSON file into the store, then delete the file."""
    _principal().require("admin", "manage credentials")
    try:
        imported = _credential_store().import_file(path, keep=keep)
    except NoetlError as exc:
        raise _fail(str(exc), EXIT_INVALID) from None
    out.print(f"imported {len(imported.names)} credential(s): {', '.join(imported.names) or '-'}")
    if imported.removed is not None:
        out.print(f"deleted {imported.removed}")


def _tokens(
    work: Callable[[TokenStore], Awaitable[T]], database: str | None = None, schema: str = "noetl"
) -> T:
    """Run ``work`` on the token store of the local state (the server's SQLite file), or
    of the PostgreSQL ``database`` (its schema migrated first) when one is given."""
    _principal().require("admin", "manage API tokens")
    from engine.adapters.sqlite.stores import SqliteDatabase
    from noetl_agent.config import noetl_home
    from noetl_agent.tokens import PostgresTokenStore, SqliteTokenStore

    async def go() -> T:
        if database:
            from engine.adapters.postgres import PostgresDatabase

            pg = await PostgresDatabase.open(database, schema=schema, max_size=2)
            try:
                await pg.migrate()
                return await work(PostgresTokenStore(pg))
            finally:
                await pg.close()
        db = SqliteDatabase.open(noetl_home() / "noetl.db")
        try:
            return await work(SqliteTokenStore(db))
        finally:
            db.close()

    try:
        return _run(go, "interrupted")
    except ValueError as exc:
        raise _fail(str(exc), EXIT_INVALID) from None


@tokens_app.command("create")
def tokens_create(
    name: str = typer.Option(..., "--name", help="Who the token is for (unique)."),
    kind: str = typer.Option(..., "--kind", help="human or agent (agents never approve)."),
    roles: list[str] = typer.Option(
        ..., "--role", help="viewer, operator, approver, worker or admin; repeatable."
    ),
    database: str | None = DATABASE_OPTION,
    schema: str = SCHEMA_OPTION,
) -> None:
    """Create a token; it is printed once, as the last line, and only its hash is kept.
    With --database it is for a distributed server on that PostgreSQL database."""

    async def work(store: TokenStore) -> str:
        return await store.create(name, kind, roles)

    token = _tokens(work, database, schema)
    err.print(
        f"created token [bold]{name}[/] ({kind}; {', '.join(roles)}); copy it now, "
        "it is not shown again:",
        soft_wrap=True,
    )
    sys.stderr.flush()
    sys.stdout.write(token + "\n")


@tokens_app.command("list")
def tokens_list(
    as_json: bool = typer.Option(False, "--json"),
    database: str | None = DATABASE_OPTION,
    schema: str = SCHEMA_OPTION,
) -> None:
    """List tokens by name, kind and roles (never the secrets)."""

    async def work(store: TokenStore) -> Any:
        return await store.list()

    items = _tokens(work, database, schema)
    if as_json:
        _print_json([item.to_dict() for item in items])
        return
    table = _table("name", "kind", "roles", "created")
    for item in items:
        table.add_row(item.name, item.kind, ", ".join(item.roles), item.created_at)
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    name: str = typer.Argument(..., help="The token's name."),
    database: str | None = DATABASE_OPTION,
    schema: str = SCHEMA_OPTION,
) -> None:
    """Revoke a token: requests made with it are refused from now on."""

    async def work(store: TokenStore) -> None:
        await store.revoke(name)

    _tokens(work, database, schema)
    out.print(f"revoked token {name}")


@db_app.command("migrate")
def db_migrate(
    database: str | None = DATABASE_OPTION,
    schema: str = SCHEMA_OPTION,
) -> None:
    """Create or update the schema's tables (safe to repeat; `server --database` does it
    at start too)."""
    _principal().require("admin", "migrate the database")
    if not database:
        raise _fail(
            "no database to migrate",
            EXIT_INVALID,
            "pass --database postgresql://user@host/db or set NOETL_DATABASE_URL",
        )
    from engine.adapters.postgres import PostgresDatabase

    async def go() -> tuple[int, int]:
        pg = await PostgresDatabase.open(database, schema=schema, max_size=1)
        try:
            before = await pg.schema_version()
            return before, await pg.migrate()
        finally:
            await pg.close()

    before, after = _run(go, "interrupted")
    if before == after:
        out.print(f"schema {schema!r} is up to date (version {after})")
    else:
        out.print(f"migrated schema {schema!r} from version {before} to {after}")


def _guarded(action: Callable[[], None]) -> None:
    try:
        action()
    except Forbidden as exc:
        raise _fail(str(exc), EXIT_FAILED) from None


def main() -> None:
    """Console entry point."""
    from engine.runtime.redaction import install_log_redaction

    install_log_redaction()
    try:
        app()
    except Forbidden as exc:
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise SystemExit(EXIT_FAILED) from None


# Commands kept in modules of their own register themselves on `app` when imported.
from noetl_agent.cli import analytics as _analytics  # noqa: E402, F401
from noetl_agent.cli import demo as _demo  # noqa: E402, F401
from noetl_agent.cli import explain as _explain  # noqa: E402, F401
from noetl_agent.cli import generate as _generate  # noqa: E402, F401
from noetl_agent.cli import learning as _learning  # noqa: E402, F401
from noetl_agent.cli import proposals as _proposals  # noqa: E402, F401


def _register_installed_commands() -> None:
    """Add the commands the layers above this one declare (entry point group
    ``noetl_agent.commands`` of this distribution, each a ``register(app)`` function),
    such as ``mcp`` from ``mcp_server``, without this package importing them. Only this
    distribution's metadata is read: scanning every installed package costs ~0.1 s. Run
    from a source tree that was never installed, there are none."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        plugins = distribution("noetl-agent").entry_points.select(group="noetl_agent.commands")
    except PackageNotFoundError:
        return
    for plugin in plugins:
        plugin.load()(app)


_register_installed_commands()
