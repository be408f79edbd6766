"""Explanation routes: why an execution failed, and whether the explanation helped.

``POST /api/executions/{id}/explain`` (viewers, agents included) answers the root cause,
the evidence and suggested fixes (:mod:`noetl_agent.explain`); without a search index it
still answers, from the rules alone, and says so in ``notes``. ``POST
/api/executions/{id}/feedback`` (operators) records whether the explanation helped, as a
``feedback.recorded`` event of the execution. Both answer 404 for an unknown execution.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from engine.adapters.credentials import EnvCredentialProvider
from noetl_agent.api.deps import EngineDep, allow
from noetl_agent.api.problems import responses
from noetl_agent.explain import Explainer
from noetl_agent.principals import Principal

router = APIRouter(prefix="/api", tags=["learning"])
Reader = Annotated[Principal, Depends(allow("viewer", "explain executions"))]
Rater = Annotated[Principal, Depends(allow("operator", "record feedback on explanations"))]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    helpful: bool = Field(description="Whether the explanation helped.")
    comment: str | None = Field(None, max_length=4000, description="What was right or wrong.")
    cause: str | None = Field(
        None,
        max_length=200,
        description="The cause id the feedback is about; the explanation's first cause if omitted.",
    )


async def _explainer(request: Request, engine: EngineDep) -> Explainer:
    """One explainer per app: the engine's stores, the app's search index (if any), and
    the app's credential store for masking."""
    explainer: Explainer | None = getattr(request.app.state, "explainer", None)
    if explainer is None:
        credentials = getattr(request.app.state, "credentials", None)
        sources: list[Any] = [EnvCredentialProvider()]
        if credentials is not None:
            sources.insert(0, credentials)
        explainer = Explainer(
            engine.events,
            engine.catalog,
            history=getattr(request.app.state, "history", None),
            credentials=sources,
        )
        request.app.state.explainer = explainer
    return explainer


ExplainerDep = Annotated[Explainer, Depends(_explainer)]


@router.post("/executions/{execution_id}/explain", responses=responses(403, 404))
async def explain(execution_id: str, _: Reader, explainer: ExplainerDep) -> dict[str, Any]:
    """Why the execution failed: the failed step's evidence (secrets masked), the ranked
    likely causes, similar past failures and how they were resolved, suggested fixes,
    and prose when the server has a model. An execution that did not fail is answered
    with ``failed: false`` and a summary saying so."""
    explanation = await explainer.explain(execution_id)
    return explanation.to_dict()


@router.post(
    "/executions/{execution_id}/feedback", status_code=201, responses=responses(403, 404, 422)
)
async def feedback(
    execution_id: str, body: FeedbackRequest, who: Rater, explainer: ExplainerDep
) -> dict[str, Any]:
    """Record whether the explanation of the execution helped; later explanations of
    similar failures weigh the cause by it."""
    recorded = await explainer.record_feedback(
        execution_id, helpful=body.helpful, principal=who, comment=body.comment, cause=body.cause
    )
    return recorded.to_dict()
