"""One token per kind of principal, for the tests that call the API as each of them.

``PRINCIPALS`` names every combination the authorization rules tell apart (a human or an
agent, with each role); ``create_tokens`` stores one token per name in a token store and
answers the raw tokens by name, to send as ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

from noetl_agent.tokens import TokenStore

# name → (kind, roles)
PRINCIPALS: dict[str, tuple[str, list[str]]] = {
    "viewer": ("human", ["viewer"]),
    "operator": ("agent", ["operator"]),
    "approver": ("human", ["approver"]),
    "agent-approver": ("agent", ["approver"]),
    "worker": ("agent", ["worker"]),
    "admin": ("human", ["admin"]),
    "agent-admin": ("agent", ["admin"]),
}


async def create_tokens(tokens: TokenStore) -> dict[str, str]:
    """Create a token for every principal of ``PRINCIPALS`` in ``tokens``; answer name →
    raw token."""
    return {
        name: await tokens.create(name, kind, roles) for name, (kind, roles) in PRINCIPALS.items()
    }
