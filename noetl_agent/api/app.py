"""The API application factory.

``create_app(engine, tokens)`` wires the routes to one engine: requests pass the body
limit (413), then bearer authentication for everything under ``/api`` (401), then the
route's role check (403); every error leaves as a problem document. The app subscribes
its metrics and long-poll feed to the engine's event stream. In the distributed mode
``commands`` is the command store workers claim from, and ``probes`` adds health checks
(the database, NATS).
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI

from engine.adapters.credential_store import CredentialStore
from engine.runtime.embedded import Engine
from noetl_agent.api import (
    problems,
    routes_analytics,
    routes_approvals,
    routes_catalog,
    routes_commands,
    routes_credentials,
    routes_events,
    routes_executions,
    routes_explain,
    routes_generate,
    routes_health,
    routes_learning,
    routes_proposals,
    routes_worker_credentials,
)
from noetl_agent.api.deps import CommandLeases
from noetl_agent.api.feed import EventFeed
from noetl_agent.api.metrics import Metrics
from noetl_agent.api.middleware import DEFAULT_MAX_BODY_BYTES, BearerAuth, BodyLimit
from noetl_agent.api.routes_commands import DEFAULT_LEASE
from noetl_agent.api.routes_health import Probe
from noetl_agent.generation.gate import install_draft_gate
from noetl_agent.history import History
from noetl_agent.proposals import ProposalService
from noetl_agent.review import mount as mount_review
from noetl_agent.tokens import TokenStore

DESCRIPTION = """Register, run and inspect playbooks; decide workflow approvals and policy
proposals.

Every `/api` call needs `Authorization: Bearer TOKEN` (`noetl-agent tokens create`).
Roles: viewer reads, operator registers, executes and cancels, approver (a human) decides
approvals and proposals, worker claims commands and reports events, admin does everything.
Errors are RFC 9457 problem documents (`application/problem+json`)."""


def create_app(
    engine: Engine,
    tokens: TokenStore,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    credentials: CredentialStore | None = None,
    commands: CommandLeases | None = None,
    probes: Mapping[str, Probe] | None = None,
    lease_seconds: float = DEFAULT_LEASE,
    history: History | None = None,
) -> FastAPI:
    """An ASGI app serving ``engine``, authenticating with ``tokens``, managing
    ``credentials`` (``/api/credentials`` answers 503 without) and refusing request
    bodies over ``max_bytes`` (default 1 MiB); ``commands`` and ``probes`` as above, and
    ``lease_seconds`` the claim lease of a worker that names none; ``history`` answers
    the search routes."""
    app = FastAPI(title="noetl-agent", version="0.1.0", description=DESCRIPTION)
    app.state.engine = engine
    app.state.tokens = tokens
    app.state.credentials = credentials
    app.state.commands = commands
    app.state.probes = dict(probes or {})
    app.state.lease_seconds = lease_seconds
    app.state.history = history  # search over execution history (503 without)
    app.state.proposals = ProposalService(engine, history=history)  # the review queue
    app.state.metrics = Metrics()
    app.state.feed = EventFeed()
    engine.subscribe(app.state.metrics)
    engine.subscribe(app.state.feed)
    for module in (
        routes_catalog,
        routes_executions,
        routes_events,
        routes_approvals,
        routes_commands,
        routes_health,
        routes_credentials,
        routes_worker_credentials,
        routes_learning,
        routes_generate,
        routes_explain,
        routes_analytics,
        routes_proposals,
    ):
        app.include_router(module.router)
    install_draft_gate(engine)  # generated drafts that run code wait for a human
    mount_review(app)  # the review queue web page at /review
    problems.install(app)
    app.add_middleware(BearerAuth, tokens=tokens)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)  # added last: runs first
    return app
