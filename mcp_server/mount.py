"""Mounting MCP at ``/mcp`` of the API server, without delaying its start.

:func:`mount` is a server extension (entry point group ``noetl_agent.server_extensions``):
`noetl-agent server` calls it with its app before serving and keeps the returned context
open while it serves. It adds the ``/mcp`` route at once and builds the MCP server in the
background (the SDK takes a second or more to import, in a thread so the API answers
meanwhile), then runs the SDK's session manager for as long as the server runs
(uvicorn's lifespan is off there). Until the MCP server is ready, ``/mcp`` waits for it
(up to ``READY_TIMEOUT``), then answers 503. This module imports nothing heavy.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)
PATH = "/mcp"
READY_TIMEOUT = 60.0  # seconds a request to /mcp waits for the MCP server to be built


class McpEndpoint:
    """The ``/mcp`` ASGI endpoint: the SDK's streamable HTTP app once it is built."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self._asgi: ASGIApp | None = None
        self._failure: str | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Build the MCP server and serve sessions until :meth:`stop`."""
        try:
            transport = await asyncio.to_thread(importlib.import_module, "mcp_server.http")
            server, asgi = transport.build_http(self.app, self.host, self.port)
            async with server.session_manager.run():
                self._asgi = asgi
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:  # the API goes on; /mcp says why it cannot serve
            logger.exception("the MCP server could not start")
            self._failure = f"the MCP server could not start: {exc}"
        finally:
            self._asgi = None
            self._ready.set()

    def stop(self) -> None:
        self._stop.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), READY_TIMEOUT)
        if self._asgi is None:
            reason = self._failure or "the MCP server is starting or stopping; try again"
            await PlainTextResponse(reason, status_code=503)(scope, receive, send)
            return
        await self._asgi(scope, receive, send)


@asynccontextmanager
async def mount(app: FastAPI, host: str, port: int) -> AsyncIterator[None]:
    """Serve MCP at ``/mcp`` of ``app`` (listening on ``host``:``port``) while open."""
    endpoint = McpEndpoint(app, host, port)
    app.router.routes.append(Route(PATH, endpoint=endpoint))
    task = asyncio.create_task(endpoint.run(), name="mcp")
    try:
        yield
    finally:
        endpoint.stop()
        await task
