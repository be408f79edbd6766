"""The analytics service: export, step statistics, guarded queries and Parquet files over
one event store and one analytics store.

Reads export first (unless told not to), so statistics and queries see every event stored
so far; an export with nothing new costs one event-store read and one small query. Calls
into the store run in a worker thread: chDB computes in this process, and a server call
waits on the network, neither of which may hold up the event loop.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from engine.ports import EventStore
from engine.runtime.redaction import Redactor
from learning.analytics.export import Exporter, ExportReport
from learning.analytics.query import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT, QueryResult, analytics_query
from learning.analytics.schema import TABLE, arrow_schema
from learning.analytics.statistics import StepStatistics, playbook_steps, step_statistics
from learning.analytics.store import AnalyticsStore

PARQUET_FILE = "events.parquet"


class Analytics:
    """Everything analytics offers, over ``events`` (read) and ``store`` (written)."""

    def __init__(
        self, events: EventStore, store: AnalyticsStore, *, redactor: Redactor | None = None
    ) -> None:
        self.events = events
        self.store = store
        self.exporter = Exporter(events, store, redactor=redactor)

    def __repr__(self) -> str:
        return f"Analytics({self.store.where!r})"

    async def export(self, *, full: bool = False) -> ExportReport:
        """Export what is new (everything missing with ``full``); see ``Exporter``."""
        return await self.exporter.export(full=full)

    async def step_statistics(
        self, playbook: str, step: str, *, refresh: bool = True
    ) -> StepStatistics:
        """Statistics of ``step`` of ``playbook`` (see :mod:`.statistics`)."""
        if refresh:
            await self.export()
        return await asyncio.to_thread(step_statistics, self.store, playbook, step)

    async def playbook_statistics(
        self, playbook: str, *, refresh: bool = True
    ) -> list[StepStatistics]:
        """Statistics of every step of ``playbook`` with an exported finished run."""
        if refresh:
            await self.export()
        steps = await asyncio.to_thread(playbook_steps, self.store, playbook)
        return [
            await asyncio.to_thread(step_statistics, self.store, playbook, step) for step in steps
        ]

    async def query(
        self,
        sql: str,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        timeout: float = DEFAULT_TIMEOUT,
        refresh: bool = True,
    ) -> QueryResult:
        """Run read-only SQL (see :func:`.query.analytics_query` for what is allowed)."""
        if refresh:
            await self.export()
        return await asyncio.to_thread(
            analytics_query, self.store, sql, max_rows=max_rows, timeout=timeout
        )

    async def write_parquet(self, directory: Path) -> tuple[Path, int]:
        """Write every exported row to ``directory/events.parquet`` (replacing it
        atomically, ordered by position); return the file and its row count."""
        return await asyncio.to_thread(self._write_parquet, directory)

    def _write_parquet(self, directory: Path) -> tuple[Path, int]:
        import pyarrow.parquet as pq

        directory.mkdir(parents=True, exist_ok=True)
        table = self.store.query(f"SELECT * FROM {TABLE} ORDER BY position")
        table = table.cast(arrow_schema())
        target = directory / PARQUET_FILE
        partial = directory / f".{PARQUET_FILE}.{os.getpid()}.tmp"
        pq.write_table(table, partial)
        partial.replace(target)
        return target, int(table.num_rows)

    def close(self) -> None:
        """Close the analytics store (the event store belongs to the caller)."""
        self.store.close()
