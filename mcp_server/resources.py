"""Resources: playbook YAML, execution state, the playbook JSON Schema and proposals.

``playbook://{path}`` is the latest version of a catalog path; ``playbook://{path}@N``
version N. ``execution://{id}`` and ``proposal://{id}`` are the JSON documents
get_execution and get_proposal return; ``schema://playbook`` is the JSON Schema of the
playbook language.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError

from engine.dsl.models import Playbook
from engine.errors import NoetlError, NotFound
from mcp_server.services import Services
from noetl_agent.executions import summarize

JSON = "application/json"


@contextmanager
def _resource_errors() -> Iterator[None]:
    """Service errors as resource errors: unknown ids are not found, the rest say why."""
    try:
        yield
    except NotFound as exc:
        raise ResourceNotFoundError(str(exc)) from exc
    except (NoetlError, ToolError) as exc:
        raise ResourceError(str(exc)) from exc


def split_version(reference: str) -> tuple[str, int | None]:
    """``etl/load@2`` -> (``etl/load``, 2); without ``@N`` the version is None (latest)."""
    path, sep, version = reference.rpartition("@")
    if sep and version.isdigit() and int(version) >= 1:
        return path.strip("/"), int(version)
    return reference.strip("/"), None


def register_resources(server: MCPServer, services: Services) -> None:
    """Add the four resources over ``services``."""

    @server.resource(
        "playbook://{+path}",
        name="playbook",
        title="Playbook YAML",
        description="A playbook's YAML from the catalog: playbook://PATH for the latest "
        "version, playbook://PATH@N for version N.",
        mime_type="application/yaml",
    )
    async def playbook(path: str, ctx: Context[Any, Any]) -> str:
        with _resource_errors():
            services.caller(ctx, "viewer", "read the catalog")
            name, version = split_version(path)
            entry = await services.engine.catalog.get(name, version)
        return entry.content

    @server.resource(
        "execution://{execution_id}",
        name="execution",
        title="Execution state",
        description="An execution's status, step runs, result and error (JSON).",
        mime_type=JSON,
    )
    async def execution(execution_id: str, ctx: Context[Any, Any]) -> str:
        events = services.engine.events
        with _resource_errors():
            services.caller(ctx, "viewer", "read executions")
            summary = await events.get_execution(execution_id)
            view = summarize(summary, await events.read(execution_id))
        return json.dumps(view.to_dict(), default=str)

    @server.resource(
        "schema://playbook",
        name="playbook-schema",
        title="Playbook JSON Schema",
        description="The JSON Schema of the playbook language, to write valid YAML.",
        mime_type="application/schema+json",
    )
    def schema() -> str:
        return json.dumps(Playbook.model_json_schema(by_alias=True))

    @server.resource(
        "proposal://{proposal_id}",
        name="proposal",
        title="Policy proposal",
        description="A policy proposal: target, patch, diff, evidence, status (JSON).",
        mime_type=JSON,
    )
    async def proposal(proposal_id: str, ctx: Context[Any, Any]) -> str:
        with _resource_errors():
            services.caller(ctx, "viewer", "read policy proposals")
            found = await services.proposals.get(proposal_id)
        return json.dumps(found, default=str)
