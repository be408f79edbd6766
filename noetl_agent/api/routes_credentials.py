"""Credential routes (admin only): store, list and delete credentials by name.

Values go in and never come out: listings show names and kinds, and no answer, error
included, repeats a value.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from engine.adapters.credential_store import CredentialStore
from engine.errors import NotFound, StoreError
from noetl_agent.api.deps import allow
from noetl_agent.api.problems import responses
from noetl_agent.principals import Principal

router = APIRouter(prefix="/api/credentials", tags=["credentials"])
Admin = Annotated[Principal, Depends(allow("admin", "manage credentials"))]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class CredentialRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=200, pattern=NAME_PATTERN, description="Used by `auth:`."
    )
    kind: str = Field("generic", min_length=1, max_length=100, description="postgres, http, ...")
    data: dict[str, Any] = Field(
        min_length=1, description="The fields, e.g. {user, password} or {token}."
    )


async def _store(request: Request) -> CredentialStore:
    store: CredentialStore | None = getattr(request.app.state, "credentials", None)
    if store is None:
        raise StoreError(
            "this server has no credential store; start it with one "
            "(`noetl-agent server` uses the encrypted store of its NOETL_HOME)"
        )
    return store


Store = Annotated[CredentialStore, Depends(_store)]


@router.post("", status_code=201, responses=responses(403, 413, 422, 503))
async def store_credential(body: CredentialRequest, _: Admin, store: Store) -> dict[str, Any]:
    """Encrypt and store a credential (replacing one of the same name); the answer names
    it and counts its fields, never showing a value."""
    await store.set(body.name, body.kind, body.data)
    return {"name": body.name, "kind": body.kind, "fields": len(body.data)}


@router.get("", responses=responses(403, 503))
async def list_credentials(_: Admin, store: Store) -> list[dict[str, str]]:
    """Every stored credential's name and kind, by name."""
    return [{"name": info.name, "kind": info.kind} for info in await store.list()]


@router.delete("/{name}", status_code=204, responses=responses(403, 404, 503))
async def delete_credential(name: str, _: Admin, store: Store) -> Response:
    """Delete a credential; 404 when it is not stored."""
    if not await store.delete(name):
        raise NotFound(f"credential '{name}' is not stored; list them with GET /api/credentials")
    return Response(status_code=204)
