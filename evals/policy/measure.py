"""Runs a batch of executions of one catalog version and measures each: did it fail, how
long did it take, what did it cost (the tool time on each pool at the pool's declared
price per hour, all attempts and retry delays included)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from engine.runtime.embedded import Engine
from evals.policy.scenarios import Scenario
from noetl_agent.demo.runs import RUN_TIMEOUT_S, RunRecord, pool_prices, run_cost


@dataclass
class Batch:
    """Executions of one version, in order."""

    records: list[RunRecord] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def failures(self) -> int:
        return sum(1 for record in self.records if not record.ok)

    @property
    def failure_rate(self) -> float:
        return self.failures / self.n if self.n else 0.0

    @property
    def mean_wall_s(self) -> float:
        return sum(r.wall_s for r in self.records) / self.n if self.n else 0.0

    @property
    def mean_cost(self) -> float | None:
        costs = [r.cost for r in self.records if r.cost is not None]
        return sum(costs) / len(costs) if costs else None

    def summary(self) -> dict[str, Any]:
        cost = self.mean_cost
        return {
            "runs": self.n,
            "failures": self.failures,
            "failure_rate": round(self.failure_rate, 4),
            "wall_s": round(self.mean_wall_s, 4),
            "cost_per_run": None if cost is None else float(f"{cost:.4g}"),
        }


async def run_batch(
    engine: Engine,
    scenario: Scenario,
    base_url: str,
    runs: int,
    *,
    path: str | None = None,
    version: int | None = None,
    first_index: int = 0,
) -> Batch:
    """Run ``runs`` executions one after another (the latest version unless ``version``)."""
    entry = await engine.catalog.get(path or scenario.path, version)
    prices = pool_prices(entry.content)
    batch = Batch()
    for index in range(first_index, first_index + runs):
        started = time.monotonic()
        execution_id = await engine.execute(
            entry.path, version=entry.version, workload=scenario.workload(base_url, index)
        )
        outcome = await engine.wait(execution_id, timeout=RUN_TIMEOUT_S)
        wall = time.monotonic() - started
        cost = await run_cost(engine, execution_id, prices)
        batch.records.append(
            RunRecord(execution_id, entry.version, outcome.status == "completed", wall, cost)
        )
    return batch
