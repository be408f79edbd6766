"""`noetl-agent mcp`: registered on the CLI through the ``noetl_agent.commands`` entry
point group, so the CLI (in ``noetl_agent``) never imports this package. Importing this
module costs nothing; serving imports the SDK."""

from __future__ import annotations

import asyncio

import typer


def register(app: typer.Typer) -> None:
    """Add the ``mcp`` command to the ``noetl-agent`` app."""

    @app.command("mcp")
    def mcp() -> None:
        """Serve the tools, resources and prompts to an LLM assistant over MCP (stdio),
        on the embedded stack ($NOETL_HOME), as the local agent principal. Configure an
        assistant to launch `noetl-agent mcp`; the API server serves the same over
        streamable HTTP at /mcp.

        NOETL_MCP_DISABLED_GROUPS leaves tool groups out; NOETL_MCP_READ_ONLY=1 serves
        only the tools that change nothing."""
        from mcp_server.errors import McpConfigError
        from mcp_server.stdio import serve_stdio

        try:
            asyncio.run(serve_stdio())
        except McpConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
