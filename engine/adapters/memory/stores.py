"""In-memory event store and catalog store.

The reference adapters of the ``EventStore`` and ``CatalogStore`` ports: plain dicts and
lists, nothing survives the process. They keep payloads as JSON text, exactly as a
database would, so a caller that mutates an event it got back cannot change the log and
a payload that is not JSON fails here as it fails everywhere else.

This module also holds what every adapter shares, so that all backends behave the same:

- ``encode_payload``: the one JSON encoding of a payload (``StoreError`` if not JSON);
- ``requested_summary`` and ``status_change``: how lifecycle events project onto the
  execution listing (``playbook.execution.requested`` creates a running execution;
  ``playbook.paused`` / ``playbook.resumed`` / ``playbook.processed`` move it);
- ``execution_not_found`` and ``catalog_not_found``: the ``NotFound`` messages;
- ``utc_now``: the registration timestamp of catalog entries.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from engine.core.events import (
    PLAYBOOK_EXECUTION_REQUESTED,
    PLAYBOOK_PAUSED,
    PLAYBOOK_PROCESSED,
    PLAYBOOK_RESUMED,
    Event,
)
from engine.errors import NotFound, StoreError
from engine.ports import CatalogEntry, ExecutionSummary

EXECUTION_RUNNING = "running"
EXECUTION_PAUSED = "paused"
EXECUTION_COMPLETED = "completed"
EXECUTION_FAILED = "failed"
EXECUTION_CANCELLED = "cancelled"

LIFECYCLE_EVENT_TYPES = frozenset(
    {PLAYBOOK_EXECUTION_REQUESTED, PLAYBOOK_PAUSED, PLAYBOOK_RESUMED, PLAYBOOK_PROCESSED}
)

_PROCESSED_STATUS = {
    "success": EXECUTION_COMPLETED,
    "error": EXECUTION_FAILED,
    "cancelled": EXECUTION_CANCELLED,
}


# --- shared by every adapter -------------------------------------------------------------


def utc_now() -> str:
    """Return the current UTC time as RFC3339 with milliseconds (``...T12:00:00.000Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# One encoder for every payload: ``json.dumps`` with options builds a new one per call.
_PAYLOAD_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def encode_payload(event: Event) -> str:
    """Return the event's payload as compact JSON text.

    Raises ``StoreError`` naming the event when the payload is not a dict of JSON values
    (sets, bytes, datetimes, NaN, circular references, ...).
    """
    where = f"event {event.event_id!r} ({event.event_type}) of execution {event.execution_id!r}"
    if not isinstance(event.payload, dict):
        raise StoreError(
            f"{where} has a payload of type {type(event.payload).__name__}; "
            "the payload must be a dict of JSON values"
        )
    try:
        return _PAYLOAD_JSON.encode(event.payload)
    except (TypeError, ValueError) as e:
        raise StoreError(
            f"{where} has a payload that is not JSON ({e}); convert it to dicts, lists, "
            "strings, finite numbers, booleans and None before appending "
            "(e.g. datetimes to ISO strings, sets to lists); nothing of the batch was stored"
        ) from e


def decode_payload(text: str) -> dict[str, Any]:
    """Inverse of ``encode_payload``."""
    payload = json.loads(text)
    if not isinstance(payload, dict):
        raise StoreError(f"a stored payload is not a JSON object: {text[:80]!r}")
    return payload


@dataclass(frozen=True, slots=True)
class StatusChange:
    """What a pause, resume or end of a playbook does to its execution's summary."""

    status: str
    finished: bool = False  # when True, ``finished_at`` and ``error`` are set too
    finished_at: str | None = None
    error: str | None = None


def requested_summary(event: Event) -> ExecutionSummary | None:
    """The summary a ``playbook.execution.requested`` event creates, else None."""
    if event.event_type != PLAYBOOK_EXECUTION_REQUESTED:
        return None
    payload = event.payload
    return ExecutionSummary(
        execution_id=event.execution_id,
        playbook_path=str(payload.get("playbook_path") or ""),
        playbook_version=_optional_int(payload.get("playbook_version")),
        status=EXECUTION_RUNNING,
        started_at=event.timestamp,
        parent_execution_id=_optional_str(payload.get("parent_execution_id")),
    )


def status_change(event: Event) -> StatusChange | None:
    """The change a pause, resume or ``playbook.processed`` event makes, else None.

    ``playbook.processed`` maps its ``status`` to the execution status: success →
    completed, error → failed, cancelled (or ``payload.status == "cancelled"``) →
    cancelled; a missing or unknown status counts as failed, since success was not claimed.
    """
    if event.event_type == PLAYBOOK_PAUSED:
        return StatusChange(EXECUTION_PAUSED)
    if event.event_type == PLAYBOOK_RESUMED:
        return StatusChange(EXECUTION_RUNNING)
    if event.event_type != PLAYBOOK_PROCESSED:
        return None
    payload_status = event.payload.get("status")
    if payload_status == "cancelled":
        status = EXECUTION_CANCELLED
    else:
        raw = event.status if event.status is not None else payload_status
        status = _PROCESSED_STATUS.get(str(raw), EXECUTION_FAILED)
    return StatusChange(
        status,
        finished=True,
        finished_at=event.timestamp,
        error=_error_message(event.payload.get("error")),
    )


def apply_status_change(summary: ExecutionSummary, change: StatusChange) -> ExecutionSummary:
    """Return ``summary`` moved by ``change``."""
    if not change.finished:
        return replace(summary, status=change.status)
    return replace(
        summary, status=change.status, finished_at=change.finished_at, error=change.error
    )


def execution_not_found(execution_id: str) -> NotFound:
    return NotFound(
        f"execution {execution_id!r} not found; list executions with `noetl-agent executions list`"
    )


def catalog_not_found(path: str, version: int | None = None, latest: int | None = None) -> NotFound:
    """``NotFound`` for a missing path, or for a missing version of a known path."""
    if version is None or latest is None:
        return NotFound(
            f"playbook {path!r} is not in the catalog; list registered playbooks with "
            "`noetl-agent catalog list`"
        )
    return NotFound(
        f"playbook {path!r} has no version {version} (versions 1 to {latest} exist); "
        "list registered playbooks with `noetl-agent catalog list`"
    )


def _optional_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _error_message(error: Any) -> str | None:
    if isinstance(error, dict):
        message = error.get("message")
        return None if message is None else str(message)
    if isinstance(error, str) and error:
        return error
    return None


# --- in-memory adapters ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Stored:
    event: Event  # with seq, payload left empty
    payload: str  # JSON text
    position: int  # global position, from 1

    def load(self) -> Event:
        return replace(self.event, payload=decode_payload(self.payload))


class MemoryEventStore:
    """``EventStore`` held in process memory."""

    def __init__(self) -> None:
        self._log: list[_Stored] = []
        self._by_execution: dict[str, list[_Stored]] = {}
        self._by_id: dict[tuple[str, str], _Stored] = {}
        self._executions: dict[str, ExecutionSummary] = {}
        self._order: dict[str, int] = {}

    async def append(self, events: Sequence[Event]) -> list[Event]:
        """Store ``events`` in order; see ``EventStore.append``.

        Raises ``StoreError`` (storing nothing) when a payload is not JSON.
        """
        if not events:
            return []
        payloads = [encode_payload(event) for event in events]
        next_seq: dict[str, int] = {}
        staged: dict[tuple[str, str], _Stored] = {}
        new: list[_Stored] = []
        result: list[Event] = []
        for event, payload in zip(events, payloads, strict=True):
            key = (event.execution_id, event.event_id)
            existing = self._by_id.get(key) or staged.get(key)
            if existing is not None:
                result.append(existing.load())
                continue
            seq = next_seq.get(event.execution_id)
            if seq is None:
                seq = len(self._by_execution.get(event.execution_id, ())) + 1
            next_seq[event.execution_id] = seq + 1
            stored = _Stored(
                replace(event, seq=seq, payload={}), payload, len(self._log) + len(new) + 1
            )
            staged[key] = stored
            new.append(stored)
            result.append(event.with_seq(seq))
        for stored in new:
            self._commit(stored)
        return result

    def _commit(self, stored: _Stored) -> None:
        event = stored.event
        self._log.append(stored)
        self._by_execution.setdefault(event.execution_id, []).append(stored)
        self._by_id[(event.execution_id, event.event_id)] = stored
        if event.event_type not in LIFECYCLE_EVENT_TYPES:
            return
        full = stored.load()
        summary = requested_summary(full)
        if summary is not None:
            if event.execution_id not in self._executions:
                self._executions[event.execution_id] = summary
                self._order[event.execution_id] = len(self._order)
            return
        change = status_change(full)
        current = self._executions.get(event.execution_id)
        if change is not None and current is not None:
            self._executions[event.execution_id] = apply_status_change(current, change)

    async def read(self, execution_id: str, after_seq: int = 0) -> list[Event]:
        """The execution's events with ``seq > after_seq`` in seq order; [] when unknown."""
        stored = self._by_execution.get(execution_id, [])
        return [item.load() for item in stored[max(after_seq, 0) :]]

    async def read_all(self, after_global: int = 0, limit: int = 1000) -> list[tuple[int, Event]]:
        """``(position, event)`` pairs with ``position > after_global``, oldest first."""
        start = max(after_global, 0)
        return [(item.position, item.load()) for item in self._log[start : start + max(limit, 0)]]

    async def list_executions(
        self, *, status: str | None = None, limit: int = 50
    ) -> list[ExecutionSummary]:
        """Executions newest first (by ``started_at``, then by order of request)."""
        rows = [
            summary
            for summary in self._executions.values()
            if status is None or summary.status == status
        ]
        rows.sort(key=lambda s: (s.started_at, self._order[s.execution_id]), reverse=True)
        return rows[: max(limit, 0)]

    async def get_execution(self, execution_id: str) -> ExecutionSummary:
        """The execution's summary; raises ``NotFound`` for an unknown id."""
        summary = self._executions.get(execution_id)
        if summary is None:
            raise execution_not_found(execution_id)
        return summary

    async def close(self) -> None:
        """Nothing to release; the contents stay readable."""


class MemoryCatalogStore:
    """``CatalogStore`` held in process memory."""

    def __init__(self) -> None:
        self._versions: dict[str, builtins.list[CatalogEntry]] = {}

    async def register(
        self,
        path: str,
        name: str,
        content: str,
        *,
        description: str | None = None,
        source: str | None = None,
    ) -> CatalogEntry:
        """Store the next version of ``path``; return the latest as is if ``content`` equals it."""
        versions = self._versions.setdefault(path, [])
        if versions and versions[-1].content == content:
            return versions[-1]
        entry = CatalogEntry(
            path=path,
            version=len(versions) + 1,
            name=name,
            content=content,
            registered_at=utc_now(),
            description=description,
            source=source,
        )
        versions.append(entry)
        return entry

    async def get(self, path: str, version: int | None = None) -> CatalogEntry:
        """The latest or the given version; raises ``NotFound`` when either is missing."""
        versions = self._versions.get(path)
        if not versions:
            raise catalog_not_found(path)
        if version is None:
            return versions[-1]
        if not 1 <= version <= len(versions):
            raise catalog_not_found(path, version, len(versions))
        return versions[version - 1]

    async def versions(self, path: str) -> builtins.list[CatalogEntry]:
        """Every version of ``path``, oldest first; raises ``NotFound`` for an unknown path."""
        versions = self._versions.get(path)
        if not versions:
            raise catalog_not_found(path)
        return builtins.list(versions)

    async def close(self) -> None:
        """Nothing to release; the contents stay readable."""

    async def list(self) -> builtins.list[CatalogEntry]:
        """The latest version of every path, sorted by path."""
        return [self._versions[path][-1] for path in sorted(self._versions)]
