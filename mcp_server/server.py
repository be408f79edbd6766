"""Building the MCP server over the services of one stack.

:func:`build_server` registers the tool groups the settings serve, the resources and
the prompts. :class:`NoetlMCPServer` differs from the SDK's ``MCPServer`` in one thing:
a call whose arguments do not fit the tool's input schema comes back as a tool error
naming each wrong argument, what was expected, and the tool's arguments, so the model
can fix the call (instead of pydantic's report).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, Icon, InputRequiredResult, ToolAnnotations
from pydantic import ValidationError

from mcp_server.prompts import register_prompts
from mcp_server.registry import Group, register_groups
from mcp_server.resources import register_resources
from mcp_server.services import Services
from mcp_server.settings import McpSettings
from mcp_server.tools.author import AuthorTools
from mcp_server.tools.catalog import CatalogTools
from mcp_server.tools.humans import HumansTools
from mcp_server.tools.improve import ImproveTools
from mcp_server.tools.learn import LearnTools
from mcp_server.tools.run import RunTools

NAME = "noetl-agent"
INSTRUCTIONS = """\
noetl-agent runs playbooks (YAML workflows of steps: shell, HTTP, SQL, Python) and learns
from their history. Typical session: generate_playbook from the user's description (or
write it yourself with playbook_authoring_context), validate_playbook, dry_run_playbook,
then register_playbook and execute_playbook. When an execution fails: explain_failure and
find_similar_failures; then suggest_policies to have the learners propose retry, timeout
or pool changes, and request_review to hand a proposal to a person. You cannot approve or
reject proposals, workflow approvals or generated drafts: only a person can, in the
review queue."""


def _argument_help(schema: dict[str, Any]) -> str:
    """``name (type, required)`` for each argument of a tool's input schema."""
    required = set(schema.get("required", []))
    parts = []
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type") or " or ".join(
            str(option.get("type", "?")) for option in prop.get("anyOf", [])
        )
        parts.append(f"{name} ({kind or 'any'}, {'required' if name in required else 'optional'})")
    return ", ".join(parts) or "none"


def argument_message(tool: str, error: ValidationError, schema: dict[str, Any]) -> str:
    """What was wrong with each argument of a call, and the arguments the tool takes."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        problems.append(f"`{where}`: {item['msg']}")
    return (
        f"invalid arguments for {tool}: {'; '.join(problems)}. "
        f"{tool} takes {_argument_help(schema)}. Fix the arguments and call again."
    )


class NoetlMCPServer(MCPServer[Any]):
    """The SDK server with argument errors a model can act on (see the module), and no
    unknown arguments: a misspelt argument is refused, not silently ignored."""

    def add_tool(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        icons: list[Icon] | None = None,
        meta: dict[str, Any] | None = None,
        structured_output: bool | None = None,
    ) -> None:
        super().add_tool(fn, name, title, description, annotations, icons, meta, structured_output)
        tool = self._tool_manager.get_tool(name or fn.__name__)
        if tool is not None:
            tool.parameters["additionalProperties"] = False

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            unknown = sorted(set(arguments) - set(tool.parameters.get("properties", {})))
            if unknown:
                raise ToolError(
                    f"{name} has no argument {', '.join(f'`{u}`' for u in unknown)}; it "
                    f"takes {_argument_help(tool.parameters)}. Fix the arguments and call again."
                )
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            tool = self._tool_manager.get_tool(name)
            if tool is None:
                listed = ", ".join(sorted(t.name for t in self._tool_manager.list_tools()))
                raise ToolError(f"there is no tool {name!r}; the tools are {listed}") from exc
            # A crash (UnexpectedToolError) may also wrap a ValidationError: not the caller's.
            if isinstance(exc.__cause__, ValidationError) and not isinstance(
                exc, UnexpectedToolError
            ):
                raise ToolError(
                    argument_message(name, exc.__cause__, tool.parameters)
                ) from exc.__cause__
            raise


def groups(services: Services) -> list[Group]:
    """Every tool group over ``services``."""
    return [
        CatalogTools(services),
        AuthorTools(services),
        RunTools(services),
        LearnTools(services),
        ImproveTools(services),
        HumansTools(services),
    ]


def build_server(
    services: Services,
    settings: McpSettings,
    *,
    token_verifier: TokenVerifier | None = None,
    issuer_url: str | None = None,
) -> NoetlMCPServer:
    """The MCP server over ``services``: the tools of the groups ``settings`` serve (only
    read-only ones in read-only mode), the resources and the prompts. With a
    ``token_verifier`` (HTTP) every request needs a bearer token it accepts; tokens are
    issued by the API server at ``issuer_url``."""
    auth = None
    if token_verifier is not None:
        auth = AuthSettings(issuer_url=issuer_url or services.review_url, resource_server_url=None)
    server = NoetlMCPServer(
        NAME,
        title="noetl-agent",
        instructions=INSTRUCTIONS,
        version="0.1.0",
        token_verifier=token_verifier,
        auth=auth,
        log_level="WARNING",
    )
    register_groups(server, groups(services), settings)
    register_resources(server, services)
    register_prompts(server)
    return server
