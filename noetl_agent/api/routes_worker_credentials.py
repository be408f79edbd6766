"""A distributed worker reads a credential its claimed command needs.

``POST /api/commands/{command_id}/credentials/{name}`` with ``{"worker_id"}`` answers
``{name, kind, data}`` only when all of these hold:

- the token holds the ``worker`` role itself (an admin token is refused: values leave the
  server to workers only, never to a person or an agent);
- ``worker_id``, under this token, holds an unexpired claim on the command (409
  otherwise: the claim expired, went to another worker, or the command ended);
- the command's tools name the credential in ``auth`` (a literal name, or any name the
  playbook's ``keychain`` declares when ``auth`` is a template), else 403;
- the credential is stored on the server (404 otherwise: the worker then asks its own
  host's sources).

Every value handed out is learned by the engine's redactor first, so it is masked in
every event the worker reports afterwards, whatever the worker did, and in the server's
logs. The request and its answer are never logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from engine.adapters.credential_store import CredentialKeyError, CredentialStore
from engine.adapters.credentials import CredentialNotFound
from engine.errors import NotFound, StoreError
from noetl_agent.api.deps import CommandsDep, EngineDep, worker_token
from noetl_agent.api.models import WorkerRequest
from noetl_agent.api.problems import responses
from noetl_agent.api.routes_commands import claimant, leases
from noetl_agent.errors import Forbidden
from noetl_agent.principals import Principal

router = APIRouter(prefix="/api", tags=["commands"])


Worker = Annotated[Principal, Depends(worker_token("read the credentials of a claimed command"))]


def _auth_names(tools: Any) -> tuple[set[str], bool]:
    """The credential names the tools' ``auth`` gives literally, and whether one is a
    template (its name is only known when the tool renders it)."""
    names: set[str] = set()
    templated = False
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, Mapping):
            continue
        auth = tool.get("auth")
        if isinstance(auth, Mapping):
            auth = auth.get("credential") or auth.get("name") or auth.get("key")
        if not isinstance(auth, str) or not auth:
            continue
        if "{{" in auth or "{%" in auth:
            templated = True
        else:
            names.add(auth)
    return names, templated


async def _needed(engine: EngineDep, command: Mapping[str, Any]) -> set[str]:
    names, templated = _auth_names(command.get("tools"))
    if templated:
        machine = await engine.resume(str(command.get("execution_id")))
        names.update(entry.name for entry in machine.playbook.keychain)
    return names


def _store(request: Request) -> CredentialStore:
    store: CredentialStore | None = getattr(request.app.state, "credentials", None)
    if store is None:
        raise StoreError(
            "this server has no credential store; the worker uses its own host's credentials"
        )
    return store


@router.post(
    "/commands/{command_id:path}/credentials/{name}", responses=responses(403, 404, 409, 422, 503)
)
async def command_credential(
    command_id: str,
    name: str,
    body: WorkerRequest,
    request: Request,
    engine: EngineDep,
    commands: CommandsDep,
    who: Worker,
) -> dict[str, Any]:
    """The credential ``name`` for the command the worker holds (see the module doc)."""
    command = await leases(commands, command_id).held(command_id, claimant(who, body.worker_id))
    needed = await _needed(engine, command)
    if name not in needed:
        listed = ", ".join(sorted(needed)) or "none"
        raise Forbidden(
            f"command '{command_id}' does not use credential '{name}' (its tools name: "
            f"{listed}); a worker gets only the credentials of the command it runs"
        )
    store = _store(request)
    try:
        credential = await store.get(name)
    except CredentialNotFound:
        raise NotFound(
            f"credential '{name}' is not stored on this server; store it with `noetl-agent "
            f"credentials set {name} --server URL ...` or define it on the worker's host"
        ) from None
    except CredentialKeyError as exc:
        raise StoreError(str(exc)) from None
    fields = dict(credential)
    engine.redactor.learn(fields)
    return {"name": name, "kind": credential.kind, "data": fields}
