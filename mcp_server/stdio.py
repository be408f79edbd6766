"""The stdio transport: ``noetl-agent mcp`` serves the embedded stack of ``$NOETL_HOME``
to one assistant over stdin and stdout, as the local agent principal.

Start-up opens the SQLite file and builds the server, nothing more: the embedding model,
the analytics store and any LLM load on the first call that needs them. Executions
started here run in this process; ones still running when the assistant disconnects
stay ``running`` in the log, and `noetl-agent resume` (or a server) finishes them.
"""

from __future__ import annotations

from pathlib import Path

from mcp_server.server import build_server
from mcp_server.services import embedded_services
from mcp_server.settings import McpSettings, stdio_review_url


async def serve_stdio(home: Path | None = None, settings: McpSettings | None = None) -> None:
    """Serve MCP over stdio until the client closes stdin."""
    settings = settings or McpSettings.from_env()
    async with embedded_services(home, review_url=stdio_review_url(settings)) as services:
        server = build_server(services, settings)
        await server.run_stdio_async()
