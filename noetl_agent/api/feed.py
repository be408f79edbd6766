"""Long polling over an execution's events.

The engine calls the feed with every event it appends; a request that asked for events
after some ``seq`` and found none waits until the feed sees the next event of that
execution (or until its time is up) and reads again. Events written by another process
wake nobody; the wait then simply ends at its timeout and the second read finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from engine.core.events import Event


class EventFeed:
    """Wakes requests waiting for the next event of an execution."""

    def __init__(self) -> None:
        self._signals: dict[str, tuple[asyncio.Event, int]] = {}

    def __call__(self, event: Event) -> None:
        entry = self._signals.pop(event.execution_id, None)
        if entry is not None:
            entry[0].set()

    async def read(
        self, execution_id: str, read: Callable[[], Awaitable[list[Event]]], wait: float
    ) -> list[Event]:
        """``read()`` now; if it finds nothing, wait up to ``wait`` seconds for the next
        event of the execution and ``read()`` once more."""
        signal = self._hold(execution_id)
        try:
            events = await read()
            if events or wait <= 0:
                return events
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), wait)
            return await read()
        finally:
            self._release(execution_id, signal)

    def _hold(self, execution_id: str) -> asyncio.Event:
        # Taken before the first read, so an event appended between the read and the
        # wait still wakes this request.
        signal, holders = self._signals.get(execution_id, (asyncio.Event(), 0))
        self._signals[execution_id] = (signal, holders + 1)
        return signal

    def _release(self, execution_id: str, signal: asyncio.Event) -> None:
        entry = self._signals.get(execution_id)
        if entry is None or entry[0] is not signal:
            return  # already woken and removed
        if entry[1] <= 1:
            del self._signals[execution_id]
        else:
            self._signals[execution_id] = (signal, entry[1] - 1)
