"""What routes get injected: the engine, the app's metrics and feed, the command store
of the distributed mode, and the principal checked against the role a route needs.

Every dependency is ``async``: FastAPI runs a plain ``def`` dependency in a worker thread,
a thread hop per dependency and request for what is an attribute lookup."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.runtime.embedded import Engine
from noetl_agent.api.feed import EventFeed
from noetl_agent.api.metrics import Metrics
from noetl_agent.errors import Forbidden, Unauthorized
from noetl_agent.principals import Principal, Role

if TYPE_CHECKING:
    from engine.adapters.postgres.commands import Claim, Holder


class CommandLeases(Protocol):
    """What the API needs of the command store (``PostgresCommandStore``)."""

    async def claim(self, command_id: str, worker_id: str, lease_seconds: float) -> Claim: ...

    async def heartbeat(
        self, command_id: str, worker_id: str, lease_seconds: float
    ) -> datetime: ...

    async def held(self, command_id: str, worker_id: str) -> dict[str, Any]: ...

    async def holders(self, command_ids: Iterable[str]) -> dict[str, Holder]: ...

    async def complete(self, *command_ids: str) -> int: ...

    async def counts(self) -> dict[tuple[str, str], int]: ...


# Checking happens in BearerAuth; this only declares the scheme in the OpenAPI document.
_bearer = HTTPBearer(auto_error=False, description="An API token from `noetl-agent tokens create`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


async def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def _feed(request: Request) -> EventFeed:
    feed: EventFeed = request.app.state.feed
    return feed


async def _commands(request: Request) -> CommandLeases | None:
    commands: CommandLeases | None = request.app.state.commands
    return commands


EngineDep = Annotated[Engine, Depends(_engine)]
CommandsDep = Annotated[CommandLeases | None, Depends(_commands)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
FeedDep = Annotated[EventFeed, Depends(_feed)]


def _authenticated(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise Unauthorized("no authenticated principal; send `Authorization: Bearer TOKEN`")
    return principal


def allow(role: Role, action: str) -> Callable[[Request, Credentials], Awaitable[Principal]]:
    """A dependency giving the caller, after checking it holds ``role`` (403 if not)."""

    async def check(request: Request, _: Credentials) -> Principal:
        principal = _authenticated(request)
        principal.require(role, action)
        return principal

    return check


def human_approver(action: str) -> Callable[[Request, Credentials], Awaitable[Principal]]:
    """A dependency giving the caller, after checking it is a human approver (403 if not)."""

    async def check(request: Request, _: Credentials) -> Principal:
        principal = _authenticated(request)
        principal.require_human_approver(action)
        return principal

    return check


def worker_token(action: str) -> Callable[[Request, Credentials], Awaitable[Principal]]:
    """A dependency giving the caller, after checking its token holds the worker role
    itself (403 if not): the admin role, which implies every other, does not count."""

    async def check(request: Request, _: Credentials) -> Principal:
        principal = _authenticated(request)
        if "worker" not in principal.roles:
            raise Forbidden(
                f"{principal.kind} principal '{principal.name}' cannot {action}: it needs the "
                "worker role (held by the token itself; admin tokens never read credential "
                "values)"
            )
        return principal

    return check
