"""RFC 9457 problem documents: the one shape of every error the API returns.

A problem document is a JSON object served as ``application/problem+json`` with ``type``
(a URI reference naming the kind of problem), ``title`` (the same for every occurrence of
that kind), ``status``, ``detail`` (this occurrence: what is wrong and what to do) and
``instance`` (the request path). Some kinds add members: ``issues`` (every problem of an
invalid playbook, each with path, line, message, hint), ``errors`` (invalid request
fields), ``limit_bytes`` (oversized bodies) and ``commands`` (a worker's report refused
because its token holds no claim on these commands).

Errors of the engine and the agent layer map to kinds here, and the client maps them back
to the same classes, so code behaves alike against the embedded engine and the server:

    NotFound → 404 not-found            Conflict → 409 conflict
    ClaimNotHeld → 409 conflict (+ commands)
    PlaybookInvalid → 422 playbook-invalid (+ issues)
    Forbidden → 403 forbidden           Unauthorized → 401 unauthorized (WWW-Authenticate)
    TemplateError, ToolConfigError → 422 unprocessable
    StoreError → 503 store-unavailable  other NoetlError → 400 rejected
    malformed JSON → 400 malformed-json invalid fields → 422 invalid-request (+ errors)
    body over the limit → 413 payload-too-large (+ limit_bytes)
    anything unexpected → 500 internal (details only in the server log)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import (
    Conflict,
    NoetlError,
    NotFound,
    PlaybookInvalid,
    StoreError,
    TemplateError,
    ToolConfigError,
)
from noetl_agent.errors import ClaimNotHeld, Forbidden, Unauthorized

logger = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "/problems/"


@dataclass(frozen=True, slots=True)
class ProblemType:
    """One kind of problem: its ``type`` slug, HTTP status and fixed title."""

    slug: str
    status: int
    title: str

    @property
    def uri(self) -> str:
        return TYPE_PREFIX + self.slug


NOT_FOUND = ProblemType("not-found", 404, "Not found")
CONFLICT = ProblemType("conflict", 409, "Conflict with the stored state")
PLAYBOOK_INVALID = ProblemType("playbook-invalid", 422, "The playbook is invalid")
FORBIDDEN = ProblemType("forbidden", 403, "Not allowed for this principal")
UNAUTHORIZED = ProblemType("unauthorized", 401, "A valid bearer token is required")
UNPROCESSABLE = ProblemType("unprocessable", 422, "The request cannot be carried out")
STORE_UNAVAILABLE = ProblemType("store-unavailable", 503, "The store failed")
REJECTED = ProblemType("rejected", 400, "The request was rejected")
MALFORMED_JSON = ProblemType("malformed-json", 400, "The body is not valid JSON")
INVALID_REQUEST = ProblemType("invalid-request", 422, "The request does not match its schema")
PAYLOAD_TOO_LARGE = ProblemType("payload-too-large", 413, "The request body is too large")
INTERNAL = ProblemType("internal", 500, "Internal server error")

PROBLEM_TYPES = {
    kind.slug: kind
    for kind in (
        NOT_FOUND,
        CONFLICT,
        PLAYBOOK_INVALID,
        FORBIDDEN,
        UNAUTHORIZED,
        UNPROCESSABLE,
        STORE_UNAVAILABLE,
        REJECTED,
        MALFORMED_JSON,
        INVALID_REQUEST,
        PAYLOAD_TOO_LARGE,
        INTERNAL,
    )
}

# Documented on every route so the OpenAPI description shows the error shape.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problem statuses a route may return."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        for status in (401, *statuses)
    }


def problem_response(
    kind: ProblemType,
    detail: str,
    instance: str,
    *,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A problem document response of ``kind``."""
    body = {
        "type": kind.uri,
        "title": kind.title,
        "status": kind.status,
        "detail": detail,
        "instance": instance,
        **extensions,
    }
    return JSONResponse(body, status_code=kind.status, headers=headers, media_type=PROBLEM_JSON)


def unauthorized(exc: Unauthorized | str, instance: str, *, invalid: bool) -> JSONResponse:
    """401 with the ``WWW-Authenticate`` challenge RFC 6750 asks for."""
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return problem_response(
        UNAUTHORIZED, str(exc), instance, headers={"WWW-Authenticate": challenge}
    )


class BodyTooLarge(StarletteHTTPException):
    """Raised while a body is read once it has grown past ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(PAYLOAD_TOO_LARGE.status, f"the request body exceeds {limit} bytes")
        self.limit = limit


def too_large(limit: int, instance: str) -> JSONResponse:
    """413 naming the limit, in the detail and as ``limit_bytes``."""
    return problem_response(
        PAYLOAD_TOO_LARGE,
        f"the request body is larger than the limit of {limit} bytes; send less "
        "(split event batches, keep playbooks small) or start the server with a larger "
        "`noetl-agent server --max-body-bytes N`",
        instance,
        limit_bytes=limit,
    )


def kind_of(exc: NoetlError) -> ProblemType:
    """The problem kind of an engine or agent error (most specific class first)."""
    for cls, kind in (
        (PlaybookInvalid, PLAYBOOK_INVALID),
        (NotFound, NOT_FOUND),
        (Conflict, CONFLICT),
        (Forbidden, FORBIDDEN),
        (Unauthorized, UNAUTHORIZED),
        (TemplateError, UNPROCESSABLE),
        (ToolConfigError, UNPROCESSABLE),
        (StoreError, STORE_UNAVAILABLE),
    ):
        if isinstance(exc, cls):
            return kind
    return REJECTED


async def _on_noetl_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NoetlError)
    instance = request.url.path
    if isinstance(exc, Unauthorized):
        return unauthorized(exc, instance, invalid=True)
    if isinstance(exc, PlaybookInvalid):
        issues = [issue.to_dict() for issue in exc.issues]
        return problem_response(PLAYBOOK_INVALID, str(exc), instance, issues=issues)
    if isinstance(exc, ClaimNotHeld):
        return problem_response(CONFLICT, str(exc), instance, commands=exc.commands)
    kind = kind_of(exc)
    if kind is STORE_UNAVAILABLE:
        logger.error("store failure on %s: %s", instance, exc)
    return problem_response(kind, str(exc), instance)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    instance = request.url.path
    for error in errors:
        if error.get("type") == "json_invalid":
            where = error.get("loc", ("body", "?"))[-1]
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            return problem_response(
                MALFORMED_JSON,
                f"the request body is not valid JSON: {reason} at character {where}",
                instance,
            )
    fields = [
        {
            "location": ".".join(str(part) for part in error.get("loc", ())),
            "message": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in errors
    ]
    first = fields[0] if fields else {"location": "body", "message": "invalid"}
    more = f" (and {len(fields) - 1} more)" if len(fields) > 1 else ""
    return problem_response(
        INVALID_REQUEST,
        f"{first['location']}: {first['message']}{more}; see /docs for the request schema",
        instance,
        errors=fields,
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    instance = request.url.path
    if isinstance(exc, BodyTooLarge):
        return too_large(exc.limit, instance)
    if exc.status_code == UNAUTHORIZED.status:
        return unauthorized(str(exc.detail), instance, invalid=False)
    status = HTTPStatus(exc.status_code)
    body = {
        "type": "about:blank",
        "title": status.phrase,
        "status": status.value,
        "detail": str(exc.detail),
        "instance": instance,
    }
    return JSONResponse(body, status.value, headers=exc.headers, media_type=PROBLEM_JSON)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem_response(
        INTERNAL, "the server failed unexpectedly; its log has the details", request.url.path
    )


def install(app: FastAPI) -> None:
    """Make every error of ``app`` a problem document."""
    app.add_exception_handler(NoetlError, _on_noetl_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
