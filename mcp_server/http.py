"""The streamable HTTP transport for ``/mcp`` of the API server (mounted by
:mod:`mcp_server.mount`).

:func:`build_http` builds the MCP server over the API app's own services (engine,
proposals, search history) and the SDK's streamable HTTP app for it.

Every request needs a bearer token of the API server's token store (401 without); the
session is bound to that principal. Host checking (DNS rebinding protection) accepts the
names the server is really reached by: the loopback names when it listens on loopback;
its host name and fully qualified name (and loopback) when it listens on all interfaces;
the address it listens on otherwise; plus ``NOETL_MCP_ALLOWED_HOSTS``.
"""

from __future__ import annotations

import socket

from fastapi import FastAPI
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from mcp_server.auth import TokenPrincipals
from mcp_server.server import NoetlMCPServer, build_server
from mcp_server.services import app_services
from mcp_server.settings import McpSettings

PATH = "/mcp"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
WILDCARDS = ("0.0.0.0", "::", "")


def host_names(host: str) -> list[str]:
    """The names a server listening on ``host`` is reached by (without ports)."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return list(LOOPBACK)
    if host in WILDCARDS:
        names = [socket.gethostname(), socket.getfqdn(), *LOOPBACK]
        return list(dict.fromkeys(name for name in names if name))
    return [f"[{host}]" if ":" in host else host]


def transport_security(host: str, settings: McpSettings) -> TransportSecuritySettings:
    """Host and Origin checking for a server listening on ``host`` (any port)."""
    names = host_names(host)
    hosts = [f"{name}:*" for name in names] + list(settings.allowed_hosts)
    origins = [f"{scheme}://{name}:*" for name in names for scheme in ("http", "https")]
    origins += [f"http://{extra}" for extra in settings.allowed_hosts]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def public_url(host: str, port: int) -> str:
    """The server's own URL, by the first name it is reached by."""
    return f"http://{host_names(host)[0]}:{port}"


def build_http(app: FastAPI, host: str, port: int) -> tuple[NoetlMCPServer, Starlette]:
    """The MCP server over ``app``'s services (listening on ``host``:``port``) and its
    streamable HTTP app answering at ``/mcp``; run ``server.session_manager.run()``
    while serving."""
    settings = McpSettings.from_env()
    url = public_url(host, port)
    services = app_services(app.state, review_url=settings.review_url or url)
    server = build_server(
        services, settings, token_verifier=TokenPrincipals(app.state.tokens), issuer_url=url
    )
    asgi = server.streamable_http_app(
        streamable_http_path=PATH, transport_security=transport_security(host, settings), host=host
    )
    return server, asgi
