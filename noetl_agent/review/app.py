"""The review queue as an ASGI app mounted at ``/review`` of the API server.

It is a Starlette app of its own so that its errors are HTML pages (the API's are problem
documents) and its pages stay out of the OpenAPI description. It reads and decides
through the API app's engine, token store and proposal service, so both see one state.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from engine.errors import NoetlError
from noetl_agent.api.problems import kind_of
from noetl_agent.errors import Unauthorized
from noetl_agent.review.routes import ROOT, ROUTES
from noetl_agent.review.sessions import SessionSealer, session_key
from noetl_agent.review.web import FormTooLarge, Services, Visitor, error_page, visitor

logger = logging.getLogger(__name__)


async def _visitor_or_none(request: Request) -> Visitor | None:
    try:
        return await visitor(request)
    except NoetlError:  # the token store failed: show the error without a session
        return None


async def _on_noetl_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NoetlError)
    status = 401 if isinstance(exc, Unauthorized) else kind_of(exc).status
    who = None if status == 401 else await _visitor_or_none(request)
    return error_page(request, status, str(exc), who)


async def _on_bad_form(request: Request, exc: Exception) -> Response:
    return error_page(request, 400, str(exc))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 404:
        detail = f"there is no review page at {request.url.path}"
    elif status == 405:
        detail = f"{request.method} is not allowed at {request.url.path}; use the page's forms"
    else:
        detail = str(exc.detail)
    return error_page(request, status, detail, await _visitor_or_none(request))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_page(request, 500, "the server failed unexpectedly while showing this page")


def create_review_app(services: Services) -> Starlette:
    """The review pages over ``services``."""
    review = Starlette(
        routes=ROUTES,
        exception_handlers={
            NoetlError: _on_noetl_error,
            FormTooLarge: _on_bad_form,
            StarletteHTTPException: _on_http_error,
            Exception: _on_unexpected,
        },
    )
    review.state.services = services
    return review


def mount(app: FastAPI, *, secret: str | None = None) -> None:
    """Serve the review queue at ``/review`` of ``app`` (a ``create_app`` app, whose
    engine, tokens and proposals it uses); ``secret`` seals the session cookies (default
    ``$NOETL_REVIEW_SECRET``, else a random key per process)."""
    services = Services(
        engine=app.state.engine,
        tokens=app.state.tokens,
        proposals=app.state.proposals,
        sealer=SessionSealer(session_key(secret)),
    )
    app.mount(ROOT, create_review_app(services), name="review")
