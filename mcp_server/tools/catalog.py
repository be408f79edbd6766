"""Catalog tools: list, read, validate and register playbooks."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field

from engine.dsl.loader import parse_playbook
from engine.errors import PlaybookInvalid
from engine.ports import CatalogEntry
from mcp_server.errors import tool_errors
from mcp_server.models import (
    PlaybookDetail,
    PlaybookIssue,
    PlaybookList,
    PlaybookSummary,
    Registered,
    Validation,
)
from mcp_server.registry import Group, tool

Yaml = Annotated[
    str,
    Field(min_length=1, max_length=1_000_000, description="The playbook's full YAML text."),
]
Path = Annotated[str, Field(min_length=1, description="Catalog path, e.g. etl/load_orders.")]
Version = Annotated[
    int | None, Field(ge=1, description="A catalog version; the latest when omitted.")
]
NOT_FOUND = "list_playbooks shows every path and its latest version"


def playbook_uri(path: str, version: int) -> str:
    return f"playbook://{path}@{version}"


def _summary(entry: CatalogEntry) -> PlaybookSummary:
    return PlaybookSummary(
        path=entry.path,
        version=entry.version,
        name=entry.name,
        description=entry.description,
        registered_at=entry.registered_at,
    )


class CatalogTools(Group):
    name = "catalog"

    @tool("List playbooks", read_only=True)
    async def list_playbooks(self, ctx: Context[Any, Any]) -> PlaybookList:
        """List every playbook in the catalog (latest version of each, by path) with its
        name and description. Use it to find what can be run before execute_playbook, or
        to check a path exists. Returns {playbooks: [{path, version, name, description,
        registered_at}]}."""
        self.services.caller(ctx, "viewer", "read the catalog")
        entries = await self.services.engine.catalog.list()
        return PlaybookList(playbooks=[_summary(entry) for entry in entries])

    @tool("Read a playbook", read_only=True)
    async def get_playbook(
        self, path: Path, ctx: Context[Any, Any], version: Version = None
    ) -> PlaybookDetail:
        """Read one playbook version from the catalog, with its YAML. Use it before
        changing or explaining a playbook. Returns its path, version, name, description,
        registered_at, the YAML as content, and the resource uri of that version."""
        self.services.caller(ctx, "viewer", "read the catalog")
        with tool_errors(not_found=NOT_FOUND):
            entry = await self.services.engine.catalog.get(path.strip("/"), version)
        return PlaybookDetail(
            **_summary(entry).model_dump(),
            content=entry.content,
            uri=playbook_uri(entry.path, entry.version),
        )

    @tool("Validate a playbook", read_only=True)
    async def validate_playbook(self, yaml: Yaml, ctx: Context[Any, Any]) -> Validation:
        """Check playbook YAML without registering or running it: parsing, the schema
        and the static checks (unknown steps in arcs, templates, tool settings). Use it
        on every playbook you write before register_playbook. Returns {valid, path,
        name, steps, tool_kinds, issues}; each issue has the path in the document, the
        line, the message and a hint saying how to fix it. An invalid playbook is a
        normal result (valid false), not an error."""
        self.services.caller(ctx, "viewer", "validate playbooks")
        try:
            playbook = parse_playbook(yaml)
        except PlaybookInvalid as exc:
            issues = [
                PlaybookIssue(path=i.path, line=i.line, message=i.message, hint=i.hint)
                for i in exc.issues
            ]
            return Validation(valid=False, issues=issues)
        return Validation(
            valid=True,
            path=playbook.path,
            name=playbook.metadata.name,
            steps=len(playbook.workflow),
            tool_kinds=sorted(playbook.tool_kinds),
        )

    @tool("Register a playbook", read_only=False, destructive=False, idempotent=True)
    async def register_playbook(self, yaml: Yaml, ctx: Context[Any, Any]) -> Registered:
        """Validate playbook YAML and store it in the catalog as the next version of its
        path (metadata.path), so execute_playbook can run it. Registering the same YAML
        again keeps its version. Nothing runs. Returns {path, version, name, uri}. An
        invalid playbook is refused with every issue (path, line, message, hint):
        fix them and call again."""
        self.services.caller(ctx, "operator", "register playbooks")
        with tool_errors():
            entry = await self.services.engine.register(yaml)
        return Registered(
            path=entry.path,
            version=entry.version,
            name=entry.name,
            uri=playbook_uri(entry.path, entry.version),
        )
