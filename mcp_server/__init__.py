"""The MCP server: noetl-agent's tools, resources and prompts for LLM assistants.

Nothing here decides anything: every tool is a thin typed function over a service of
``noetl_agent`` (the same services the HTTP API and the CLI use), translating its
errors into tool errors that say how to fix the call. Two transports serve the same
server: stdio (``noetl-agent mcp``, the embedded stack of ``$NOETL_HOME``) and streamable
HTTP at ``/mcp`` of the API server (bearer tokens, host checking).

Layout: :mod:`~mcp_server.server` builds the server from :mod:`~mcp_server.services`
and :mod:`~mcp_server.settings`; one module per tool group under ``tools/``;
:mod:`~mcp_server.resources` and :mod:`~mcp_server.prompts`; :mod:`~mcp_server.stdio`
and :mod:`~mcp_server.http` are the transports. ``noetl_agent`` never imports this
package: its CLI and API server find :mod:`~mcp_server.cli` (the ``mcp`` command) and
:mod:`~mcp_server.mount` (``/mcp``) through the entry point groups
``noetl_agent.commands`` and ``noetl_agent.server_extensions`` of the distribution.
Importing this package, those two modules included, costs nothing: the SDK is imported by
the modules that need it.
"""
