"""Catalog routes: register playbook versions, list them, read one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from engine.ports import CatalogEntry
from noetl_agent.api.deps import EngineDep, allow
from noetl_agent.api.models import RegisterRequest
from noetl_agent.api.problems import responses
from noetl_agent.principals import Principal

router = APIRouter(prefix="/api/catalog", tags=["catalog"])
Reader = Annotated[Principal, Depends(allow("viewer", "read the catalog"))]
Registrar = Annotated[Principal, Depends(allow("operator", "register playbooks"))]


def _listed(entry: CatalogEntry) -> dict[str, Any]:
    return {
        "path": entry.path,
        "version": entry.version,
        "name": entry.name,
        "description": entry.description,
        "registered_at": entry.registered_at,
    }


@router.post("/register", responses=responses(400, 403, 413, 422))
async def register(body: RegisterRequest, engine: EngineDep, _: Registrar) -> dict[str, Any]:
    """Validate the YAML and store it as the playbook's next version (unchanged content
    keeps its version); 422 lists every issue with path, line, message and hint."""
    entry = await engine.register(body.content)
    return {"path": entry.path, "version": entry.version, "name": entry.name}


@router.get("", responses=responses(403))
async def list_playbooks(engine: EngineDep, _: Reader) -> list[dict[str, Any]]:
    """The latest version of every playbook, by path."""
    return [_listed(entry) for entry in await engine.catalog.list()]


@router.get("/{path:path}", responses=responses(403, 404))
async def get_playbook(
    path: str, engine: EngineDep, _: Reader, version: Annotated[int | None, Query(ge=1)] = None
) -> dict[str, Any]:
    """One version of a playbook (the latest without ``version``) with its YAML."""
    entry = await engine.catalog.get(path.strip("/"), version)
    return {**_listed(entry), "content": entry.content}
