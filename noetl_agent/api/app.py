"""The API application factory.

``create_app(engine, tokens)`` wires the routes to one engine: requests pass the body
limit (413), then bearer authentication for everything under ``/api`` (401), then the
route's role check (403); every error leaves as a problem document. The app subscribes
its metrics and long-poll feed to the engine's event stream.
"""

from __future__ import annotations

from fastapi import FastAPI

from engine.runtime.embedded import Engine
from noetl_agent.api import (
    problems,
    routes_approvals,
    routes_catalog,
    routes_events,
    routes_executions,
    routes_health,
)
from noetl_agent.api.feed import EventFeed
from noetl_agent.api.metrics import Metrics
from noetl_agent.api.middleware import DEFAULT_MAX_BODY_BYTES, BearerAuth, BodyLimit
from noetl_agent.tokens import TokenStore

DESCRIPTION = """Register, run and inspect playbooks; decide workflow approvals.

Every `/api` call needs `Authorization: Bearer TOKEN` (`noetl-agent tokens create`).
Roles: viewer reads, operator registers, executes and cancels, approver (a human) decides
approvals, worker reports events, admin does everything. Errors are RFC 9457 problem
documents (`application/problem+json`)."""


def create_app(
    engine: Engine, tokens: TokenStore, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    """An ASGI app serving ``engine``, authenticating with ``tokens`` and refusing request
    bodies over ``max_bytes`` (default 1 MiB)."""
    app = FastAPI(title="noetl-agent", version="0.1.0", description=DESCRIPTION)
    app.state.engine = engine
    app.state.tokens = tokens
    app.state.metrics = Metrics()
    app.state.feed = EventFeed()
    engine.subscribe(app.state.metrics)
    engine.subscribe(app.state.feed)
    for module in (
        routes_catalog,
        routes_executions,
        routes_events,
        routes_approvals,
        routes_health,
    ):
        app.include_router(module.router)
    problems.install(app)
    app.add_middleware(BearerAuth, tokens=tokens)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)  # added last: runs first
    return app
