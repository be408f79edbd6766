"""Health and metrics: unauthenticated, outside ``/api``, for probes and scrapers."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from noetl_agent.api.deps import EngineDep, MetricsDep
from noetl_agent.api.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])
logger = logging.getLogger(__name__)
SCAN_LIMIT = 1_000_000  # executions read to count them by status


@router.get("/health", responses={503: {"description": "A store cannot be read"}})
async def health(request: Request, engine: EngineDep) -> JSONResponse:
    """200 when the event store, catalog and token store can be read, else 503."""
    probes: dict[str, Any] = {
        "event_store": lambda: engine.events.list_executions(limit=1),
        "catalog": engine.catalog.list,
        "tokens": request.app.state.tokens.list,
    }
    checks: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            await probe()
            checks[name] = "ok"
        except Exception as exc:  # a probe boundary: any failure means unhealthy
            logger.warning("health check %s failed: %s", name, exc)
            checks[name] = f"error: {exc}"
    healthy = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(engine: EngineDep, metrics: MetricsDep) -> PlainTextResponse:
    """Prometheus text exposition: executions by status, step and event counters."""
    rows = await engine.events.list_executions(limit=SCAN_LIMIT)
    text = metrics.render(Counter(row.status for row in rows))
    return PlainTextResponse(text, media_type=CONTENT_TYPE)
