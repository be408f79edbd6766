"""Declaring tools and registering the groups a server serves.

A tool is a method of a group class (one class per group, in ``tools/``), marked with
:func:`tool`: its name is the tool's name, its docstring the description the model
reads, its type hints the input and output schemas, and the marker its annotations.
:func:`register_groups` adds the tools of every group the settings serve; in read-only
mode only tools annotated ``read_only_hint`` are added, so the annotations decide what a
read-only server hides and cannot drift from it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from mcp_server.services import Services
from mcp_server.settings import McpSettings

F = TypeVar("F", bound=Callable[..., Any])
MARK = "__noetl_mcp_tool__"


@dataclass(frozen=True, slots=True)
class ToolMark:
    """What :func:`tool` records on a method."""

    title: str
    annotations: ToolAnnotations


def tool(
    title: str,
    *,
    read_only: bool,
    destructive: bool = False,
    idempotent: bool = False,
    open_world: bool = False,
) -> Callable[[F], F]:
    """Mark a group method as a tool with these annotations (a read-only tool is never
    destructive and always idempotent)."""
    annotations = ToolAnnotations(
        title=title,
        read_only_hint=read_only,
        destructive_hint=False if read_only else destructive,
        idempotent_hint=True if read_only else idempotent,
        open_world_hint=open_world,
    )

    def mark(fn: F) -> F:
        setattr(fn, MARK, ToolMark(title, annotations))
        return fn

    return mark


class Group:
    """A group of tools over the services of one stack."""

    name: ClassVar[str]

    def __init__(self, services: Services) -> None:
        self.services = services

    def tools(self) -> list[tuple[str, Callable[..., Any], ToolMark]]:
        """``(name, bound method, mark)`` of every tool of the group, in source order."""
        found = []
        for name, member in inspect.getmembers(type(self), inspect.isfunction):
            mark = getattr(member, MARK, None)
            if isinstance(mark, ToolMark):
                found.append((name, getattr(self, name), mark))
        return sorted(found, key=lambda item: item[1].__func__.__code__.co_firstlineno)


def register_groups(server: MCPServer, groups: Iterable[Group], settings: McpSettings) -> list[str]:
    """Add the tools of each group the settings serve (only read-only tools in read-only
    mode); return the names added."""
    added = []
    for group in groups:
        if not settings.serves(group.name):
            continue
        for name, method, mark in group.tools():
            if settings.read_only and not mark.annotations.read_only_hint:
                continue
            server.add_tool(
                method,
                name=name,
                title=mark.title,
                description=inspect.cleandoc(method.__doc__ or ""),
                annotations=mark.annotations,
            )
            added.append(name)
    return added
