"""Agent routes: ``POST /api/generate`` turns a description into a validated, dry-run
playbook draft (operators, agents included); ``POST /api/generate/promote`` lets a draft
that runs code execute live (human operators only).

The draft comes back with its validation issues, the dry-run report, the similar
playbooks used as examples, what the offline planner could not map, every model call
with its tokens and cost, and the gate's verdict. A valid draft is registered on request
(``register``); one that runs code still waits for a human operator's promotion before it
can execute (``POST /api/execute`` answers 403 until then).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from engine.adapters.credentials import EnvCredentialProvider
from learning.secrets_mask import ListableCredentials
from noetl_agent.api.deps import EngineDep, allow
from noetl_agent.api.problems import responses
from noetl_agent.generation.errors import InvalidRequest
from noetl_agent.generation.pipeline import MAX_DESCRIPTION, MAX_REPAIRS, Constraints
from noetl_agent.generation.service import generate_on, promote_content, promote_version
from noetl_agent.principals import Principal

router = APIRouter(prefix="/api", tags=["agent"])
Author = Annotated[Principal, Depends(allow("operator", "generate playbooks"))]
Promoter = Annotated[Principal, Depends(allow("operator", "promote generated playbooks"))]
Kind = Literal[
    "python", "http", "postgres", "duckdb", "playbook", "workbook", "shell", "noop", "approval"
]


class ConstraintsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200, description="metadata.name of the draft.")
    path: str | None = Field(None, max_length=500, description="Catalog path of the draft.")
    kinds: list[Kind] | None = Field(None, description="The only tool kinds allowed.")
    workload: dict[str, Any] = Field(
        default_factory=dict, description="Workload inputs for the dry run."
    )
    fixtures: dict[str, Any] = Field(
        default_factory=dict, description="Step name → the output the dry run uses for it."
    )
    max_repairs: int = Field(2, ge=0, le=MAX_REPAIRS, description="Model repair rounds.")
    examples: int = Field(3, ge=0, le=10, description="Similar playbooks to show the model.")
    offline: bool = Field(False, description="Use the offline planner even with a model.")


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    description: str = Field(
        min_length=1, max_length=MAX_DESCRIPTION, description="What the playbook should do."
    )
    constraints: ConstraintsBody = Field(default_factory=ConstraintsBody)
    register_draft: bool = Field(
        False, alias="register", description="Register the draft when it is valid."
    )


@router.post("/generate", responses=responses(400, 403, 413, 422))
async def generate(
    body: GenerateRequest, request: Request, engine: EngineDep, principal: Author
) -> dict[str, Any]:
    """A playbook draft for the description: YAML, issues, dry-run report, examples, the
    parts not mapped, model usage, and whether it must be promoted before it runs."""
    given = body.constraints
    constraints = Constraints(
        name=given.name,
        path=given.path,
        kinds=frozenset(given.kinds) if given.kinds else None,
        workload=given.workload,
        fixtures=given.fixtures,
        max_repairs=given.max_repairs,
        examples=given.examples,
        offline=given.offline,
    )
    credentials: list[ListableCredentials] = [EnvCredentialProvider()]
    if request.app.state.credentials is not None:
        credentials.insert(0, request.app.state.credentials)
    draft = await generate_on(
        engine,
        body.description,
        constraints,
        principal=principal,
        register=body.register_draft,
        history=request.app.state.history,
        credentials=credentials,
    )
    return draft.to_dict()


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(None, min_length=1, description="Catalog path of the draft.")
    version: int | None = Field(None, ge=1, description="Catalog version; latest if omitted.")
    content: str | None = Field(
        None, min_length=1, description="The draft's YAML, instead of a catalog path."
    )
    comment: str | None = Field(None, max_length=10_000, description="Why it may run.")


@router.post("/generate/promote", responses=responses(400, 403, 404, 413, 422))
async def promote(body: PromoteRequest, engine: EngineDep, principal: Promoter) -> dict[str, Any]:
    """Let a generated draft that runs code execute live: a human operator's decision,
    recorded with who made it (403 for agents). Give the draft by ``path`` (and
    ``version``) or by ``content``."""
    if (body.path is None) == (body.content is None):
        raise InvalidRequest("give the draft's catalog `path` or its YAML `content`, not both")
    if body.content is not None:
        status = await promote_content(
            engine, body.content, principal=principal, comment=body.comment
        )
    else:
        assert body.path is not None
        status = await promote_version(
            engine, body.path.strip("/"), body.version, principal=principal, comment=body.comment
        )
    return status.to_dict()
