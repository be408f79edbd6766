"""Exporting events to the analytics store as Arrow tables, incrementally.

:func:`event_row` flattens one event into a row of the analytics table (see
:mod:`learning.analytics.schema`); :func:`to_arrow` makes a ``pyarrow.Table`` of rows.
:class:`Exporter` moves what is new in an ``EventStore`` into an ``AnalyticsStore``:

- **incremental and resumable**: it reads the event store from the highest position
  already exported (minus a look-back window, for events a concurrent writer committed
  late with a lower position), so a run after a crash simply continues;
- **idempotent**: an event is exported only when its ``seq`` is above the highest ``seq``
  already exported for its execution. Within an execution ``seq`` grows in commit order,
  so this never skips an event and never writes one twice. The state is read back from
  the analytics table itself: there is no separate cursor to lose or to disagree with;
- **redacted**: every event passes through a ``Redactor`` before it is converted, so a
  secret the process knows never reaches analytics even if a stored event still held it.

Error classes (``error_class``) name what went wrong the way the learners group it:
``http_503`` (kind and code), ``timeout`` or ``connection`` (kind alone when there is no
code), and for Python steps the exception type alone (``KeyError``). Retry events carry
the failure that caused them as a reason (``http_503``, ``python_KeyError``), which maps
to the same classes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.core import events as ev
from engine.core.events import Event
from engine.errors import NotFound
from engine.ports import EventStore
from engine.runtime.redaction import Redactor
from learning.analytics.schema import COLUMN_NAMES, TABLE, arrow_schema
from learning.analytics.store import AnalyticsStore
from learning.event_log import log_pages

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)
BATCH = 1000
LOOKBACK = 1000
_TOOL_EVENTS = frozenset({ev.TOOL_STARTED, ev.TOOL_PROCESSED, ev.RETRY_STARTED, ev.RETRY_PROCESSED})


@dataclass(frozen=True, slots=True)
class Playbook:
    """The playbook an execution ran."""

    path: str
    version: int | None


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What one export did: events read, rows written, and the last position read."""

    read: int
    exported: int
    position: int

    def to_dict(self) -> dict[str, int]:
        return {"read": self.read, "exported": self.exported, "position": self.position}


def error_class(kind: str | None, code: Any = None) -> str | None:
    """``http_503``, ``timeout``, ``KeyError`` (Python steps: the exception type)."""
    if not kind:
        return None
    if code is None or code == "":
        return str(kind)
    if kind == "python":
        return str(code)
    return f"{kind}_{code}"


def reason_class(reason: str | None) -> str | None:
    """The error class of a retry reason (``kind`` or ``kind_code``)."""
    if not reason:
        return None
    kind, _, code = reason.partition("_")
    return error_class(kind, code or None)


def event_row(event: Event, position: int, playbook: Playbook) -> dict[str, Any]:
    """One row of the analytics table for ``event`` (already redacted)."""
    payload = _mapping(event.payload)
    meta = _mapping(payload.get("meta"))
    usage = _mapping(meta.get("usage"))
    error = payload.get("error") if isinstance(payload.get("error"), dict) else None
    step_run = event.step_run_id
    step = step_run.rpartition("#")[0] or step_run if step_run else None
    if step is None and event.entity_type == "step":
        step = event.entity_id
    row: dict[str, Any] = dict.fromkeys(COLUMN_NAMES)
    row.update(
        position=position,
        execution_id=event.execution_id,
        seq=event.seq or 0,
        event_id=event.event_id,
        event_type=event.event_type,
        timestamp=_timestamp(event.timestamp),
        playbook_path=playbook.path,
        playbook_version=playbook.version,
        step=step,
        step_run_id=step_run,
        entity_type=event.entity_type,
        entity_id=event.entity_id,
        parent_id=event.parent_id,
        iteration=event.iteration,
        attempt=event.attempt,
        status=event.status,
        duration_ms=event.duration_ms,
    )
    if event.event_type in _TOOL_EVENTS:
        tool = payload.get("tool")
        if tool is None and event.entity_id and step and event.entity_id.startswith(f"{step}."):
            tool = event.entity_id[len(step) + 1 :]
        row.update(
            tool=_text(tool), tool_kind=_text(payload.get("kind")), pool=_text(meta.get("pool"))
        )
    if event.event_type == ev.TOOL_PROCESSED:
        row.update(
            final=not payload.get("partial", False),
            attempts=_int(payload.get("attempts")) or event.attempt,
            action=_text(payload.get("action")),
            rule=_text(payload.get("rule")),
            http_status=_int(payload.get("http_status")),
            wall_ms=_float(usage.get("wall_ms")),
            cpu_ms=_float(usage.get("cpu_ms")),
            peak_rss_kb=_int(usage.get("peak_rss_kb")),
            usage_scope=_text(usage.get("scope")),
        )
    if event.event_type in (ev.RETRY_STARTED, ev.RETRY_PROCESSED):
        row.update(reason=_text(payload.get("reason")), delay_ms=_int(payload.get("delay_ms")))
    if error is not None:
        code = error.get("code")
        row.update(
            error_kind=_text(error.get("kind")),
            error_code=None if code is None else str(code),
            error_class=error_class(error.get("kind"), code),
            error_message=_text(error.get("message")),
            error_retryable=error.get("retryable")
            if isinstance(error.get("retryable"), bool)
            else None,
        )
        if row["http_status"] is None and error.get("kind") == "http":
            row["http_status"] = _int(code)
    elif event.event_type == ev.RETRY_STARTED:
        row["error_class"] = reason_class(row["reason"])
        if row["error_class"]:
            row["error_kind"] = row["reason"].partition("_")[0]
    return row


def to_arrow(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """A ``pyarrow.Table`` of rows in the exported schema."""
    import pyarrow as pa

    return pa.Table.from_pylist(list(rows), schema=arrow_schema())


class Exporter:
    """Moves new events from ``events`` into ``store`` (see the module docstring).

    ``redactor`` masks the secrets this process knows (default: none known, events are
    exported as stored, which the engine has already redacted)."""

    def __init__(
        self,
        events: EventStore,
        store: AnalyticsStore,
        *,
        redactor: Redactor | None = None,
        batch: int = BATCH,
        lookback: int = LOOKBACK,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.events = events
        self.store = store
        self.redactor = redactor or Redactor()
        self.batch = batch
        self.lookback = max(lookback, 0)
        self._ready = False
        self._lock = asyncio.Lock()
        self._playbooks: dict[str, Playbook] = {}

    async def export(self, *, full: bool = False) -> ExportReport:
        """Export every event not yet exported; ``full`` rescans the whole event store
        (still writing only what is missing). Raises ``AnalyticsUnavailable`` or
        ``StoreError`` when either side fails; what was written stays written."""
        async with self._lock:
            if not self._ready:
                await asyncio.to_thread(self.store.ensure_schema)
                self._ready = True
            start = 0 if full else max(await self._max_position() - self.lookback, 0)
            exported: dict[str, int] = {}
            read = written = 0
            position = start
            async for batch in log_pages(self.events, start, self.batch):
                read += len(batch)
                position = batch[-1][0]
                fresh = [e.execution_id for _, e in batch if e.execution_id not in exported]
                if fresh:
                    exported.update(await self._max_seqs(set(fresh)))
                rows = []
                for pos, event in batch:
                    seq = event.seq or 0
                    if seq <= exported.get(event.execution_id, 0):
                        continue
                    exported[event.execution_id] = seq
                    playbook = await self._playbook(event)
                    rows.append(event_row(self.redactor.event(event), pos, playbook))
                if rows:
                    written += await asyncio.to_thread(self.store.insert, to_arrow(rows))
            if written:
                logger.info("exported %d event(s) to analytics at %s", written, self.store.where)
            return ExportReport(read, written, position)

    async def _max_position(self) -> int:
        table = await asyncio.to_thread(
            self.store.query, f"SELECT max(position) AS position FROM {TABLE}"
        )
        value = table.column("position")[0].as_py() if table.num_rows else None
        return int(value or 0)

    async def _max_seqs(self, execution_ids: set[str]) -> dict[str, int]:
        table = await asyncio.to_thread(
            self.store.query,
            f"SELECT execution_id, max(seq) AS seq FROM {TABLE}"
            " WHERE execution_id IN {ids:Array(String)} GROUP BY execution_id",
            {"ids": sorted(execution_ids)},
        )
        found = {row["execution_id"]: int(row["seq"]) for row in table.to_pylist()}
        return {execution_id: found.get(execution_id, 0) for execution_id in execution_ids}

    async def _playbook(self, event: Event) -> Playbook:
        known = self._playbooks.get(event.execution_id)
        if known is not None:
            return known
        if event.event_type == ev.PLAYBOOK_EXECUTION_REQUESTED:
            version = event.payload.get("playbook_version")
            path = event.payload.get("playbook_path") or event.entity_id or ""
            found = Playbook(str(path), version if isinstance(version, int) else None)
        else:
            try:
                summary = await self.events.get_execution(event.execution_id)
                found = Playbook(summary.playbook_path, summary.playbook_version)
            except NotFound:
                found = Playbook("", None)
        self._playbooks[event.execution_id] = found
        return found


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
