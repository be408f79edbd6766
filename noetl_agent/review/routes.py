"""The review pages and their forms.

GET pages need a logged-in session (else they send the browser to the login form); every
POST checks the session, then its CSRF token, then the principal's right to decide, and
decides through the same services and rules as the API (``ProposalService.decide``,
``require_approval_decider`` and ``Engine.decide_approval``): a human approver only,
never the proposer, quorum and expiry. A POST answers 303 to the page that shows the
result, or the page again with the error when the form needs correcting.

    /review/                          pending and decided proposals and approvals
    /review/login  (GET, POST)        exchange an API token for a session cookie
    /review/logout (POST)
    /review/proposals/{id}            a proposal with its evidence; decision form
    /review/proposals/{id}/decision   (POST) approve or reject
    /review/approvals/{id}/decision   (POST) approve or reject a workflow approval
    /review/executions/{id}           an execution's steps as a timeline, and its events
    /review/static/review.css
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any
from urllib.parse import quote

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.core import events as ev
from engine.ports import EventStore
from learning.policy.history import timestamp_seconds
from noetl_agent.decision_rules import require_approval_decider, require_decider
from noetl_agent.errors import Forbidden, Unauthorized
from noetl_agent.executions import ExecutionView, pending_approvals, summarize
from noetl_agent.proposals import DECIDE, ProposalRefused
from noetl_agent.review import evidence, svg
from noetl_agent.review.sessions import (
    COOKIE,
    COOKIE_PATH,
    LOGIN_COOKIE,
    LOGIN_SECONDS,
    SESSION_SECONDS,
)
from noetl_agent.review.web import (
    Visitor,
    checked_post,
    field_text,
    form,
    redirect,
    render,
    services,
    visitor,
)

ROOT = COOKIE_PATH
OPEN = ("pending", "approved")  # approved: quorum reached, application to be retried
RECENT_EXECUTIONS = 25  # scanned for decided workflow approvals
MAX_EVENTS = 2000
APPROVE_WORKFLOWS = "approve or reject workflow decisions"
CSS = files("noetl_agent.review").joinpath("static", "review.css").read_text("utf-8")
NEED_COMMENT = (
    "A rejection needs a comment saying why: write it in the comment box and press "
    "Reject again (the learners judge their next proposal against it)."
)


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


# ---------------------------------------------------------------------- login


def _next(value: str | None) -> str:
    """Where to go after logging in: a review page, never another site."""
    if value and value.startswith(f"{ROOT}/") and value.isprintable() and "\\" not in value:
        return value
    return f"{ROOT}/"


def _to_login(request: Request) -> Response:
    """Send a logged-out browser to the login form, to come back here afterwards."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if here == f"{ROOT}/":
        return redirect(f"{ROOT}/login")
    return redirect(f"{ROOT}/login?next={quote(here, safe='/')}")


def _login_page(
    request: Request, error: str | None = None, status: int = 200, then: str | None = None
) -> Response:
    nonce, cookie = services(request).sealer.login_nonce()
    then = _next(then or request.query_params.get("next"))
    response = render(
        request, "login.html", None, status=status, nonce=nonce, error=error, then=then
    )
    _set_cookie(request, response, LOGIN_COOKIE, cookie, LOGIN_SECONDS)
    return response


async def login_form(request: Request) -> Response:
    if await visitor(request) is not None:
        return redirect(_next(request.query_params.get("next")))
    return _login_page(request)


async def login(request: Request) -> Response:
    fields = await form(request)
    found = services(request)
    then = _next(fields.get("next"))
    if not found.sealer.check_login_nonce(
        request.cookies.get(LOGIN_COOKIE), fields.get("csrf", "")
    ):
        return _login_page(
            request,
            "The login form expired or came from another site: enter the token again in "
            "this fresh form.",
            403,
            then,
        )
    token = field_text(fields, "token")
    if not token:
        return _login_page(request, "Enter an API token (`noetl-agent tokens create`).", 422, then)
    try:
        principal = await found.tokens.authenticate(token)
    except Unauthorized:
        return _login_page(
            request,
            "That token is unknown or revoked. Copy it again exactly, or create one with "
            "`noetl-agent tokens create --name YOU --kind human --role approver`.",
            401,
            then,
        )
    if not principal.has("viewer"):
        return _login_page(
            request,
            f"The token of '{principal.name}' has no role that may read the review queue "
            f"(roles: {', '.join(sorted(principal.roles))}); use a token with the viewer, "
            "approver, operator or admin role.",
            403,
            then,
        )
    cookie, _ = found.sealer.seal(token)
    response = redirect(then)
    _set_cookie(request, response, COOKIE, cookie, SESSION_SECONDS)
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


async def logout(request: Request) -> Response:
    await checked_post(request)
    response = redirect(f"{ROOT}/login")
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


# ---------------------------------------------------------------------- the queue


async def decided_approvals(
    events: EventStore, limit: int = RECENT_EXECUTIONS
) -> list[dict[str, Any]]:
    """Workflow approvals decided in the ``limit`` most recent executions, newest first."""
    decided = []
    for summary in await events.list_executions(limit=limit):
        for event in await events.read(summary.execution_id):
            if event.event_type == ev.APPROVAL_DECIDED:
                payload = event.payload
                decided.append(
                    {
                        "approval_id": payload.get("approval_id"),
                        "execution_id": event.execution_id,
                        "playbook": summary.playbook_path,
                        "step": event.entity_id,
                        "approved": bool(payload.get("approved")),
                        "decided_by": payload.get("decided_by"),
                        "comment": payload.get("comment"),
                        "at": event.timestamp,
                    }
                )
    return sorted(decided, key=lambda item: str(item["at"]), reverse=True)


async def _queue_page(
    request: Request, who: Visitor, error: str | None = None, status: int = 200
) -> Response:
    found = services(request)
    proposals = await found.proposals.list()
    return render(
        request,
        "queue.html",
        who,
        status=status,
        error=error,
        pending=[p for p in proposals if p["status"] in OPEN],
        decided=[p for p in proposals if p["status"] not in OPEN],
        approvals=[
            {**item.to_dict(), "refused": _refusal(who, item.approvers)}
            for item in await pending_approvals(found.engine.events)
        ],
        decided_approvals=await decided_approvals(found.engine.events),
    )


def _refusal(who: Visitor, approvers: list[str]) -> str | None:
    """Why ``who`` may not decide a workflow approval reserved for ``approvers``."""
    try:
        require_decider(who.principal, APPROVE_WORKFLOWS, approvers)
    except Forbidden as exc:
        return str(exc)
    return None


async def queue(request: Request) -> Response:
    who = await visitor(request)
    if who is None:
        return _to_login(request)
    return await _queue_page(request, who)


# ---------------------------------------------------------------------- proposals


def _why_read_only(who: Visitor, proposal: dict[str, Any]) -> str | None:
    """Why ``who`` sees no decision buttons on ``proposal`` (None: they may decide)."""
    principal = who.principal
    if proposal["status"] not in OPEN:
        return f"This proposal is {proposal['status']}; it can no longer be decided."
    if principal.kind != "human":
        return f"Read-only: '{principal.name}' is an agent; only a human approver decides."
    if not principal.has("approver"):
        return (
            f"Read-only: '{principal.name}' has no approver role "
            f"(roles: {', '.join(sorted(principal.roles))})."
        )
    if principal.name == proposal["proposed_by"].get("name"):
        return f"'{principal.name}' proposed this; another approver must decide it."
    if any(d["decided_by"] == principal.name and d["approved"] for d in proposal["decisions"]):
        left = proposal["quorum"] - proposal["approvals"]
        return f"You approved this already; it needs {left} more distinct approver(s)."
    return None


async def _proposal_page(
    request: Request,
    who: Visitor,
    proposal_id: str,
    error: str | None = None,
    status: int = 200,
    comment: str = "",
) -> Response:
    found = services(request)
    proposal = await found.proposals.get(proposal_id)
    shown = await evidence.gather(proposal, found.proposals)
    return render(
        request,
        "proposal.html",
        who,
        status=status,
        p=proposal,
        evidence=shown,
        read_only=_why_read_only(who, proposal),
        error=error,
        comment=comment,
    )


async def proposal(request: Request) -> Response:
    who = await visitor(request)
    if who is None:
        return _to_login(request)
    return await _proposal_page(request, who, request.path_params["proposal_id"])


def _decision(fields: dict[str, str]) -> bool:
    choice = fields.get("decision", "")
    if choice not in ("approve", "reject"):
        raise ProposalRefused(
            f"the decision must be 'approve' or 'reject', not {choice!r}: press one of the "
            "two buttons"
        )
    return choice == "approve"


async def decide_proposal(request: Request) -> Response:
    who, fields = await checked_post(request)
    proposal_id = request.path_params["proposal_id"]
    who.principal.require_human_approver(DECIDE)
    approved = _decision(fields)
    comment = field_text(fields, "comment")
    if not approved and not comment:
        return await _proposal_page(request, who, proposal_id, NEED_COMMENT, 422)
    try:
        await services(request).proposals.decide(
            proposal_id, who.principal, approved, comment or None
        )
    except ProposalRefused as exc:
        return await _proposal_page(request, who, proposal_id, str(exc), 422, comment)
    return redirect(f"{ROOT}/proposals/{quote(proposal_id, safe='')}")


# ---------------------------------------------------------------------- approvals


async def decide_approval(request: Request) -> Response:
    who, fields = await checked_post(request)
    approval_id = request.path_params["approval_id"]
    engine = services(request).engine
    await require_approval_decider(engine.events, approval_id, who.principal)
    approved = _decision(fields)
    comment = field_text(fields, "comment")
    if not approved and not comment:
        return await _queue_page(request, who, f"{approval_id}: {NEED_COMMENT}", 422)
    await engine.decide_approval(
        approval_id, approved=approved, decided_by=who.principal.name, comment=comment or None
    )
    return redirect(f"{ROOT}/#decided-approvals")


# ---------------------------------------------------------------------- executions


def _spans(view: ExecutionView, events: list[ev.Event]) -> list[svg.Span]:
    """Step runs as seconds from the execution's first event (running ones to its last)."""
    times = [t for t in (timestamp_seconds(e.timestamp) for e in events) if t is not None]
    if not times:
        return []
    start, last = min(times), max(times)
    spans = []
    for run in view.steps:
        begun = timestamp_seconds(run.started_at)
        ended = timestamp_seconds(run.finished_at) or last
        if begun is None:
            continue
        spans.append(svg.Span(run.step, begun - start, ended - start, run.status))
    return spans


async def execution(request: Request) -> Response:
    who = await visitor(request)
    if who is None:
        return _to_login(request)
    events_store = services(request).engine.events
    execution_id = request.path_params["execution_id"]
    summary = await events_store.get_execution(execution_id)
    events = await events_store.read(execution_id)
    view = summarize(summary, events)
    plot = svg.timeline(_spans(view, events), f"Steps of {execution_id} over time")
    return render(
        request,
        "execution.html",
        who,
        x=view.to_dict(),
        timeline=Markup(plot),
        events=events[:MAX_EVENTS],
        more_events=max(len(events) - MAX_EVENTS, 0),
    )


async def stylesheet(request: Request) -> Response:
    return Response(CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


ROUTES = [
    Route("/", queue, methods=["GET"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/proposals/{proposal_id}", proposal, methods=["GET"]),
    Route("/proposals/{proposal_id}/decision", decide_proposal, methods=["POST"]),
    Route("/approvals/{approval_id:path}/decision", decide_approval, methods=["POST"]),
    Route("/executions/{execution_id}", execution, methods=["GET"]),
    Route("/static/review.css", stylesheet, methods=["GET"]),
]
