"""A worker loop: take a command of its pool, run it with the tool runner, report.

``concurrency`` commands run at once. The loop knows nothing of where commands come from
or where events go: ``take`` and ``report`` are given, so the same loop serves an
in-process queue and the distributed queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from engine.core.commands import RunTool
from engine.runtime.tool_runner import Report, ToolRunner

logger = logging.getLogger(__name__)
Take = Callable[[], Awaitable[RunTool]]


class WorkerLoop:
    def __init__(self, take: Take, runner: ToolRunner, report: Report, concurrency: int = 4):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._take = take
        self._runner = runner
        self._report = report
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._main = asyncio.create_task(self._serve(), name="worker-loop")

    async def _serve(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                command = await self._take()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._run(command), name=command.command_id)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, command: RunTool) -> None:
        try:
            await self._runner.run(command, self._report)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("command %s failed in the worker", command.command_id)
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        tasks = [t for t in (self._main, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
