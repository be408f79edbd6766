"""The embedded engine the policy eval runs on, with one in-process worker per pool.

The plain embedded engine runs every step in the same process whatever its
``spec.runtime.pool``, so a step could not be faster on one pool than on another. Here the
engine hands its commands to an in-process queue (the same ``CommandQueue`` port the
distributed mode uses) and one :class:`~engine.worker.loop.WorkerLoop` per pool takes
them: each pool's workers have their own tool registry whose HTTP transport names the
pool (:class:`~evals.policy.simulator.PoolTransport`), so the simulator can answer with
that pool's service time. Events, catalog and locks are the embedded stack's: one SQLite
file under the eval's own ``NOETL_HOME``.
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
from engine.runtime.tool_runner import ToolRunner
from engine.tools.http import HttpTool
from engine.tools.registry import ToolRegistry
from engine.worker.loop import WorkerLoop
from evals.policy.simulator import PoolTransport

WORKERS_PER_POOL = 4


@dataclass
class Stack:
    """The running engine and what it stores into."""

    engine: Engine
    db: SqliteDatabase
    home: Path


@asynccontextmanager
async def eval_stack(home: Path, pools: Iterable[str]) -> AsyncIterator[Stack]:
    """Open the engine under ``home`` with workers for ``pools`` (and ``cpu``, the
    default pool); stop them and close the store on exit."""
    home.mkdir(parents=True, exist_ok=True)
    db = SqliteDatabase.open(home / "noetl.db")
    queue = MemoryCommandQueue()
    engine = Engine(db.events, db.catalog, lock_dir=home / "locks", queue=queue)
    workers: list[WorkerLoop] = []
    registries: list[ToolRegistry] = []
    for pool in sorted({"cpu", *pools}):
        registry = ToolRegistry()
        registry.register(HttpTool(transport=PoolTransport(pool)))
        registries.append(registry)

        async def take(pool: str = pool) -> RunTool:
            return await queue.take(pool)

        worker = WorkerLoop(take, ToolRunner(registry), engine.report, WORKERS_PER_POOL)
        worker.start()
        workers.append(worker)
    try:
        yield Stack(engine, db, home)
    finally:
        for worker in workers:
            await worker.aclose()
        for registry in registries:
            await registry.aclose()
        await engine.aclose()
        db.close()
