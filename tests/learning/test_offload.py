"""Blocking work runs off the event loop, on reused daemon threads of its priority."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from learning.offload import offload


async def test_results_and_errors_come_back_and_threads_are_reused() -> None:
    first = await offload(threading.current_thread)
    assert first is not threading.current_thread()
    assert await offload(threading.current_thread) is first  # the idle thread is reused
    assert await offload(lambda: threading.current_thread().name, name="indexer") == "indexer"
    assert await offload(lambda: threading.current_thread().daemon)

    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await offload(fail)
    assert await offload(lambda: 42) == 42  # the thread survives the error


async def test_concurrent_calls_run_on_threads_of_their_own() -> None:
    both = threading.Barrier(2, timeout=10)

    def meet() -> int:
        both.wait()  # returns only when the other call runs at the same time
        return threading.get_ident()

    a, b = await asyncio.gather(offload(meet), offload(meet))
    assert a != b


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="thread priorities are Linux's")
async def test_niceness_applies_to_its_own_threads_only() -> None:
    def priority() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert await offload(priority, niceness=5) == min(19, base + 5)
    assert await offload(priority) == base  # a thread of normal priority, not the lowered one
