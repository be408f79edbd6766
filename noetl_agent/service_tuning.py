"""Process settings for the long-running services (the distributed server and workers).

``event_loop_factory`` gives uvloop's event loop when it is installed: the server and the
workers spend much of their time in the event loop (HTTP, PostgreSQL, NATS), and uvloop
runs the same asyncio code with less overhead per callback and per socket operation.

``tune_garbage_collector`` freezes what start-up built (imported modules, the app, the
routes) out of every later collection and collects the youngest generation every 50,000
allocations instead of every 700. A batch of worker reports allocates tens of thousands
of short-lived objects, which reference counting frees; with the defaults the collector
ran many times per request and, as a server's state grew, each full collection walked
all of it. Cyclic garbage is still collected, just in fewer, larger passes.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

YOUNG_THRESHOLD = 50_000  # allocations between collections of the youngest generation
OLDER_THRESHOLDS = (20, 10)  # collections of one generation between those of the next


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when uvloop is installed, else None (asyncio's own)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def tune_garbage_collector() -> None:
    """Freeze the objects alive now and raise the collection thresholds (see above)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
