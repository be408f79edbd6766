"""`noetl-agent search`, `similar`, `clusters`, `anomalies` and `indexer`: execution history
by meaning.

On the embedded stack each search first indexes what is new in the local event log (the
model loads once, which takes a few seconds), then answers from the local index under
``$NOETL_HOME/qdrant`` (or ``NOETL_QDRANT_URL``). With ``--server`` the server answers
from the index it keeps up to date itself. Nothing here is imported by `run`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from noetl_agent.cli.app import (
    DATABASE_OPTION,
    SCHEMA_OPTION,
    SERVER_OPTION,
    TOKEN_OPTION,
    _call_remote,
    _endpoint,
    _principal,
    _print_json,
    _run,
    _table,
    app,
    err,
    out,
)

if TYPE_CHECKING:
    from noetl_agent.client import AsyncClient
    from noetl_agent.history import History

T = TypeVar("T")
KIND_OPTION: Any = typer.Option(
    None, "--kind", help="failures, steps, executions or playbooks (default: all four)."
)
JSON_OPTION: Any = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _answer(
    server: str | None,
    token: str | None,
    remote: Callable[[AsyncClient], Awaitable[T]],
    local: Callable[[History], Awaitable[T]],
    *,
    quiet: bool,
) -> T:
    """Ask the server with ``remote`` when there is one (``--server``/``NOETL_SERVER_URL``);
    else check the local principal may search, index what is new in the embedded stack's
    history (saying so unless ``quiet``) and answer with ``local``."""
    endpoint = _endpoint(server, token)
    if endpoint is not None:
        return _call_remote(endpoint, remote)
    _principal().require("viewer", "search execution history")
    from noetl_agent.history import local_history

    async def go() -> T:
        async with local_history() as history:
            report = await history.index()
            if report.documents and not quiet:
                err.print(f"[dim]indexed {report.documents} new document(s)[/]")
            return await local(history)

    return _run(go, "interrupted")


def _first_line(text: str, width: int = 100) -> str:
    line = (text or "").splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _print_hits(
    hits: list[dict[str, Any]], empty: str = "no matches; run some playbooks, or try other words"
) -> None:
    if not hits:
        out.print(empty)
        return
    table = _table("score", "kind", "playbook", "step", "execution", "text")
    for hit in hits:
        table.add_row(
            f"{hit['score']:.2f}",
            hit["kind"],
            hit.get("playbook_path") or "",
            hit.get("step") or "",
            hit.get("execution_id") or "",
            _first_line(hit.get("text") or ""),
        )
    out.print(table)


@app.command()
def search(
    text: str = typer.Argument(..., help="What to look for, in your own words."),
    kind: str | None = KIND_OPTION,
    limit: int = typer.Option(10, "-k", "--limit", min=1, max=100, help="How many hits."),
    playbook: str | None = typer.Option(None, "--playbook", help="Only this playbook path."),
    as_json: bool = JSON_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Search past failures, steps, executions and playbooks by meaning, best first."""
    filters = {"playbook_path": playbook} if playbook else {}

    async def remote(api: AsyncClient) -> list[dict[str, Any]]:
        return await api.search(text, kind=kind, filters=filters, k=limit)

    async def local(history: History) -> list[dict[str, Any]]:
        found = await history.search(text, kind=kind, filters=filters, k=limit)
        return [hit.to_dict() for hit in found]

    hits = _answer(server, token, remote, local, quiet=as_json)
    if as_json:
        _print_json(hits)
    else:
        _print_hits(hits)


@app.command()
def similar(
    execution_id: str = typer.Argument(..., help="A failed execution."),
    limit: int = typer.Option(5, "-k", "--limit", min=1, max=100, help="How many hits."),
    as_json: bool = JSON_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Past failures of other executions that resemble this execution's failure."""

    async def remote(api: AsyncClient) -> dict[str, Any]:
        return await api.similar(execution_id, k=limit)

    async def local(history: History) -> dict[str, Any]:
        return await history.failure_and_similar(execution_id, k=limit)

    answer = _answer(server, token, remote, local, quiet=as_json)
    if as_json:
        _print_json(answer["similar"])
        return
    failure = answer.get("failure")
    if failure:
        out.print(
            f"[bold]{execution_id}[/] {failure.get('playbook_path')} step "
            f"{failure.get('step')}: [red]{_first_line(failure.get('text') or '', 200)}[/]",
            soft_wrap=True,
        )
    _print_hits(answer["similar"], "no other execution failed like this one")


@app.command()
def clusters(
    threshold: float | None = typer.Option(
        None, "--threshold", min=0.01, max=1.0, help="Cosine similarity to join a group."
    ),
    min_count: int = typer.Option(1, "--min-count", min=1, help="Hide smaller groups."),
    playbook: str | None = typer.Option(None, "--playbook", help="Only this playbook path."),
    as_json: bool = JSON_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Group failures of similar meaning across playbooks, largest group first."""

    async def remote(api: AsyncClient) -> list[dict[str, Any]]:
        return await api.error_clusters(threshold=threshold, min_count=min_count, playbook=playbook)

    async def local(history: History) -> list[dict[str, Any]]:
        found = await history.clusters(threshold=threshold, min_count=min_count, playbook=playbook)
        return [cluster.to_dict() for cluster in found]

    groups = _answer(server, token, remote, local, quiet=as_json)
    if as_json:
        _print_json(groups)
        return
    if not groups:
        out.print("no failures indexed")
        return
    table = _table("count", "representative message", "playbooks", "last seen")
    for group in groups:
        table.add_row(
            str(group["count"]),
            _first_line(group["representative"], 80),
            ", ".join(group["playbooks"]),
            group.get("last_seen") or "",
        )
    out.print(table)


@app.command()
def anomalies(
    playbook: str | None = typer.Option(None, "--playbook", help="Only this playbook path."),
    step: str | None = typer.Option(None, "--step", help="Only this step."),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0.1, help="Robust z-score beyond which a run is unusual."
    ),
    as_json: bool = JSON_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Step runs whose duration is far from that step's own history."""

    async def remote(api: AsyncClient) -> list[dict[str, Any]]:
        return await api.duration_anomalies(playbook=playbook, step=step, threshold=threshold)

    async def local(history: History) -> list[dict[str, Any]]:
        rows = await history.anomalies(playbook=playbook, step=step, threshold=threshold)
        return [row.to_dict() for row in rows]

    found = _answer(server, token, remote, local, quiet=as_json)
    if as_json:
        _print_json(found)
        return
    if not found:
        out.print("no unusual step durations")
        return
    table = _table("z", "playbook", "step", "execution", "duration", "median")
    for row in found:
        table.add_row(
            f"{row['z']:+.1f}",
            row["playbook_path"],
            row["step"],
            row["execution_id"],
            f"{row['duration_ms']} ms",
            f"{row['median_ms']:.0f} ms",
        )
    out.print(table)


@app.command()
def indexer(
    once: bool = typer.Option(False, "--once", help="Index what is new, then exit."),
    interval: float = typer.Option(
        2.0, "--interval", min=0.1, help="Seconds between passes when following the log."
    ),
    database: str | None = DATABASE_OPTION,
    schema: str = SCHEMA_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print each pass's report as JSON."),
) -> None:
    """Index the event log for search: the local one, or PostgreSQL with --database."""
    _principal().require("operator", "index execution history")
    from noetl_agent.history import local_history, postgres_history

    def report(done: Any) -> None:
        if as_json:
            _print_json(done.to_dict())
        elif done.documents or once:
            kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(done.by_kind.items()))
            out.print(
                f"indexed {done.documents} new document(s){f' ({kinds})' if kinds else ''} "
                f"from {done.events} event(s); log position {done.position}"
            )

    async def follow(history: History) -> None:
        while True:
            report(await history.index())
            if once:
                return
            await asyncio.sleep(interval)

    async def go() -> None:
        if database:
            async with postgres_history(database, schema) as history:
                await follow(history)
        else:
            async with local_history() as history:
                await follow(history)

    _run(go, "stopped")


__all__ = ["anomalies", "clusters", "indexer", "search", "similar"]
