"""An in-process command queue: one asyncio queue per worker pool.

The test double of the distributed queue and a way to run workers inside one process.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from engine.core.commands import RunTool


class MemoryCommandQueue:
    """``CommandQueue`` over asyncio queues; workers call :meth:`take`."""

    def __init__(self) -> None:
        self._pools: defaultdict[str, asyncio.Queue[RunTool]] = defaultdict(asyncio.Queue)
        self._cancelled: set[str] = set()

    async def submit(self, command: RunTool) -> None:
        self._cancelled.discard(command.execution_id)
        await self._pools[command.pool].put(command)

    async def take(self, pool: str) -> RunTool:
        """The next command of ``pool`` whose execution was not cancelled (waits for one)."""
        while True:
            command = await self._pools[pool].get()
            if command.execution_id not in self._cancelled:
                return command

    def pending(self, pool: str) -> int:
        return self._pools[pool].qsize()

    async def cancel(self, execution_id: str) -> None:
        self._cancelled.add(execution_id)

    async def aclose(self) -> None:
        self._pools.clear()
