"""The embedded stack the demo runs on, with one in-process worker per pool.

The plain embedded engine runs every step in its own process whatever
``spec.runtime.pool`` says, so nothing could be faster on one pool than on another. The
demo hands the engine's commands to an in-process queue (the ``CommandQueue`` port of
the distributed mode) and gives every pool its own :class:`~engine.worker.loop.WorkerLoop`
(the code a distributed worker runs), whose HTTP transport names the pool
(:class:`~noetl_agent.demo.service.PoolTransport`). The demo service answers ``/render``
after that pool's service time, standing in for the pool's hardware. Events carry
``meta.pool`` as in production, so the hardware learner sees what it would see with real
pools. Events, catalog, tokens and locks are the embedded stack's: ``noetl.db`` under the
demo's home.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.adapters.memory.queue import MemoryCommandQueue
from engine.adapters.sqlite.stores import SqliteDatabase
from engine.core.commands import RunTool
from engine.runtime.embedded import Engine
from engine.runtime.redaction import process_redactor
from engine.runtime.tool_runner import ToolRunner
from engine.tools.http import HttpTool
from engine.tools.registry import ToolRegistry
from engine.worker.loop import WorkerLoop
from noetl_agent.demo.service import PoolTransport

WORKERS_PER_POOL = 4
DEFAULT_POOL = "cpu"


@dataclass
class DemoStack:
    """The running engine and the database it stores into."""

    engine: Engine
    db: SqliteDatabase
    home: Path


@asynccontextmanager
async def demo_stack(home: Path, pools: Iterable[str]) -> AsyncIterator[DemoStack]:
    """Open the engine under ``home`` with workers for ``pools`` and the default pool;
    stop them and close the store on exit."""
    home.mkdir(parents=True, exist_ok=True)
    db = SqliteDatabase.open(home / "noetl.db")
    queue = MemoryCommandQueue()
    engine = Engine(
        db.events, db.catalog, lock_dir=home / "locks", queue=queue, redactor=process_redactor()
    )
    workers: list[WorkerLoop] = []
    registries: list[ToolRegistry] = []
    try:
        for pool in sorted({DEFAULT_POOL, *pools}):
            registry = ToolRegistry()
            registry.register(HttpTool(transport=PoolTransport(pool)))
            registries.append(registry)

            async def take(pool: str = pool) -> RunTool:
                return await queue.take(pool)

            worker = WorkerLoop(take, ToolRunner(registry), engine.report, WORKERS_PER_POOL)
            worker.start()
            workers.append(worker)
        yield DemoStack(engine, db, home)
    finally:
        for worker in workers:
            await worker.aclose()
        for registry in registries:
            await registry.aclose()
        await engine.aclose()
        db.close()
