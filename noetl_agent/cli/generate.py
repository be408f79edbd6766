"""`noetl-agent generate` and `noetl-agent promote`: playbooks from a description, and the
human step that lets a generated draft that runs code go live.

``generate`` writes the draft with the model named by ``NOETL_LLM_MODEL`` when there is
one, else (or when the model fails) with the offline planner; it validates and dry-runs
the draft, writes it to ``-o FILE`` (else prints it), prints the report, and exits 0
only when the draft validates (2 otherwise). ``--register`` adds a valid draft to the
catalog. Drafts with python, shell or SQL commands cannot run live until a human
operator runs ``promote`` on them (``NOETL_GENERATED_GATE=off`` disables the gate).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from engine.dsl.loader import read_playbook_text
from engine.dsl.models import TOOL_KINDS
from engine.runtime.embedded import Engine
from noetl_agent.cli.app import (
    EXIT_INVALID,
    SERVER_OPTION,
    TOKEN_OPTION,
    _call,
    _call_remote,
    _endpoint,
    _fail,
    _parse_sets,
    _principal,
    _print_json,
    _target,
    app,
    err,
    out,
)

if TYPE_CHECKING:
    from noetl_agent.client import AsyncClient
    from noetl_agent.generation.gate import DraftStatus


@app.command()
def generate(
    description: str = typer.Argument(..., help="What the playbook should do, in words."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write the draft here (else it is printed)."
    ),
    register: bool = typer.Option(False, "--register", help="Register a valid draft."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON."),
    offline: bool = typer.Option(
        False, "--offline", help="Use the offline planner even when a model is configured."
    ),
    name: str | None = typer.Option(None, "--name", help="metadata.name of the draft."),
    path: str | None = typer.Option(None, "--path", help="Catalog path of the draft."),
    kinds: list[str] = typer.Option(
        [], "--kind", help=f"Allow only these tool kinds (repeatable): {', '.join(TOOL_KINDS)}."
    ),
    sets: list[str] = typer.Option(
        [], "--set", help="Workload value KEY=VALUE for the dry run (YAML value)."
    ),
    repairs: int = typer.Option(2, "--repairs", min=0, max=5, help="Model repair rounds."),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Write a playbook from a description, validate it and dry-run it (no side effects)."""
    constraints_body: dict[str, Any] = {
        "name": name,
        "path": path,
        "kinds": kinds or None,
        "workload": _parse_sets(sets),
        "max_repairs": repairs,
        "offline": offline,
    }
    endpoint = _endpoint(server, token)
    if endpoint is not None:

        async def remote(api: AsyncClient) -> dict[str, Any]:
            return await api.generate(description, constraints_body, register=register)

        report = _call_remote(endpoint, remote)
    else:
        report = _generate_locally(description, constraints_body, register)
    if output is not None:
        output.write_text(report["yaml"], encoding="utf-8")
    if as_json:
        _print_json(report)
    else:
        _print_report(report, output)
    if not report["valid"]:
        raise typer.Exit(EXIT_INVALID)


def _generate_locally(description: str, body: dict[str, Any], register: bool) -> dict[str, Any]:
    from learning.errors import LearningError
    from noetl_agent.config import noetl_home
    from noetl_agent.generation.errors import InvalidRequest
    from noetl_agent.generation.pipeline import Constraints
    from noetl_agent.generation.service import generate_on
    from noetl_agent.history import embedded_history, indexing_enabled
    from noetl_agent.local import local_credential_sources

    principal = _principal()
    principal.require("operator", "generate playbooks")
    try:
        constraints = Constraints(
            name=body["name"],
            path=body["path"],
            kinds=frozenset(body["kinds"]) if body["kinds"] else None,
            workload=body["workload"],
            max_repairs=body["max_repairs"],
            offline=body["offline"],
        )
    except InvalidRequest as exc:
        raise _fail(str(exc), EXIT_INVALID) from None
    home = noetl_home()

    async def work(engine: Engine) -> dict[str, Any]:
        history = None
        if indexing_enabled():
            history = embedded_history(engine.events, engine.catalog, home)
            try:  # so playbooks registered since the last pass can serve as examples
                await history.index()
            except LearningError as exc:
                err.print(f"[dim]similar playbooks may be missing: {exc}[/]", soft_wrap=True)
        draft = await generate_on(
            engine,
            description,
            constraints,
            principal=principal,
            register=register,
            history=history,
            credentials=local_credential_sources(home),
        )
        return draft.to_dict()

    try:
        return _call(work)
    except ValueError as exc:  # a NOETL_LLM_* variable that is not a number
        raise _fail(str(exc), EXIT_INVALID) from None


def _print_report(report: dict[str, Any], output: Path | None) -> None:
    if output is None:
        out.print(report["yaml"], markup=False, highlight=False, end="")
    source = report["model"] if report["generator"] == "model" else "offline planner"
    if report["valid"]:
        err.print(f"[green]valid[/] draft {report['path']} written by the {source}")
    else:
        err.print(f"[bold red]invalid[/] draft written by the {source}:")
        for issue in report["issues"]:
            where = issue["path"] or "<playbook>"
            hint = f" (hint: {issue['hint']})" if issue.get("hint") else ""
            err.print(f"  - {where}: {issue['message']}{hint}", soft_wrap=True, markup=False)
    dry = report["dry_run"]
    if dry is not None:
        mark = "[green]passed[/]" if dry["passed"] else f"[red]{dry['status']}[/]"
        err.print(
            f"dry run {mark}: {len(dry['stood_in'])} tool call(s) answered without side "
            f"effects, {len(dry['approvals'])} approval(s) granted by the dry run"
        )
        if dry["error"]:
            err.print(f"  [red]{dry['error'].get('message')}[/]", soft_wrap=True)
        for warning in dry["warnings"]:
            err.print(f"  [yellow]{warning}[/]", soft_wrap=True)
    for item in report["unmapped"]:
        err.print(
            f"[yellow]not mapped[/] “{item['text']}”: {item['reason']}",
            soft_wrap=True,
        )
    for example in report["examples"]:
        err.print(f"[dim]example used: {example['path']} (score {example['score']:.2f})[/]")
    gate = report["gate"]
    if gate["gated"]:
        err.print(
            f"[magenta]gated[/]: runs code ({', '.join(gate['code_tools'])}); a human "
            "operator must promote it before it runs live: "
            f"noetl-agent promote {output or 'FILE'}",
            soft_wrap=True,
        )
    llm = report["llm"]
    if llm["calls"]:
        cost = "unknown cost" if llm["cost_usd"] is None else f"${llm['cost_usd']:.6f}"
        err.print(
            f"[dim]model: {len(llm['calls'])} call(s), {llm['prompt_tokens']} prompt + "
            f"{llm['completion_tokens']} completion tokens, {cost}[/]"
        )
    for note in report["notes"]:
        err.print(f"[dim]{note}[/]", soft_wrap=True)
    if report["registered"]:
        registered = report["registered"]
        err.print(f"registered {registered['path']} version {registered['version']}")
    if output is not None:
        err.print(f"wrote {output}")


@app.command()
def promote(
    target: str = typer.Argument(
        ..., help="The draft: catalog://PATH (optionally @VERSION) or the file `generate -o` wrote."
    ),
    comment: str | None = typer.Option(None, "--comment", help="Why it may run."),
    as_json: bool = typer.Option(False, "--json"),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Let a generated draft that runs code go live (a human operator, after review)."""
    from noetl_agent.generation.service import promote_content, promote_version

    principal = _principal()
    path, version, file = _target(target)
    endpoint = _endpoint(server, token)
    if endpoint is not None:

        async def remote(api: AsyncClient) -> dict[str, Any]:
            content = read_playbook_text(file) if file is not None else None
            return await api.promote(path, version=version, content=content, comment=comment)

        _print_promoted(_call_remote(endpoint, remote), as_json)
        return

    async def work(engine: Engine) -> DraftStatus:
        if file is not None:
            content = read_playbook_text(file)
            return await promote_content(engine, content, principal=principal, comment=comment)
        assert path is not None
        return await promote_version(engine, path, version, principal=principal, comment=comment)

    _print_promoted(_call(work).to_dict(), as_json)


def _print_promoted(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(status)
        return
    out.print(
        f"promoted draft {status['fingerprint']} (runs "
        f"{', '.join(status['code_tools']) or 'no code'}) by {status['promoted_by']}: "
        "it may run live"
    )


__all__ = ["generate", "promote"]
