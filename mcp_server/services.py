"""What the tools work with: the services of one stack, and who is calling.

:class:`Services` holds the engine, the proposal service, the search history and the
review queue's address of one stack. Over stdio they are the embedded stack of
``$NOETL_HOME`` (:func:`embedded_services`), opened for the life of the process, and the
caller is the local agent principal; over HTTP they are the API server's own
(:func:`app_services`) and the caller is the principal of the request's bearer token.
Heavy parts (the embedding model, the analytics store, the explainer's model) are
opened on first use by the services themselves, never here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from engine.runtime.embedded import Engine
from mcp_server.auth import request_principal
from noetl_agent.config import noetl_home
from noetl_agent.generation.gate import install_draft_gate
from noetl_agent.history import History, embedded_history
from noetl_agent.local import local_engine
from noetl_agent.principals import LOCAL_AGENT, Principal, Role
from noetl_agent.proposals import ProposalService

if TYPE_CHECKING:
    from learning.analytics.service import Analytics
    from noetl_agent.explain import Explainer


@dataclass(eq=False)
class Services:
    """The services of one stack the tools call (see the module docstring)."""

    engine: Engine
    proposals: ProposalService
    history: History | None = None
    review_url: str = "http://127.0.0.1:8080"
    # Index what is new before searching: the embedded stack has no background indexer.
    index_on_read: bool = False
    # Who calls when the transport authenticates nobody (stdio); None demands a token.
    local_principal: Principal | None = LOCAL_AGENT
    _explainer: Explainer | None = field(default=None, init=False)
    _indexing: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def caller(self, ctx: Context[Any, Any], role: Role, action: str) -> Principal:
        """The principal making this request, after checking it holds ``role``.

        Over HTTP the bearer token's principal, always acting as an agent (the MCP
        server is an agent, whoever holds the token); over stdio the local agent.
        Raises ``ToolError`` when nobody is authenticated or the role is missing."""
        principal = self._principal(ctx)
        if not principal.has(role):
            raise ToolError(
                f"agent principal '{principal.name}' cannot {action}: it needs the {role} "
                "role; ask for a token that holds it (`noetl-agent tokens create`)"
            )
        return principal

    def _principal(self, ctx: Context[Any, Any]) -> Principal:
        try:
            request = ctx.request_context.request
        except ValueError:  # called outside a request (a direct call in-process)
            request = None
        principal = request_principal(request) or self.local_principal
        if principal is None:
            raise ToolError(
                "no authenticated principal: send `Authorization: Bearer TOKEN` with a "
                "token from `noetl-agent tokens create`"
            )
        return principal

    async def search_history(self) -> History:
        """The search history, with what is new indexed first on the embedded stack.

        Raises ``ToolError`` when this stack has no search index."""
        if self.history is None:
            raise ToolError(
                "this server has no search index; start it without NOETL_INDEXER=off to "
                "search execution history"
            )
        if self.index_on_read:
            async with self._indexing:  # one indexing pass at a time in this process
                await self.history.index()
        return self.history

    def explainer(self) -> Explainer:
        """The failure explainer of this stack (created on first use)."""
        if self._explainer is None:
            from noetl_agent.explain import Explainer

            self._explainer = Explainer(
                self.engine.events, self.engine.catalog, history=self.history
            )
        return self._explainer

    @asynccontextmanager
    async def analytics(self) -> AsyncIterator[Analytics]:
        """The analytics service, open for one call: chDB locks its folder while open,
        and the CLI and the API may want it between calls."""
        from noetl_agent.analytics import open_analytics

        analytics = await open_analytics(self.engine.events)
        try:
            yield analytics
        finally:
            await asyncio.to_thread(analytics.close)

    def review_link(self, proposal_id: str) -> str:
        """The review queue page of one proposal."""
        return f"{self.review_url.rstrip('/')}/review/proposals/{proposal_id}"


@asynccontextmanager
async def embedded_services(
    home: Path | None = None, *, review_url: str
) -> AsyncIterator[Services]:
    """The services of the embedded stack under ``home`` (default ``$NOETL_HOME``), for
    the local agent, open until the context exits."""
    root = home or noetl_home()
    async with local_engine(root) as engine:
        install_draft_gate(engine)  # generated drafts that run code wait for a human
        history = embedded_history(engine.events, engine.catalog, root)
        yield Services(
            engine,
            ProposalService(engine, history=history),
            history,
            review_url=review_url,
            index_on_read=True,
        )


def app_services(state: Any, *, review_url: str) -> Services:
    """The services of a running API app (its ``app.state``): its engine, proposal
    service and search history; callers must present a bearer token."""
    return Services(
        state.engine,
        state.proposals,
        state.history,
        review_url=review_url,
        local_principal=None,
    )
