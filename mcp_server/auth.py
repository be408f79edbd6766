"""Bearer tokens of the API server, as the SDK's token verifier.

Over HTTP the SDK's bearer middleware asks :class:`TokenPrincipals` about the token of
every request to ``/mcp`` (401 without a valid one) and binds each MCP session to the
principal that opened it. The token store is the API server's own, so a token made with
`noetl-agent tokens create` works for both; the principal's name is the client id and
its roles are the scopes. Tools then act for that principal as an agent
(:meth:`mcp_server.services.Services.caller`).
"""

from __future__ import annotations

from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from noetl_agent.errors import Unauthorized
from noetl_agent.principals import Principal
from noetl_agent.tokens import TokenStore


class TokenPrincipals:
    """Verifies bearer tokens against the API server's token store."""

    def __init__(self, tokens: TokenStore) -> None:
        self.tokens = tokens

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's principal as an access token, or None when it is unknown or
        revoked (the request gets 401). A store that fails raises ``StoreError``."""
        try:
            principal = await self.tokens.authenticate(token)
        except Unauthorized:
            return None
        return AccessToken(
            token=token,
            client_id=principal.name,
            scopes=sorted(principal.roles),
            claims={"kind": principal.kind},
        )


def request_principal(request: Any) -> Principal | None:
    """The principal of an HTTP request the bearer middleware authenticated, always as
    an agent: whoever holds the token, calls through MCP are an agent's (so no path
    through this server can decide approvals or proposals). None without one (stdio,
    in-process)."""
    scope = getattr(request, "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
    if not isinstance(user, AuthenticatedUser):
        return None
    token = user.access_token
    return Principal(token.client_id, "agent", frozenset(token.scopes))
