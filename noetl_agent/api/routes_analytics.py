"""Analytics routes: step statistics, read-only SQL and export over the analytics store.

Each request opens the store (``NOETL_CLICKHOUSE_URL``, else chDB in the ``analytics``
folder beside the SQLite event log) and closes it after, unless the app was given one in
``app.state.analytics``. Each read exports the events stored since the last export first,
so answers are current. Refused SQL is a 400 problem
saying what is not allowed and what is; a query over its row or time limit is a 400 too;
a store that cannot be opened or reached is a 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from learning.analytics.service import Analytics
from noetl_agent.api.deps import allow
from noetl_agent.api.problems import responses
from noetl_agent.principals import Principal

router = APIRouter(prefix="/api", tags=["analytics"])
Reader = Annotated[Principal, Depends(allow("viewer", "read analytics"))]
Exporter = Annotated[Principal, Depends(allow("operator", "export analytics"))]


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(
        min_length=1,
        max_length=100_000,
        description="One SELECT, WITH ... SELECT, DESCRIBE TABLE or SHOW TABLES statement.",
    )
    max_rows: int = Field(1000, ge=1, le=100_000, description="Fail past this many rows.")
    timeout: float = Field(10.0, gt=0, le=120, description="Fail past this many seconds.")


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full: bool = Field(False, description="Rescan the whole event log (still no duplicates).")


async def _analytics(request: Request) -> AsyncIterator[Analytics]:
    preset: Analytics | None = getattr(request.app.state, "analytics", None)
    if preset is not None:
        yield preset
        return
    from noetl_agent.analytics import open_analytics

    # Open for this request only: chDB locks its folder while open, and the CLI's
    # `export`, `stats` and `analytics query` may want it between requests.
    analytics = await open_analytics(request.app.state.engine.events)
    try:
        yield analytics
    finally:
        await asyncio.to_thread(analytics.close)


AnalyticsDep = Annotated[Analytics, Depends(_analytics)]


@router.get("/stats/steps", responses=responses(403, 422, 503))
async def step_statistics(
    _: Reader,  # the role is checked before the store is opened
    analytics: AnalyticsDep,
    playbook: Annotated[str, Query(min_length=1, description="Catalog path of the playbook.")],
    step: Annotated[str | None, Query(description="One step; all steps when omitted.")] = None,
) -> dict[str, Any]:
    """Runs, failures by error class, attempts, success after k attempts, and durations
    and resource use per worker pool, for one step or every step with finished runs."""
    if step is None:
        found = await analytics.playbook_statistics(playbook)
    else:
        found = [await analytics.step_statistics(playbook, step)]
    return {"playbook": playbook, "steps": [stats.to_dict() for stats in found]}


@router.post("/analytics/query", responses=responses(400, 403, 413, 422, 503))
async def analytics_query(body: QueryRequest, _: Reader, analytics: AnalyticsDep) -> dict[str, Any]:
    """Run read-only ClickHouse SQL over the analytics tables (table ``events``)."""
    result = await analytics.query(body.sql, max_rows=body.max_rows, timeout=body.timeout)
    return result.to_dict()


@router.post("/analytics/export", responses=responses(403, 422, 503))
async def export(
    _: Exporter, analytics: AnalyticsDep, body: ExportRequest | None = None
) -> dict[str, Any]:
    """Export the events stored since the last export (reads do this by themselves)."""
    report = await analytics.export(full=(body or ExportRequest()).full)
    return report.to_dict()
