"""`noetl-agent`: run, validate and inspect playbooks on the embedded stack.

The local CLI acts as the local human administrator; ``--as-agent`` makes the call as the
local agent principal (the identity the MCP server uses). Errors are one clear line and a
hint; ``--debug`` shows tracebacks. Exit codes: 0 success, 1 failure, 2 invalid input.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
import yaml

from engine.core import events as ev
from engine.core.events import Event
from engine.dsl.loader import load_playbook, read_playbook_text
from engine.dsl.models import Playbook
from engine.errors import Conflict, NoetlError, NotFound, PlaybookInvalid
from engine.runtime.embedded import Engine, ExecutionOutcome
from noetl_agent.errors import Forbidden
from noetl_agent.executions import pending_approvals, summarize
from noetl_agent.local import local_engine
from noetl_agent.principals import LOCAL_ADMIN, LOCAL_AGENT, Principal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

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
_state: dict[str, Any] = {"debug": False, "principal": LOCAL_ADMIN}
EXIT_FAILED = 1
EXIT_INVALID = 2


@app.callback()
def main_options(
    as_agent: bool = typer.Option(
        False, "--as-agent", help="Act as the local agent principal instead of the local human."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    _state["debug"] = debug
    _state["principal"] = LOCAL_AGENT if as_agent else LOCAL_ADMIN


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
            return await work(engine)

    try:
        return asyncio.run(go())
    except typer.Exit:
        raise
    except PlaybookInvalid as exc:
        if _state["debug"]:
            traceback.print_exc()
        raise _fail(str(exc), EXIT_INVALID) from None
    except (NotFound, Conflict, Forbidden) as exc:
        if _state["debug"]:
            traceback.print_exc()
        raise _fail(str(exc), EXIT_FAILED) from None
    except NoetlError as exc:
        if _state["debug"]:
            traceback.print_exc()
        raise _fail(str(exc), EXIT_FAILED) from None
    except KeyboardInterrupt:
        raise _fail(
            "interrupted; the execution can be finished with `noetl-agent resume`", 130
        ) from None


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
    target: str = typer.Argument(..., help="Playbook file, or catalog://PATH[@VERSION]."),
    sets: list[str] = typer.Option([], "--set", help="Workload value KEY=VALUE (YAML value)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Run a playbook and show live step progress; exit 1 if it fails, 2 if it is invalid."""
    _principal().require("operator", "run playbooks")
    workload = _parse_sets(sets)
    path, version, file = _target(target)

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

    async def work(engine: Engine) -> Any:
        return await engine.catalog.list()

    entries = _call(work)
    if as_json:
        _print_json(
            [
                {
                    "path": e.path,
                    "version": e.version,
                    "name": e.name,
                    "description": e.description,
                    "registered_at": e.registered_at,
                }
                for e in entries
            ]
        )
        return
    table = _table("path", "version", "name", "registered")
    for e in entries:
        table.add_row(e.path, str(e.version), e.name, e.registered_at)
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

    rows = _call(work)
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

    async def work(engine: Engine) -> Any:
        summary = await engine.events.get_execution(execution_id)
        return summarize(summary, await engine.events.read(execution_id))

    view = _call(work)
    if as_json:
        _print_json(view.to_dict())
        return
    s = view.summary
    out.print(f"[bold]{s.execution_id}[/] {s.playbook_path} v{s.playbook_version}: {s.status}")
    table = _table("step run", "status", "attempts", "iterations", "error")
    for r in view.steps:
        message = (r.error or {}).get("message", "")
        table.add_row(r.step_run_id, r.status, str(r.attempts), str(r.iterations or ""), message)
    out.print(table)
    if view.result is not None:
        out.print_json(json.dumps(view.result, default=str))


@executions_app.command("cancel")
def executions_cancel(
    execution_id: str = typer.Argument(...),
    reason: str = typer.Option("cancelled by request", "--reason"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Cancel a running or paused execution; tools still running are stopped."""
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

    events = _call(work)
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

    items = _call(work)
    if as_json:
        _print_json([item.to_dict() for item in items])
        return
    table = _table("approval", "step", "prompt", "requested")
    for item in items:
        table.add_row(item.approval_id, item.step, item.prompt, item.requested_at)
    out.print(table)


def _decide(approval_id: str, approved: bool, comment: str | None, as_json: bool) -> None:
    principal = _principal()
    principal.require_human_approver("approve or reject workflow decisions")

    async def work(engine: Engine) -> ExecutionOutcome:
        engine.subscribe(_Progress(err)) if not as_json else None
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


def _credential_file() -> Any:
    from engine.adapters.credentials import FileCredentialProvider
    from noetl_agent.config import noetl_home

    return FileCredentialProvider(noetl_home() / "credentials.json")


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
    """Store a credential in $NOETL_HOME/credentials.json (mode 0600)."""
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
    try:
        _credential_file().set(name, kind, data)
    except NoetlError as exc:
        raise _fail(str(exc), EXIT_INVALID) from None
    out.print(f"stored credential [bold]{name}[/] ({kind}, {len(data)} fields)")


@credentials_app.command("list")
def credentials_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List stored credentials by name and kind."""
    items = _credential_file().list()
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
    _principal().require("admin", "manage credentials")
    if not _credential_file().delete(name):
        raise _fail(f"credential '{name}' is not stored", EXIT_FAILED, "see `credentials list`")
    out.print(f"deleted credential {name}")


def _guarded(action: Callable[[], None]) -> None:
    try:
        action()
    except Forbidden as exc:
        raise _fail(str(exc), EXIT_FAILED) from None


def main() -> None:
    """Console entry point."""
    try:
        app()
    except Forbidden as exc:
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise SystemExit(EXIT_FAILED) from None
