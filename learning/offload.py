"""Running blocking learning work (model inference, local Qdrant) off the event loop.

Daemon threads rather than the loop's default executor: a server stopping mid-way
through loading the model or embedding a batch must not wait for it at exit (the next
run indexes the batch again, by the same ids).

Threads are kept for reuse while idle (up to ``IDLE_SECONDS``), one set per CPU priority
(a thread cannot raise its priority again once lowered). Besides saving the start of a
thread per call, this keeps the model's working memory in the allocator arenas of a few
threads: with a new thread per call, each page of indexing allocated its activations in
another arena (on a log of two pages, the indexer's peak resident set was about 35 MB
higher).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from functools import partial
from typing import TypeVar

T = TypeVar("T")
IDLE_SECONDS = 30.0  # an idle worker thread ends after this long

_Job = Callable[[], Callable[[], None]]  # runs the work, returns how to hand over its outcome
_idle: dict[int, list[_Worker]] = {}  # by niceness, the most recently idle last
_idle_lock = threading.Lock()


class _Worker:
    """A daemon thread that runs jobs one after another, then waits to be reused."""

    def __init__(self, niceness: int) -> None:
        self.niceness = niceness
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="learning", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        if self.niceness > 0 and hasattr(os, "setpriority"):
            with contextlib.suppress(OSError):  # a thread id where threads are not tasks
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.niceness)
        while True:
            try:
                job = self.jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with _idle_lock:
                    idle = _idle.get(self.niceness, [])
                    if self in idle:  # not handed a job meanwhile: end
                        idle.remove(self)
                        return
                continue  # a job is on its way
            hand_over = job()
            with _idle_lock:  # idle again before the caller hears back, so its next call reuses it
                _idle.setdefault(self.niceness, []).append(self)
            hand_over()


def _submit(job: _Job, niceness: int) -> None:
    with _idle_lock:
        idle = _idle.get(niceness)
        worker = idle.pop() if idle else None
    if worker is None:
        worker = _Worker(niceness)
    worker.jobs.put(job)


async def offload(work: Callable[[], T], *, name: str = "learning", niceness: int = 0) -> T:
    """Run ``work`` in a daemon thread and return (or raise) what it does. A positive
    ``niceness`` lowers that thread's CPU priority (Linux), so background indexing yields
    to the work the process is there for. Calls made while others run get threads of
    their own."""
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

    def job() -> Callable[[], None]:
        threading.current_thread().name = name
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting task, which re-raises it
            return partial(deliver, None, exc)
        return partial(deliver, result, None)

    _submit(job, max(0, niceness))
    return await future
