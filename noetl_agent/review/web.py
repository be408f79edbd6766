"""What every review page shares: the services it reads, the logged-in principal, the
Jinja2 templates, form parsing and the error page.

Templates are autoescaped; only the server-made SVG plots are inserted as markup. An
error page always says what is wrong and how to fix it: the errors of the services do
already, and ``HINTS`` adds the next step for each status.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from noetl_agent.errors import Forbidden, Unauthorized
from noetl_agent.principals import Principal
from noetl_agent.review.sessions import COOKIE, COOKIE_PATH, Session, SessionSealer, csrf_matches

if TYPE_CHECKING:
    from engine.runtime.embedded import Engine
    from noetl_agent.proposals import ProposalService
    from noetl_agent.tokens import TokenStore

MAX_FORM_BYTES = 64 * 1024
# Pages hold decisions and session-bound forms: never cached, framed, or sent anywhere
# else; they run no script at all.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
HINTS: dict[int, str] = {
    400: "Check the form and submit it again.",
    401: "Log in with an API token (create one with `noetl-agent tokens create`).",
    403: "Ask an admin for a token with the role this needs, or log in as someone who has it.",
    404: "Check the link, or go back to the review queue and pick the item from there.",
    409: "Reload the review queue to see where the item stands now.",
    413: "Send a shorter comment.",
    422: "Correct the form and submit it again.",
    500: "Try again; if it keeps failing, the server log has the details.",
    503: "Try again in a moment; the server log says which store failed.",
}


@dataclass(frozen=True, slots=True)
class Services:
    """What the review pages read and decide through: the same services as the API."""

    engine: Engine
    tokens: TokenStore
    proposals: ProposalService
    sealer: SessionSealer


@dataclass(frozen=True, slots=True)
class Visitor:
    """A logged-in browser: its principal and session."""

    principal: Principal
    session: Session

    @property
    def can_decide(self) -> bool:
        """Whether decision buttons are shown: a human with the approver role."""
        return self.principal.kind == "human" and self.principal.has("approver")


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def _path(value: Any) -> str:
    return quote(str(value), safe="/")


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_env = Environment(
    loader=PackageLoader("noetl_agent.review", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["path"] = _path
_env.filters["short"] = _short


def render(
    request: Request,
    template: str,
    visitor: Visitor | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """``template`` rendered for ``visitor`` (None when logged out)."""
    html = _env.get_template(template).render(
        root=COOKIE_PATH,
        visitor=visitor,
        principal=visitor.principal if visitor else None,
        csrf=visitor.session.csrf if visitor else "",
        can_decide=visitor.can_decide if visitor else False,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def error_page(
    request: Request, status: int, detail: str, visitor: Visitor | None = None
) -> HTMLResponse:
    """The error page: what is wrong (``detail``) and how to fix it."""
    response = render(
        request,
        "error.html",
        visitor,
        status=status,
        status_code=status,
        detail=detail,
        hint=HINTS.get(status, HINTS[400] if status < 500 else HINTS[500]),
    )
    if status == 401:
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


async def form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form (the first value of each)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise FormTooLarge(f"the form is larger than {MAX_FORM_BYTES // 1024} KiB")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormTooLarge(f"the form cannot be read: {exc}") from exc
    return {key: values[0] for key, values in fields.items()}


class FormTooLarge(ValueError):
    """A form body the page does not accept (too large, not UTF-8, too many fields)."""


async def visitor(request: Request) -> Visitor | None:
    """The logged-in visitor, or None: the session cookie must open and its token must
    still authenticate (a revoked token ends the session)."""
    found = services(request)
    session = found.sealer.open(request.cookies.get(COOKIE))
    if session is None:
        return None
    try:
        principal = await found.tokens.authenticate(session.token)
    except Unauthorized:
        return None
    return Visitor(principal, session)


async def require_visitor(request: Request) -> Visitor:
    """The visitor; ``Unauthorized`` when nobody is logged in."""
    found = await visitor(request)
    if found is None:
        raise Unauthorized(
            "you are not logged in, or your session ended (it lasts 12 hours, and ends "
            "when its token is revoked or the server restarts without NOETL_REVIEW_SECRET)"
        )
    return found


async def checked_post(request: Request) -> tuple[Visitor, dict[str, str]]:
    """The visitor and form of a state-changing POST, after the CSRF check
    (``Unauthorized`` when logged out, ``Forbidden`` when the CSRF token is wrong)."""
    found = await require_visitor(request)
    fields = await form(request)
    if not csrf_matches(found.session, fields.get("csrf", "")):
        raise Forbidden(
            "the form's CSRF token is missing or does not match your session: the form "
            "came from another site or an older session; reload the page and submit again"
        )
    return found, fields


def field_text(fields: Mapping[str, str], name: str) -> str:
    return fields.get(name, "").strip()


def redirect(location: str) -> Response:
    """303 See Other: a POST's answer, so reloading does not post again."""
    return Response(status_code=303, headers={"Location": location})
