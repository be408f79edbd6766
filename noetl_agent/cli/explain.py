"""`noetl-agent explain` and `feedback`: why an execution failed, and whether that helped.

On the embedded stack the answer comes from the local event log and search index
(``$NOETL_HOME``; loading the model takes a few seconds the first time, and only for an
execution that failed); with ``--server`` the server answers from its own. The output
is the same either way.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from noetl_agent.cli.app import (
    SERVER_OPTION,
    TOKEN_OPTION,
    _call_remote,
    _endpoint,
    _principal,
    _print_json,
    _run,
    _table,
    app,
    out,
)

if TYPE_CHECKING:
    from noetl_agent.client import AsyncClient

JSON_OPTION: Any = typer.Option(False, "--json", help="Print JSON instead of text.")


def _first_line(text: str, width: int = 100) -> str:
    line = (text or "").splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _compact(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _print_explanation(answer: dict[str, Any]) -> None:
    out.print(
        f"[bold]{answer['execution_id']}[/] {answer['playbook_path']} "
        f"v{answer['playbook_version']}: {answer['status']}",
        soft_wrap=True,
    )
    out.print(answer["summary"], soft_wrap=True)
    if not answer["failed"]:
        return
    if answer.get("prose"):
        out.print(f"\n[bold]Explanation[/] (model {answer.get('model')})")
        out.print(answer["prose"], soft_wrap=True, markup=False)
    out.print("\n[bold]Likely causes[/]")
    for rank, cause in enumerate(answer["causes"], 1):
        out.print(
            f" {rank}. {cause['score']:.0%}  [cyan]{cause['id']}[/]  {cause['title']}",
            soft_wrap=True,
        )
        for line in cause["evidence"][:4]:
            out.print(f"      - {line}", soft_wrap=True, markup=False)
    failure = answer.get("failure")
    if failure:
        out.print("\n[bold]Evidence[/]")
        error = failure["error"]
        out.print(
            f"  step {failure['step']} ({failure.get('tool_kind') or '?'}), "
            f"{failure['attempts']} attempt(s): {error['message']}",
            soft_wrap=True,
            markup=False,
        )
        if failure.get("inputs"):
            out.print(f"  inputs: {_compact(failure['inputs'])}", soft_wrap=True, markup=False)
        if failure.get("workload"):
            out.print(f"  workload: {_compact(failure['workload'])}", soft_wrap=True, markup=False)
        if failure.get("traceback"):
            out.print("  traceback (last lines):")
            for line in failure["traceback"].splitlines():
                out.print(f"    {line}", soft_wrap=True, markup=False)
    for resolution in answer.get("resolutions") or []:
        out.print(f"\n[green]since then:[/] {resolution['summary']}", soft_wrap=True)
    if answer["similar"]:
        out.print("\n[bold]Similar past failures[/]")
        table = _table("similarity", "playbook", "step", "execution", "error", "resolved by")
        for item in answer["similar"]:
            resolved = "; ".join(r["summary"] for r in item["resolutions"]) or "-"
            table.add_row(
                f"{item['similarity']:.2f}",
                item.get("playbook_path") or "",
                item.get("step") or "",
                item["execution_id"],
                _first_line(item["error"], 60),
                resolved,
            )
        out.print(table)
    if answer["suggested_fixes"]:
        out.print("\n[bold]Suggested fixes[/]")
        for fix in answer["suggested_fixes"]:
            out.print(f"  - {fix}", soft_wrap=True, markup=False)
    for note in answer.get("notes") or []:
        out.print(f"[dim]note: {note}[/]", soft_wrap=True)
    feedback = answer.get("feedback") or []
    if feedback:
        helpful = sum(1 for item in feedback if item["helpful"])
        out.print(f"feedback so far: {helpful} helpful, {len(feedback) - helpful} not helpful")
    out.print(
        f"[dim]did this help? `noetl-agent feedback {answer['execution_id']} "
        "--helpful` or `--not-helpful`[/]",
        soft_wrap=True,
    )


@app.command()
def explain(
    execution_id: str = typer.Argument(..., help="The execution to explain."),
    as_json: bool = JSON_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Why an execution failed: likely causes, evidence, similar past failures and fixes."""
    endpoint = _endpoint(server, token)
    if endpoint is not None:

        async def remote(api: AsyncClient) -> dict[str, Any]:
            return await api.explain(execution_id)

        answer = _call_remote(endpoint, remote)
    else:
        _principal().require("viewer", "explain executions")
        from noetl_agent.explain import local_explainer

        async def local() -> dict[str, Any]:
            async with local_explainer() as explainer:
                return (await explainer.explain(execution_id)).to_dict()

        answer = _run(local, "interrupted")
    if as_json:
        _print_json(answer)
    else:
        _print_explanation(answer)


@app.command()
def feedback(
    execution_id: str = typer.Argument(..., help="The execution whose explanation you rate."),
    helpful: bool = typer.Option(
        ..., "--helpful/--not-helpful", help="Whether the explanation helped."
    ),
    comment: str | None = typer.Option(None, "--comment", help="What was right or wrong."),
    cause: str | None = typer.Option(
        None, "--cause", help="The cause id you rate (default: the explanation's first)."
    ),
    as_json: bool = JSON_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Record whether the explanation of an execution helped; it weighs later rankings."""
    endpoint = _endpoint(server, token)
    if endpoint is not None:

        async def remote(api: AsyncClient) -> dict[str, Any]:
            return await api.feedback(execution_id, helpful=helpful, comment=comment, cause=cause)

        recorded = _call_remote(endpoint, remote)
    else:
        principal = _principal()
        principal.require("operator", "record feedback on explanations")
        from noetl_agent.explain import local_explainer

        async def local() -> dict[str, Any]:
            async with local_explainer() as explainer:
                stored = await explainer.record_feedback(
                    execution_id,
                    helpful=helpful,
                    principal=principal,
                    comment=comment,
                    cause=cause,
                )
                return stored.to_dict()

        recorded = _run(local, "interrupted")
    if as_json:
        _print_json(recorded)
        return
    verdict = "helpful" if recorded["helpful"] else "not helpful"
    about = f" (cause {recorded['cause']})" if recorded.get("cause") else ""
    out.print(
        f"recorded: the explanation of {recorded['execution_id']} was {verdict}{about}, "
        f"by {recorded['principal']}",
        soft_wrap=True,
    )


__all__ = ["explain", "feedback"]
