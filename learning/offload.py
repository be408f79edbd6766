"""Running blocking learning work (model inference, local Qdrant) off the event loop.

A daemon thread rather than the loop's default executor: a server stopping mid-way
through loading the model or embedding a batch must not wait for it at exit (the next
run indexes the batch again, by the same ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def offload(work: Callable[[], T], *, name: str = "learning", niceness: int = 0) -> T:
    """Run ``work`` in a daemon thread and return (or raise) what it does. A positive
    ``niceness`` lowers that thread's CPU priority (Linux), so background indexing yields
    to the work the process is there for."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def deliver(result: T | None, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while the work ran
            loop.call_soon_threadsafe(settle, result, error)

    def target() -> None:
        if niceness > 0 and hasattr(os, "setpriority"):
            with contextlib.suppress(OSError):  # a thread id where threads are not tasks
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting task, which re-raises it
            deliver(None, exc)
        else:
            deliver(result, None)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future
