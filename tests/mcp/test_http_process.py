"""Streamable HTTP at /mcp of a real `noetl-agent server` process: bearer tokens, host
checking, and a session through the SDK's HTTP client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.mcp.conftest import HELLO, call, refused
from tests.processes import cli, serve, stop

pytestmark = pytest.mark.slow

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _token(env: dict[str, str], name: str, kind: str, *roles: str) -> str:
    options = [arg for role in roles for arg in ("--role", role)]
    created = cli(env, "tokens", "create", "--name", name, "--kind", kind, *options)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


@asynccontextmanager
async def _session(url: str, token: str) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    async with http, Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
        yield client


async def test_a_session_over_streamable_http(tmp_path):
    env = dict(os.environ, NOETL_HOME=str(tmp_path / "home"))
    env.pop("NOETL_SERVER_URL", None)
    operator = _token(env, "ci-bot", "agent", "operator")
    viewer = _token(env, "vic", "human", "viewer")
    server, url = serve(env, tmp_path / "server.log")
    try:
        # No token, a token the server does not know, a Host it is not reached by.
        anonymous = httpx.post(f"{url}/mcp", json=INITIALIZE, headers=ACCEPT, timeout=10)
        assert anonymous.status_code == 401
        assert "Bearer" in anonymous.headers.get("www-authenticate", "")
        unknown = httpx.post(
            f"{url}/mcp",
            json=INITIALIZE,
            headers={**ACCEPT, "Authorization": "Bearer nope"},
            timeout=10,
        )
        assert unknown.status_code == 401
        rebound = httpx.post(
            f"{url}/mcp",
            json=INITIALIZE,
            headers={**ACCEPT, "Authorization": f"Bearer {operator}", "Host": "evil.test"},
            timeout=10,
        )
        assert rebound.status_code == 421

        async with _session(url, operator) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert {"register_playbook", "execute_playbook", "suggest_policies"} <= names
            await call(client, "register_playbook", {"yaml": HELLO})
            messages: list[str | None] = []
            reported = anyio.Event()

            async def on_progress(
                progress: float, total: float | None, message: str | None
            ) -> None:
                messages.append(message)
                reported.set()

            result = await client.call_tool(
                "execute_playbook",
                {"path": "mcp/hello", "workload": {"name": "http"}},
                progress_callback=on_progress,
            )
            run = result.structured_content
            assert not result.is_error and run is not None, result.content
            assert run["result"] == {"greeting": "hello http"}
            with anyio.fail_after(10):  # notifications may be handled after the result
                await reported.wait()
            assert messages == ["step start success"]
            shown = await call(client, "get_execution", {"execution_id": run["execution_id"]})
            assert shown["status"] == "completed"
            cancelled = await refused(
                client, "cancel_execution", {"execution_id": run["execution_id"]}
            )
            assert "already finished" in cancelled

        async with _session(url, viewer) as client:
            listed = await call(client, "list_playbooks")
            assert [p["path"] for p in listed["playbooks"]] == ["mcp/hello"]
            message = await refused(client, "register_playbook", {"yaml": HELLO})
            assert "agent principal 'vic'" in message and "operator role" in message
            review = await refused(client, "request_review", {"proposal_id": "p-none-1"})
            assert "list_proposals" in review

        # The API itself still answers as before, beside /mcp.
        api = httpx.get(
            f"{url}/api/executions/{run['execution_id']}",
            headers={"Authorization": f"Bearer {viewer}"},
            timeout=10,
        )
        assert api.status_code == 200 and api.json()["status"] == "completed"
    finally:
        assert stop(server) == 0, (tmp_path / "server.log").read_text()
