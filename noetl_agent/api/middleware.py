"""The two checks every request passes before a route sees it, as plain ASGI middleware.

``BodyLimit`` (outermost) refuses a body larger than the limit with 413: at once when
``Content-Length`` says so, without reading a byte, and otherwise as soon as the bytes
read pass the limit (chunked uploads). ``BearerAuth`` resolves the ``Authorization:
Bearer`` token of every ``/api`` request to a principal (``request.state.principal``) or
answers 401; routes then check roles. Doing both here, ahead of FastAPI's body parsing,
means no route can forget authentication and no oversized or anonymous body is parsed.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.errors import StoreError
from noetl_agent.api.problems import (
    REJECTED,
    STORE_UNAVAILABLE,
    BodyTooLarge,
    problem_response,
    too_large,
    unauthorized,
)
from noetl_agent.errors import Unauthorized
from noetl_agent.tokens import TokenStore

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a 413 problem document."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 or more, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                response = problem_response(
                    REJECTED, f"Content-Length {declared!r} is not a number", scope["path"]
                )
                await response(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await too_large(self.max_bytes, scope["path"])(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


class BearerAuth:
    """Authenticate every request under ``prefix`` with a bearer token from ``tokens``."""

    def __init__(self, app: ASGIApp, tokens: TokenStore, prefix: str = "/api") -> None:
        self.app = app
        self.tokens = tokens
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (
            path == self.prefix or path.startswith(self.prefix + "/")
        ):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            response = unauthorized(
                "no bearer token: send `Authorization: Bearer TOKEN`; "
                "create a token with `noetl-agent tokens create`",
                path,
                invalid=False,
            )
        elif scheme.lower() != "bearer" or not token.strip():
            response = unauthorized(
                "the Authorization header must be `Bearer TOKEN`", path, invalid=True
            )
        else:
            try:
                principal = await self.tokens.authenticate(token.strip())
            except Unauthorized as exc:
                response = unauthorized(exc, path, invalid=True)
            except StoreError as exc:
                response = problem_response(STORE_UNAVAILABLE, str(exc), path)
            else:
                scope.setdefault("state", {})["principal"] = principal
                await self.app(scope, receive, send)
                return
        await response(scope, receive, send)
