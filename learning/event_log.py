"""Following the event log by global position, a page at a time.

The indexer and the analytics exporter both read everything after a position they keep
(``EventStore.read_all``), page by page, and stop at the first short page: what arrives
later is read by their next pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from engine.core.events import Event
from engine.ports import EventStore


async def log_pages(
    events: EventStore, after: int, size: int
) -> AsyncIterator[list[tuple[int, Event]]]:
    """The ``(position, event)`` pairs of ``events`` after position ``after``, in pages of
    at most ``size``, oldest first; ends after the first page shorter than ``size``."""
    while True:
        page = await events.read_all(after, size)
        if not page:
            return
        yield page
        if len(page) < size:
            return
        after = page[-1][0]
