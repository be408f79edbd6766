"""``/mcp`` mounted on the API app in process: it waits for the MCP server, serves it
with bearer tokens, and answers 503 (the API unaffected) when it cannot be built."""

from __future__ import annotations

import socket

import httpx

from engine.runtime.embedded import Engine
from mcp_server.http import transport_security
from mcp_server.mount import mount
from mcp_server.settings import McpSettings
from noetl_agent.api import create_app
from noetl_agent.tokens import MemoryTokenStore
from tests.mcp.test_http_process import ACCEPT, INITIALIZE


async def _client(app) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")


async def test_mcp_is_served_beside_the_api(engine: Engine):
    tokens = MemoryTokenStore()
    token = await tokens.create("bot", "agent", ["operator"])
    app = create_app(engine, tokens)
    async with mount(app, "127.0.0.1", 8080), await _client(app) as http:
        anonymous = await http.post("/mcp", json=INITIALIZE, headers=ACCEPT)
        assert anonymous.status_code == 401
        answer = await http.post(
            "/mcp", json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200, answer.text
        assert '"serverInfo"' in answer.text and "noetl-agent" in answer.text
        assert (await http.get("/health")).status_code == 200


async def test_an_mcp_server_that_cannot_start_answers_503(engine: Engine, monkeypatch):
    monkeypatch.setenv("NOETL_MCP_DISABLED_GROUPS", "everything")
    tokens = MemoryTokenStore()
    token = await tokens.create("bot", "agent", ["operator"])
    app = create_app(engine, tokens)
    async with mount(app, "127.0.0.1", 8080), await _client(app) as http:
        answer = await http.post(
            "/mcp", json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 503
        assert "unknown tool group(s) everything" in answer.text
        assert (await http.get("/health")).status_code == 200


def test_hosts_accepted_are_the_names_the_server_is_reached_by(monkeypatch):
    loopback = transport_security("127.0.0.1", McpSettings())
    assert loopback.allowed_hosts == ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    everywhere = transport_security("0.0.0.0", McpSettings())
    assert f"{socket.gethostname()}:*" in everywhere.allowed_hosts
    assert "127.0.0.1:*" in everywhere.allowed_hosts
    one = transport_security("10.1.2.3", McpSettings())
    assert one.allowed_hosts == ["10.1.2.3:*"]
    monkeypatch.setenv("NOETL_MCP_ALLOWED_HOSTS", "noetl.example.com:443")
    proxied = transport_security("10.1.2.3", McpSettings.from_env())
    assert proxied.allowed_hosts == ["10.1.2.3:*", "noetl.example.com:443"]
    assert "http://noetl.example.com:443" in proxied.allowed_origins
    assert proxied.enable_dns_rebinding_protection is True
