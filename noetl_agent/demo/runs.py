"""Running a batch of executions of one playbook version and measuring each: did it
fail, how long did it take, what did it cost (tool time on each pool at the pool's
declared price per hour)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from engine.core import events as ev
from engine.runtime.embedded import Engine

RUN_TIMEOUT_S = 60.0
Progress = Callable[[bool], None]  # called after each run with whether it succeeded


class Workload(Protocol):
    """What a batch runs: a catalog playbook and the workload of its n-th run."""

    @property
    def path(self) -> str: ...

    def workload(self, base_url: str, index: int) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One execution of the batch."""

    execution_id: str
    version: int
    ok: bool
    wall_s: float
    cost: float | None  # None when no pool it used declares a price


@dataclass
class Batch:
    """Executions of one version, in order."""

    path: str
    version: int
    records: list[RunRecord] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return len(self.records)

    @property
    def failures(self) -> int:
        return sum(1 for record in self.records if not record.ok)

    @property
    def failure_rate(self) -> float:
        return self.failures / self.runs if self.runs else 0.0

    @property
    def mean_wall_s(self) -> float:
        return sum(r.wall_s for r in self.records) / self.runs if self.runs else 0.0

    @property
    def mean_cost(self) -> float | None:
        costs = [r.cost for r in self.records if r.cost is not None]
        return sum(costs) / len(costs) if costs else None

    def first_failure(self) -> str | None:
        """The id of the first failed execution, if any failed."""
        return next((r.execution_id for r in self.records if not r.ok), None)

    def to_dict(self) -> dict[str, Any]:
        cost = self.mean_cost
        return {
            "version": self.version,
            "runs": self.runs,
            "failures": self.failures,
            "failure_rate": round(self.failure_rate, 4),
            "mean_wall_s": round(self.mean_wall_s, 4),
            "cost_per_run": None if cost is None else float(f"{cost:.4g}"),
        }


def pool_prices(content: str) -> dict[str, float]:
    """Price per hour of each pool the playbook declares with one."""
    document = yaml.safe_load(content) or {}
    return {
        str(pool["name"]): float(pool["cost_per_hour"])
        for pool in document.get("pools") or []
        if pool.get("cost_per_hour") is not None
    }


async def run_cost(engine: Engine, execution_id: str, prices: Mapping[str, float]) -> float | None:
    """The execution's tool time priced by pool (None when no pool it used has a price)."""
    total, priced = 0.0, False
    for event in await engine.events.read(execution_id):
        if event.event_type != ev.TOOL_PROCESSED:
            continue
        meta = event.payload.get("meta") or {}
        price = prices.get(str(meta.get("pool")))
        wall_ms = (meta.get("usage") or {}).get("wall_ms")
        if price is None or not isinstance(wall_ms, int | float):
            continue
        total += wall_ms / 3_600_000 * price
        priced = True
    return total if priced else None


async def run_batch(
    engine: Engine,
    example: Workload,
    base_url: str,
    runs: int,
    *,
    path: str | None = None,
    version: int | None = None,
    first_index: int = 0,
    progress: Progress | None = None,
) -> Batch:
    """Run ``runs`` executions of ``example`` (of the playbook at ``path`` if given, with
    ``example``'s workloads) one after another, the latest version unless ``version``,
    calling ``progress`` after each."""
    entry = await engine.catalog.get(path or example.path, version)
    prices = pool_prices(entry.content)
    batch = Batch(entry.path, entry.version)
    for index in range(first_index, first_index + runs):
        started = time.monotonic()
        execution_id = await engine.execute(
            entry.path, version=entry.version, workload=example.workload(base_url, index)
        )
        outcome = await engine.wait(execution_id, timeout=RUN_TIMEOUT_S)
        wall = time.monotonic() - started
        cost = await run_cost(engine, execution_id, prices)
        ok = outcome.status == "completed"
        batch.records.append(RunRecord(execution_id, entry.version, ok, wall, cost))
        if progress is not None:
            progress(ok)
    return batch
