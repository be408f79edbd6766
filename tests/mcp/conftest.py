"""Fixtures of the MCP tests: the server over a fresh embedded stack, reached in process
with the SDK's ``Client``, and playbooks that succeed, fail, pause and flake."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_server.server import build_server
from mcp_server.services import Services, embedded_services
from mcp_server.settings import McpSettings

REVIEW_URL = "http://review.test:8080"

HELLO = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: hello, path: mcp/hello, description: Greet someone by name}
workload: {name: world}
workflow:
  - step: start
    tool:
      kind: python
      code: |
        def main(name):
            return {"greeting": f"hello {name}"}
      input: {name: "{{ name }}"}
"""

FAILING = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: load_orders, path: mcp/load_orders, description: Load orders into the warehouse}
workflow:
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: load}]}
  - step: load
    tool:
      kind: python
      code: |
        def main():
            raise ConnectionRefusedError("could not connect to the warehouse at db:5432")
"""

GATE = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: gate, path: mcp/gate}
workflow:
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: review}]}
  - step: review
    tool: {kind: approval, prompt: "Ship it?"}
    next:
      arcs:
        - {step: ship, when: "{{ review.approved }}"}
        - {step: drop}
  - step: ship
    tool: {kind: noop}
  - step: drop
    tool: {kind: noop}
"""

INVALID = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: broken, path: mcp/broken}
workflow:
  - step: start
    tool: {kind: teleport}
    next: {arcs: [{step: nowhere}]}
"""


Connect = Callable[..., AbstractAsyncContextManager[Client]]


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """The services of a fresh embedded stack under ``tmp_path/home``."""
    async with embedded_services(tmp_path / "home", review_url=REVIEW_URL) as opened:
        yield opened


@pytest.fixture
def connect(services: Services) -> Connect:
    """``connect(settings=McpSettings())``: a client connected in process to a server
    built over the test's services with those settings. Used as ``async with`` inside
    the test: the client's task group must close in the task that opened it."""

    @asynccontextmanager
    async def open_client(settings: McpSettings | None = None) -> AsyncIterator[Client]:
        server = build_server(services, settings or McpSettings())
        async with Client(server) as client:
            yield client

    return open_client


async def call(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> Any:
    """The structured result of a tool call that must succeed."""
    result = await client.call_tool(tool, arguments or {})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def refused(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> str:
    """The message of a tool call that must come back as a tool error."""
    result = await client.call_tool(tool, arguments or {})
    assert result.is_error, result.structured_content
    return "\n".join(getattr(block, "text", "") for block in result.content)
