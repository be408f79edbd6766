"""Learning routes: semantic search over execution history (viewers may search).

``POST /api/search`` searches failures, steps, executions and playbooks;
``GET /api/executions/{id}/similar`` finds past failures like the execution's;
``GET /api/failures/clusters`` groups failures by meaning; ``GET /api/steps/anomalies``
lists step runs of unusual duration; ``POST /api/index`` (operators) indexes what is new
now instead of waiting for the background indexer. Without a search index (the server
was started without one) they answer 503; an index that cannot be opened also gives 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import StoreError
from learning.errors import IndexUnavailable, ModelUnavailable
from noetl_agent.api.deps import allow
from noetl_agent.api.problems import responses
from noetl_agent.history import History
from noetl_agent.principals import Principal

router = APIRouter(prefix="/api", tags=["learning"])
Searcher = Annotated[Principal, Depends(allow("viewer", "search execution history"))]
Indexer = Annotated[Principal, Depends(allow("operator", "index execution history"))]
Kind = Literal["failures", "steps", "executions", "playbooks"]
FilterValue = str | int | bool


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000, description="What to look for.")
    kind: Kind | None = Field(None, description="One kind of document; all four if omitted.")
    filters: dict[str, FilterValue] = Field(
        default_factory=dict,
        description="Payload equality filters: playbook_path, execution_id, step, status, "
        "tool_kind, error_kind, error_code, final, playbook_version.",
    )
    k: int = Field(10, ge=1, le=100, description="How many hits.")


async def _history(request: Request) -> History:
    history: History | None = getattr(request.app.state, "history", None)
    if history is None:
        raise StoreError(
            "this server has no search index; start it without NOETL_INDEXER=off "
            "to search execution history"
        )
    return history


HistoryDep = Annotated[History, Depends(_history)]


@asynccontextmanager
async def _unavailable_as_503() -> AsyncIterator[None]:
    try:
        yield
    except (IndexUnavailable, ModelUnavailable) as exc:
        raise StoreError(str(exc)) from exc


@router.post("/search", responses=responses(400, 403, 422, 503))
async def search(body: SearchRequest, _: Searcher, history: HistoryDep) -> list[dict[str, Any]]:
    """Documents closest in meaning to ``text``, best first, each with its score and
    links to its execution and event."""
    async with _unavailable_as_503():
        hits = await history.search(body.text, kind=body.kind, filters=body.filters, k=body.k)
    return [hit.to_dict() for hit in hits]


@router.get("/executions/{execution_id}/similar", responses=responses(400, 403, 404, 503))
async def similar(
    execution_id: str,
    _: Searcher,  # the role is checked before the index is opened
    history: HistoryDep,
    k: Annotated[int, Query(ge=1, le=100)] = 5,
) -> dict[str, Any]:
    """The execution's failure and past failures of other executions like it (400 when
    the execution has no indexed failure)."""
    async with _unavailable_as_503():
        return await history.failure_and_similar(execution_id, k=k)


@router.get("/failures/clusters", responses=responses(403, 422, 503))
async def clusters(
    _: Searcher,
    history: HistoryDep,
    threshold: Annotated[float | None, Query(gt=0, le=1)] = None,
    min_count: Annotated[int, Query(ge=1)] = 1,
    playbook: str | None = None,
) -> list[dict[str, Any]]:
    """Failures grouped by meaning across playbooks, largest group first."""
    async with _unavailable_as_503():
        found = await history.clusters(threshold=threshold, min_count=min_count, playbook=playbook)
    return [cluster.to_dict() for cluster in found]


@router.get("/steps/anomalies", responses=responses(403, 422, 503))
async def anomalies(
    _: Searcher,
    history: HistoryDep,
    playbook: str | None = None,
    step: str | None = None,
    threshold: Annotated[float | None, Query(gt=0)] = None,
    min_history: Annotated[int | None, Query(ge=3)] = None,
) -> list[dict[str, Any]]:
    """Step runs whose duration is far from their step's own history, worst first."""
    async with _unavailable_as_503():
        found = await history.anomalies(
            playbook=playbook, step=step, threshold=threshold, min_history=min_history
        )
    return [anomaly.to_dict() for anomaly in found]


@router.post("/index", responses=responses(403, 503))
async def index(_: Indexer, history: HistoryDep) -> dict[str, Any]:
    """Index what is new in the event log now; returns what was done."""
    async with _unavailable_as_503():
        report = await history.index()
    return report.to_dict()
