"""`noetl-agent proposals`: the review queue of policy changes the learners propose.

``suggest`` measures the changes that are due and asks the learners for new proposals;
``list`` and ``show`` read the queue; ``approve`` and ``reject`` decide (a human approver
who did not propose it; a rejection needs ``--comment``). Locally they act on the
embedded stack as the local administrator (``--as-agent``: the local agent, which may
suggest but never decide); with ``--server`` through the API as the token's principal,
with the same output.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from noetl_agent.cli.app import (
    EXIT_INVALID,
    SERVER_OPTION,
    TOKEN_OPTION,
    _call,
    _call_remote,
    _endpoint,
    _fail,
    _principal,
    _print_json,
    _table,
    app,
    out,
)
from noetl_agent.policy_settings import PolicyConfigError, PolicySettings

if TYPE_CHECKING:
    from engine.runtime.embedded import Engine
    from noetl_agent.client import AsyncClient
    from noetl_agent.proposals import ProposalService

T = TypeVar("T")
proposals_app = typer.Typer(
    help="Policy changes proposed from past runs: review, approve, reject.",
    no_args_is_help=True,
)
app.add_typer(proposals_app, name="proposals")
JSON_OPTION: Any = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _settings() -> PolicySettings:
    try:
        return PolicySettings.from_env()
    except PolicyConfigError as exc:
        raise _fail(str(exc), EXIT_INVALID, "fix or unset that variable") from None


def _answer(
    server: str | None,
    token: str | None,
    remote: Callable[[AsyncClient], Awaitable[T]],
    local: Callable[[ProposalService], Awaitable[T]],
) -> T:
    """Ask the server with ``remote`` when there is one, else the embedded stack's
    proposals with ``local`` (similar past failures come from its search index unless
    ``NOETL_INDEXER`` is off)."""
    endpoint = _endpoint(server, token)
    if endpoint is not None:
        return _call_remote(endpoint, remote)
    settings = _settings()

    async def work(engine: Engine) -> T:
        from noetl_agent.config import noetl_home
        from noetl_agent.history import embedded_history
        from noetl_agent.proposals import ProposalService

        history = embedded_history(engine.events, engine.catalog, noetl_home())
        return await local(ProposalService(engine, history=history, settings=settings))

    return _call(work)


def _target(proposal: dict[str, Any]) -> str:
    target = proposal["target"]
    step = f" {target['step']}" if target.get("step") else ""
    return f"{target['playbook']}@{target['version']}{step}"


def _first_line(text: str, width: int = 90) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _print_list(proposals: list[dict[str, Any]], empty: str) -> None:
    if not proposals:
        out.print(empty)
        return
    table = _table("id", "status", "kind", "target", "approvals", "rationale")
    for item in proposals:
        table.add_row(
            item["id"],
            item["status"],
            item["kind"],
            _target(item),
            f"{item['approvals']}/{item['quorum']}",
            _first_line(item["rationale"]),
        )
    out.print(table)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
        return text if len(text) <= 120 else text[:119] + "…"
    return str(value)


def _rows(evidence: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Evidence as (dotted key, value) rows; nested maps are spelled out."""
    rows: list[tuple[str, str]] = []
    for key, value in evidence.items():
        name = f"{prefix}{key}"
        if key == "similar_failures" and isinstance(value, dict):
            if not value.get("available"):
                rows.append((name, f"unavailable: {value.get('reason')}"))
                continue
            hits = value.get("hits") or []
            shown = [
                f"{h.get('score', 0):.2f} {_first_line(str(h.get('text') or ''), 80)}" for h in hits
            ]
            rows.append((name, "\n".join(shown) or "none"))
        elif isinstance(value, dict) and value:
            rows += _rows(value, f"{name}.")
        else:
            rows.append((name, _value(value)))
    return rows


def _print_proposal(item: dict[str, Any]) -> None:
    from rich.markup import escape

    out.print(f"[bold]{item['id']}[/] {item['kind']} on {_target(item)}: [bold]{item['status']}[/]")
    proposer = item["proposed_by"]
    line = f"proposed by {proposer['name']} ({proposer['kind']}) at {item['created_at']}"
    if item.get("requested_by") and item["requested_by"]["name"] != proposer["name"]:
        line += f" for {item['requested_by']['name']}"
    out.print(f"{line}; expires {item['expires_at']}", soft_wrap=True)
    out.print(f"approvals {item['approvals']}/{item['quorum']}")
    if item.get("applied_version"):
        out.print(f"applied as version {item['applied_version']}")
    out.print(f"\n{escape(item['rationale'])}\n", soft_wrap=True)
    evidence = item.get("evidence") or {}
    if evidence:
        table = _table("evidence", "value")
        for key, value in _rows(evidence):
            table.add_row(key, escape(value))
        out.print(table)
    for decision in item.get("decisions") or []:
        verb = "approved" if decision["approved"] else "rejected"
        comment = f": {decision['comment']}" if decision.get("comment") else ""
        out.print(f"{verb} by {decision['decided_by']} at {decision['at']}{escape(comment)}")
    if item.get("evaluation"):
        evaluation = item["evaluation"]
        out.print(
            f"evaluated: {evaluation.get('verdict')}: {escape(evaluation.get('summary', ''))}"
        )
    if item.get("diff"):
        out.print("")
        for row in item["diff"].splitlines():
            style = "green" if row.startswith("+") else "red" if row.startswith("-") else "dim"
            out.print(f"[{style}]{escape(row)}[/]", soft_wrap=True, highlight=False)


@proposals_app.command("suggest")
def proposals_suggest(
    playbook: str | None = typer.Option(None, "--playbook", help="Only this playbook path."),
    as_json: bool = JSON_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Measure applied changes that are due, then raise the learners' new proposals."""
    if _endpoint(server, token) is None:
        _principal().require("operator", "ask for policy proposals")

    async def remote(api: AsyncClient) -> dict[str, Any]:
        return await api.suggest_proposals(playbook)

    async def local(service: ProposalService) -> dict[str, Any]:
        return (await service.suggest(_principal(), playbook)).to_dict()

    report = _answer(server, token, remote, local)
    if as_json:
        _print_json(report)
        return
    for evaluated in report["evaluated"]:
        verdict = (evaluated.get("evaluation") or {}).get("verdict")
        out.print(f"evaluated {evaluated['id']}: {verdict}")
    _print_list(report["proposed"], "no new proposals")
    if report["pending"]:
        ids = ", ".join(item["id"] for item in report["pending"])
        out.print(f"still pending: {ids}")
    for held in report["suppressed"]:
        out.print(f"[dim]held back: {held['reason']}[/]", soft_wrap=True)


@proposals_app.command("list")
def proposals_list(
    status: str | None = typer.Option(
        None, "--status", help="pending, approved, rejected, applied, rolled_back, expired, stale"
    ),
    as_json: bool = JSON_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """List proposals, newest first."""
    from noetl_agent.review_queue import STATUSES

    if status is not None and status not in STATUSES:
        raise _fail(f"unknown status '{status}'", EXIT_INVALID, f"use one of {', '.join(STATUSES)}")
    if _endpoint(server, token) is None:
        _principal().require("viewer", "read policy proposals")

    async def remote(api: AsyncClient) -> list[dict[str, Any]]:
        return await api.proposals(status)

    async def local(service: ProposalService) -> list[dict[str, Any]]:
        return await service.list(status)

    listed = _answer(server, token, remote, local)
    if as_json:
        _print_json(listed)
    else:
        _print_list(listed, "no proposals; ask for some with `noetl-agent proposals suggest`")


@proposals_app.command("show")
def proposals_show(
    proposal_id: str = typer.Argument(..., help="An id from `proposals list`."),
    as_json: bool = JSON_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Show a proposal: target, rationale, evidence, decisions and the diff it makes."""
    if _endpoint(server, token) is None:
        _principal().require("viewer", "read policy proposals")

    async def remote(api: AsyncClient) -> dict[str, Any]:
        return await api.proposal(proposal_id)

    async def local(service: ProposalService) -> dict[str, Any]:
        return await service.get(proposal_id)

    item = _answer(server, token, remote, local)
    if as_json:
        _print_json(item)
    else:
        _print_proposal(item)


def _decide(
    proposal_id: str,
    approved: bool,
    comment: str | None,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    if _endpoint(server, token) is None:
        from noetl_agent.decision_rules import require_decider
        from noetl_agent.errors import Forbidden
        from noetl_agent.proposals import DECIDE

        try:
            require_decider(_principal(), DECIDE)
        except Forbidden as exc:
            raise _fail(str(exc), 1) from None

    async def remote(api: AsyncClient) -> dict[str, Any]:
        return await api.decide_proposal(proposal_id, approved=approved, comment=comment)

    async def local(service: ProposalService) -> dict[str, Any]:
        return await service.decide(proposal_id, _principal(), approved, comment)

    item = _answer(server, token, remote, local)
    if as_json:
        _print_json(item)
        return
    verb = "approved" if approved else "rejected"
    line = f"{verb} {item['id']}: {item['status']}"
    if item["status"] == "applied":
        line += f"; {item['target']['playbook']} version {item['applied_version']} is in use"
    elif item["status"] == "pending":
        line += f" ({item['approvals']}/{item['quorum']} approvals)"
    out.print(line)


@proposals_app.command("approve")
def proposals_approve(
    proposal_id: str = typer.Argument(..., help="An id from `proposals list`."),
    comment: str | None = typer.Option(None, "--comment", help="Why (kept in the log)."),
    as_json: bool = JSON_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Approve a proposal; at quorum its patch becomes a new version of the playbook."""
    _decide(proposal_id, True, comment, as_json, server, token)


@proposals_app.command("reject")
def proposals_reject(
    proposal_id: str = typer.Argument(..., help="An id from `proposals list`."),
    comment: str = typer.Option(..., "--comment", help="Why (required, kept in the log)."),
    as_json: bool = JSON_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Reject a proposal (it comes back only with more evidence)."""
    _decide(proposal_id, False, comment, as_json, server, token)


__all__ = ["proposals_app"]
