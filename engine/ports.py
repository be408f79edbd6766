"""Ports: the interfaces the engine's I/O shells depend on.

Each port has an in-memory adapter and passes one conformance suite
(``tests/conformance/test_<port>.py``) shared by every adapter.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.core.commands import RunTool
from engine.core.events import Event
from engine.tools.outcome import ToolOutcome


@dataclass(frozen=True, slots=True)
class ExecutionSummary:
    """One row of an execution listing."""

    execution_id: str
    playbook_path: str
    playbook_version: int | None
    status: str  # running | paused | completed | failed | cancelled
    started_at: str
    finished_at: str | None = None
    parent_execution_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One registered version of a playbook."""

    path: str
    version: int
    name: str
    content: str
    registered_at: str
    description: str | None = None
    source: str | None = None  # file path it was registered from, if any


class EventStore(Protocol):
    """Append-only, per-execution ordered event log."""

    async def append(self, events: Sequence[Event]) -> list[Event]:
        """Store ``events`` in order and return them with ``seq`` assigned.

        Idempotent by ``(execution_id, event_id)``: an event already stored is not stored
        again, and the stored copy (with its original ``seq``) is returned in its place.
        """
        ...

    async def read(self, execution_id: str, after_seq: int = 0) -> list[Event]:
        """Return the execution's events with ``seq > after_seq``, in ``seq`` order."""
        ...

    async def read_all(self, after_global: int = 0, limit: int = 1000) -> list[tuple[int, Event]]:
        """Return ``(global position, event)`` pairs across executions, oldest first."""
        ...

    async def list_executions(
        self, *, status: str | None = None, limit: int = 50
    ) -> list[ExecutionSummary]:
        """Newest first."""
        ...

    async def get_execution(self, execution_id: str) -> ExecutionSummary:
        """Raise ``NotFound`` for an unknown id."""
        ...

    async def close(self) -> None: ...


class CatalogStore(Protocol):
    """Versioned playbook catalog; versions start at 1 and never change once stored."""

    async def register(
        self, path: str, name: str, content: str, *, description: str | None, source: str | None
    ) -> CatalogEntry:
        """Store a new version, unless ``content`` equals the latest (then return that)."""
        ...

    async def get(self, path: str, version: int | None = None) -> CatalogEntry:
        """Latest version when ``version`` is None; raise ``NotFound`` otherwise missing."""
        ...

    async def list(self) -> list[CatalogEntry]:
        """The latest version of every path, sorted by path."""
        ...

    async def versions(self, path: str) -> builtins.list[CatalogEntry]: ...


class CredentialProvider(Protocol):
    """Resolves keychain names to credential values (never logged, never in events)."""

    async def get(self, name: str) -> Mapping[str, Any]:
        """Raise ``ToolConfigError`` naming the credential when it is unknown."""
        ...


@dataclass(slots=True)
class ToolContext:
    """What a tool run may know besides its configuration and inputs."""

    execution_id: str
    step: str
    step_run_id: str
    attempt: int = 1
    timeout: float | None = None
    base_dir: str | None = None  # directory of the playbook file, for relative script paths
    credentials: CredentialProvider | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class ToolExecutor(Protocol):
    """Runs one attempt of one tool kind. Never raises for a failure of the tool itself:
    every failure comes back as ``ToolOutcome.fail(...)`` with the right ``error.kind``."""

    kind: str

    async def run(
        self, config: Mapping[str, Any], inputs: Mapping[str, Any], ctx: ToolContext
    ) -> ToolOutcome: ...

    async def aclose(self) -> None: ...


class CommandQueue(Protocol):
    """Carries ``RunTool`` commands from the engine to workers of a pool.

    Workers run the command and report its events back to the engine (``Engine.report``);
    the queue only delivers. Delivery is at least once: a command may reach a second worker
    after the first one died, and the idempotent event ids make the repeat harmless.
    """

    async def submit(self, command: RunTool) -> None:
        """Queue ``command`` for a worker of ``command.pool``."""
        ...

    async def cancel(self, execution_id: str) -> None:
        """Drop queued commands of the execution and ask workers to stop its running ones."""
        ...

    async def aclose(self) -> None: ...
