"""Health and metrics: unauthenticated, outside ``/api``, for probes and scrapers.

``/health`` runs every probe (the stores, plus the app's extra ``probes``: the database
and NATS in the distributed mode), each within ``PROBE_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from noetl_agent.api.deps import CommandsDep, EngineDep, MetricsDep
from noetl_agent.api.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])
logger = logging.getLogger(__name__)
SCAN_LIMIT = 1_000_000  # executions read to count them by status
PROBE_TIMEOUT = 5.0  # seconds one health probe may take
Probe = Callable[[], Awaitable[Any]]


@router.get("/health", responses={503: {"description": "A store cannot be read"}})
async def health(request: Request, engine: EngineDep) -> JSONResponse:
    """200 when the event store, catalog and token store can be read (and, distributed,
    the database and NATS answer), else 503 with the failing check's error."""
    probes: dict[str, Probe] = {
        "event_store": lambda: engine.events.list_executions(limit=1),
        "catalog": engine.catalog.list,
        "tokens": request.app.state.tokens.list,
        **request.app.state.probes,
    }
    checks: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe(), PROBE_TIMEOUT)
            checks[name] = "ok"
        except TimeoutError:
            logger.warning("health check %s timed out", name)
            checks[name] = f"error: no answer within {PROBE_TIMEOUT:g}s"
        except Exception as exc:  # a probe boundary: any failure means unhealthy
            logger.warning("health check %s failed: %s", name, exc)
            checks[name] = f"error: {exc}"
    healthy = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(
    engine: EngineDep, metrics: MetricsDep, commands: CommandsDep
) -> PlainTextResponse:
    """Prometheus text exposition: executions by status, step and event counters and,
    distributed, the commands queued and claimed per worker pool."""
    rows = await engine.events.list_executions(limit=SCAN_LIMIT)
    depth = await commands.counts() if commands is not None else None
    text = metrics.render(Counter(row.status for row in rows), depth)
    return PlainTextResponse(text, media_type=CONTENT_TYPE)
