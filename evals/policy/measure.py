"""The policy eval's figures of a batch of executions of one catalog version (run and
measured by :func:`noetl_agent.demo.runs.run_batch`): did each fail, how long did it take,
what did it cost (the tool time on each pool at the pool's declared price per hour, all
attempts and retry delays included)."""

from __future__ import annotations

from typing import Any

from noetl_agent.demo.runs import Batch


def summary(batch: Batch) -> dict[str, Any]:
    """Runs, failures, failure rate, mean wall time in seconds and mean cost per run (None
    when no pool it used declares a price) of ``batch``."""
    cost = batch.mean_cost
    return {
        "runs": batch.runs,
        "failures": batch.failures,
        "failure_rate": round(batch.failure_rate, 4),
        "wall_s": round(batch.mean_wall_s, 4),
        "cost_per_run": None if cost is None else float(f"{cost:.4g}"),
    }
