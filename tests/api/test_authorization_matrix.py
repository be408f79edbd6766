"""Every route the app mounts, against every kind of caller, on the embedded and on the
distributed app: no token or a bad one is 401, a principal without the needed role gets a
403 problem naming that role, and one with it succeeds.

The routes are read from the app itself, so a new endpoint without an entry in ``ROUTES``
fails ``test_every_mounted_route_is_in_the_matrix``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import HELLO
from tests.distributed_stack import command_path, distributed_stack
from tests.principals import PRINCIPALS, create_tokens

GATE_FIRST = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: gatefirst, path: api/gatefirst}
workflow:
  - step: start
    tool: {kind: approval, prompt: "Go?"}
"""
CREDENTIAL_USER = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: creduser, path: api/creduser}
workflow:
  - step: start
    tool: {kind: postgres, auth: warehouse, query: "SELECT 1"}
"""
HUMAN_APPROVER = {"approver", "admin"}
HUMAN_OPERATOR = {"admin"}  # the only human principal holding the operator role
VIEWERS = {"viewer", "operator", "approver", "agent-approver", "admin", "agent-admin"}
OPERATORS = {"operator", "admin", "agent-admin"}
WORKERS = {"worker", "admin", "agent-admin"}
ADMINS = {"admin", "agent-admin"}
WORKER_TOKENS = {"worker"}  # credential values go to worker tokens only, never to admins
PUBLIC = "public"


@dataclass
class Ctx:
    """One app (embedded or distributed) and a client for it."""

    api: httpx.AsyncClient
    secrets: dict[str, str]
    distributed: bool
    store: Any = None  # the command store of the distributed app
    engine: Any = None
    counter: int = 0
    caller: str | None = None  # who the case is about to call as

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[who]}"}

    def fresh(self) -> int:
        self.counter += 1
        return self.counter

    async def ok(self, method: str, url: str, body: Any = None) -> Any:
        """A setup call as the admin, which must succeed."""
        answer = await self.api.request(method, url, json=body, headers=self.auth("admin"))
        assert answer.is_success, answer.text
        return answer.json() if answer.content else None

    async def execution(self, content: str = HELLO) -> str:
        path = (await self.ok("POST", "/api/catalog/register", {"content": content}))["path"]
        started = await self.ok("POST", "/api/execute", {"path": path})
        return str(started["execution_id"])

    async def paused(self) -> str:
        """An execution waiting for its approval; returns the approval id."""
        execution_id = await self.execution(GATE_FIRST)
        for _ in range(100):
            pending = await self.ok("GET", "/api/approvals")
            ids = [a["approval_id"] for a in pending if a["execution_id"] == execution_id]
            if ids:
                return str(ids[0])
            await asyncio.sleep(0.05)
        raise AssertionError("the approval was never requested")

    async def queued(self) -> str:
        """The id of a command of the distributed app, stored and waiting for a claim."""
        execution_id = await self.execution(CREDENTIAL_USER)
        for _ in range(100):
            if await self.store.queued([execution_id]):
                return f"{execution_id}:start#1"
            await asyncio.sleep(0.05)
        raise AssertionError("the command was never stored")

    async def claimed(self, worker_id: str) -> tuple[str, dict[str, Any]]:
        """A command of the distributed app claimed by ``worker_id``: (id, command). The
        claim is made with the caller's token when it may claim (a claim is held under
        the token that made it), else with the worker's."""
        command_id = await self.queued()
        holder = self.caller if self.caller in WORKERS else "worker"
        answer = await self.api.post(
            command_path(command_id, "claim"),
            json={"worker_id": worker_id},
            headers=self.auth(holder),
        )
        assert answer.status_code == 200, answer.text
        return command_id, answer.json()["command"]


Prepare = Callable[[Ctx], Awaitable[tuple[str, Any]]]


def fixed(url: str, body: Any = None) -> Prepare:
    async def prepare(ctx: Ctx) -> tuple[str, Any]:
        return url, body

    return prepare


async def _catalog_entry(ctx: Ctx) -> tuple[str, Any]:
    await ctx.ok("POST", "/api/catalog/register", {"content": HELLO})
    return "/api/catalog/api/hello", None


async def _register(ctx: Ctx) -> tuple[str, Any]:
    return "/api/catalog/register", {"content": HELLO.replace("n: 1", f"n: {ctx.fresh()}")}


async def _execute(ctx: Ctx) -> tuple[str, Any]:
    await ctx.ok("POST", "/api/catalog/register", {"content": HELLO})
    return "/api/execute", {"path": "api/hello"}


async def _execution(ctx: Ctx) -> tuple[str, Any]:
    return f"/api/executions/{await ctx.execution()}", None


async def _events(ctx: Ctx) -> tuple[str, Any]:
    return f"/api/executions/{await ctx.execution()}/events", None


async def _cancel(ctx: Ctx) -> tuple[str, Any]:
    approval_id = await ctx.paused()
    return f"/api/executions/{approval_id.split('/')[0]}/cancel", {"reason": "matrix"}


def _event(execution_id: str, key: str, tool: str) -> dict[str, Any]:
    return {
        "event_id": f"{execution_id}:start#1:matrix:{key}",
        "event_type": "tool.started",
        "execution_id": execution_id,
        "timestamp": "2026-01-01T00:00:00Z",
        "entity_type": "tool",
        "entity_id": f"start.{tool}",
        "step_run_id": "start#1",
    }


async def _reported(ctx: Ctx) -> dict[str, Any]:
    """An event a worker may report: on the embedded app, for a paused execution; on the
    distributed one, for a command claimed under the caller's token when it may claim
    (reports are bound to the claim's token, admins' included)."""
    if not ctx.distributed:
        approval_id = await ctx.paused()
        return _event(approval_id.split("/")[0], str(ctx.fresh()), "approval")
    command_id, _ = await ctx.claimed("w")
    return _event(command_id.split(":")[0], str(ctx.fresh()), "postgres")


async def _report(ctx: Ctx) -> tuple[str, Any]:
    return "/api/events", await _reported(ctx)


async def _report_batch(ctx: Ctx) -> tuple[str, Any]:
    return "/api/events/batch", {"events": [await _reported(ctx)]}


async def _decide(ctx: Ctx) -> tuple[str, Any]:
    approval_id = await ctx.paused()
    return f"/api/approvals/{quote(approval_id, safe='/')}/decision", {"approved": True}


async def _claim(ctx: Ctx) -> tuple[str, Any]:
    if not ctx.distributed:
        return command_path("x:start#1", "claim"), {"worker_id": "w"}
    return command_path(await ctx.queued(), "claim"), {"worker_id": "w"}


async def _heartbeat(ctx: Ctx) -> tuple[str, Any]:
    if not ctx.distributed:
        return command_path("x:start#1", "heartbeat"), {"worker_id": "w"}
    command_id, _ = await ctx.claimed("w")
    return command_path(command_id, "heartbeat"), {"worker_id": "w"}


async def _command_credential(ctx: Ctx) -> tuple[str, Any]:
    if not ctx.distributed:
        return command_path("x:start#1", "credentials") + "/warehouse", {"worker_id": "w"}
    command_id, _ = await ctx.claimed("w")
    return command_path(command_id, "credentials") + "/warehouse", {"worker_id": "w"}


async def _store_credential(ctx: Ctx) -> tuple[str, Any]:
    return "/api/credentials", {"name": f"c{ctx.fresh()}", "data": {"token": "matrix-secret"}}


async def _delete_credential(ctx: Ctx) -> tuple[str, Any]:
    name = f"d{ctx.fresh()}"
    await ctx.ok("POST", "/api/credentials", {"name": name, "data": {"token": "to-delete"}})
    return f"/api/credentials/{name}", None


async def _generated_draft(ctx: Ctx) -> tuple[str, Any]:
    """A registered generated draft that runs code, to be promoted."""
    draft = await ctx.ok(
        "POST",
        "/api/generate",
        {
            "description": "Fetch https://example.test/items and count them",
            "constraints": {"examples": 0, "name": "matrix_draft"},
            "register": True,
        },
    )
    return "/api/generate/promote", {"path": draft["registered"]["path"]}


async def _similar(ctx: Ctx) -> tuple[str, Any]:
    return f"/api/executions/{await ctx.execution()}/similar", None


async def _explain(ctx: Ctx) -> tuple[str, Any]:
    return f"/api/executions/{await ctx.execution()}/explain", None


async def _feedback(ctx: Ctx) -> tuple[str, Any]:
    return f"/api/executions/{await ctx.execution()}/feedback", {"helpful": True}


def _proposal_body(ctx: Ctx) -> dict[str, Any]:
    """A hand-written proposal no other one equals (a fresh workload value)."""
    return {
        "playbook": "api/hello",
        "step": "start",
        "kind": "timeout",
        "patch": [{"op": "replace", "path": "/workload/n", "value": 1000 + ctx.fresh()}],
        "rationale": "matrix",
    }


async def _submit_proposal(ctx: Ctx) -> tuple[str, Any]:
    await ctx.ok("POST", "/api/catalog/register", {"content": HELLO})
    return "/api/proposals", _proposal_body(ctx)


async def _pending_proposal(ctx: Ctx, who: str = "admin") -> str:
    await ctx.ok("POST", "/api/catalog/register", {"content": HELLO})
    answer = await ctx.api.post("/api/proposals", json=_proposal_body(ctx), headers=ctx.auth(who))
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def _proposal(ctx: Ctx) -> tuple[str, Any]:
    return f"/api/proposals/{await _pending_proposal(ctx)}", None


async def _decide_proposal(ctx: Ctx) -> tuple[str, Any]:
    proposal_id = await _pending_proposal(ctx, "operator")  # so no approver proposed it
    return f"/api/proposals/{proposal_id}/decision", {"approved": True}


# (method, route path as mounted) → (prepare the request, who may call it)
ROUTES: dict[tuple[str, str], tuple[Prepare, set[str] | str]] = {
    ("GET", "/api/catalog"): (fixed("/api/catalog"), VIEWERS),
    ("GET", "/api/catalog/{path:path}"): (_catalog_entry, VIEWERS),
    ("POST", "/api/catalog/register"): (_register, OPERATORS),
    ("POST", "/api/execute"): (_execute, OPERATORS),
    ("GET", "/api/executions"): (fixed("/api/executions"), VIEWERS),
    ("GET", "/api/executions/{execution_id}"): (_execution, VIEWERS),
    ("GET", "/api/executions/{execution_id}/events"): (_events, VIEWERS),
    ("POST", "/api/executions/{execution_id}/cancel"): (_cancel, OPERATORS),
    ("POST", "/api/events"): (_report, WORKERS),
    ("POST", "/api/events/batch"): (_report_batch, WORKERS),
    ("GET", "/api/approvals"): (fixed("/api/approvals"), VIEWERS),
    ("POST", "/api/approvals/{approval_id:path}/decision"): (_decide, HUMAN_APPROVER),
    ("POST", "/api/commands/{command_id:path}/claim"): (_claim, WORKERS),
    ("POST", "/api/commands/{command_id:path}/heartbeat"): (_heartbeat, WORKERS),
    ("POST", "/api/commands/{command_id:path}/credentials/{name}"): (
        _command_credential,
        WORKER_TOKENS,
    ),
    ("GET", "/api/credentials"): (fixed("/api/credentials"), ADMINS),
    ("POST", "/api/credentials"): (_store_credential, ADMINS),
    ("DELETE", "/api/credentials/{name}"): (_delete_credential, ADMINS),
    ("POST", "/api/search"): (fixed("/api/search", {"text": "boom"}), VIEWERS),
    ("GET", "/api/executions/{execution_id}/similar"): (_similar, VIEWERS),
    ("POST", "/api/executions/{execution_id}/explain"): (_explain, VIEWERS),
    ("POST", "/api/executions/{execution_id}/feedback"): (_feedback, OPERATORS),
    ("GET", "/api/failures/clusters"): (fixed("/api/failures/clusters"), VIEWERS),
    ("GET", "/api/steps/anomalies"): (fixed("/api/steps/anomalies"), VIEWERS),
    ("POST", "/api/index"): (fixed("/api/index"), OPERATORS),
    ("POST", "/api/generate"): (
        fixed(
            "/api/generate",
            {"description": "Fetch https://example.test/items", "constraints": {"examples": 0}},
        ),
        OPERATORS,
    ),
    ("POST", "/api/generate/promote"): (_generated_draft, HUMAN_OPERATOR),
    ("GET", "/api/stats/steps"): (fixed("/api/stats/steps?playbook=api/hello"), VIEWERS),
    ("POST", "/api/analytics/query"): (
        fixed("/api/analytics/query", {"sql": "SELECT count() AS n FROM events"}),
        VIEWERS,
    ),
    ("POST", "/api/analytics/export"): (fixed("/api/analytics/export", {}), OPERATORS),
    ("POST", "/api/proposals/suggest"): (fixed("/api/proposals/suggest"), OPERATORS),
    ("GET", "/api/proposals"): (fixed("/api/proposals"), VIEWERS),
    ("POST", "/api/proposals"): (_submit_proposal, OPERATORS),
    ("GET", "/api/proposals/{proposal_id}"): (_proposal, VIEWERS),
    ("POST", "/api/proposals/{proposal_id}/decision"): (_decide_proposal, HUMAN_APPROVER),
    ("GET", "/health"): (fixed("/health"), PUBLIC),
    ("GET", "/metrics"): (fixed("/metrics"), PUBLIC),
    ("GET", "/openapi.json"): (fixed("/openapi.json"), PUBLIC),
    ("GET", "/docs"): (fixed("/docs"), PUBLIC),
    ("GET", "/docs/oauth2-redirect"): (fixed("/docs/oauth2-redirect"), PUBLIC),
    ("GET", "/redoc"): (fixed("/redoc"), PUBLIC),
}
# On the embedded stack no command is handed out: these answer 404 to anyone allowed.
EMBEDDED_404 = {key for key in ROUTES if key[1].startswith("/api/commands/")}
# Search needs a vector index and a model, which these apps are built without: anyone
# allowed gets 503 (tests/api of the search routes cover what they answer).
NO_INDEX = {
    ("POST", "/api/search"),
    ("GET", "/api/executions/{execution_id}/similar"),
    ("GET", "/api/failures/clusters"),
    ("GET", "/api/steps/anomalies"),
    ("POST", "/api/index"),
}
ROLE_NAMED = {
    id(VIEWERS): "needs the viewer role",
    id(OPERATORS): "needs the operator role",
    id(WORKERS): "needs the worker role",
    id(ADMINS): "needs the admin role",
    id(HUMAN_OPERATOR): "needs the operator role",
    id(WORKER_TOKENS): "needs the worker role",
}
BAD_HEADERS = ("Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer ")


def mounted(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route the app serves, HEAD left out."""

    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                yield from walk(inner.routes, prefix)
                continue
            for method in sorted(getattr(route, "methods", None) or ()):
                if method != "HEAD":
                    yield method, prefix + route.path

    yield from walk(list(app.routes), "")


@contextlib.asynccontextmanager
async def embedded(tmp_path: Any) -> AsyncIterator[tuple[FastAPI, Ctx]]:
    from engine.adapters.credential_store import CredentialKey, EncryptedCredentialStore
    from engine.adapters.sqlite.stores import SqliteDatabase
    from engine.runtime.embedded import Engine
    from noetl_agent.api import create_app
    from noetl_agent.tokens import SqliteTokenStore
    from tests.distributed_stack import CREDENTIAL_KEY

    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks")
    tokens = SqliteTokenStore(db)
    secrets = await create_tokens(tokens)
    store = EncryptedCredentialStore.sqlite(db, CredentialKey(secret=CREDENTIAL_KEY))
    app = create_app(engine, tokens, credentials=store)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as api:
            yield app, Ctx(api, secrets, distributed=False, engine=engine)
    finally:
        await engine.aclose()
        db.close()


@contextlib.asynccontextmanager
async def distributed() -> AsyncIterator[tuple[FastAPI, Ctx]]:
    async with distributed_stack() as stack, stack.client() as api:
        ctx = Ctx(api, stack.secrets, distributed=True, store=stack.store, engine=stack.engine)
        await ctx.ok("POST", "/api/credentials", {"name": "warehouse", "data": {"password": "pw"}})
        yield stack.app, ctx


def _app(kind: str, tmp_path: Any) -> contextlib.AbstractAsyncContextManager[tuple[FastAPI, Ctx]]:
    return embedded(tmp_path) if kind == "embedded" else distributed()


@pytest.mark.parametrize("kind", ["embedded", "distributed"])
async def test_every_mounted_route_is_in_the_matrix(kind, tmp_path):
    async with _app(kind, tmp_path) as (app, _):
        served = set(mounted(app))
    assert served == set(ROUTES), (
        f"routes without a matrix entry: {sorted(served - set(ROUTES))}; "
        f"entries for no route: {sorted(set(ROUTES) - served)}"
    )


CASES = [(kind, key) for kind in ("embedded", "distributed") for key in ROUTES]


@pytest.mark.parametrize(
    ("kind", "route"), CASES, ids=[f"{kind} {m} {p}" for kind, (m, p) in CASES]
)
async def test_each_caller_against_each_route(kind, route, tmp_path):
    prepare, allowed = ROUTES[route]
    method = route[0]
    async with _app(kind, tmp_path) as (_, ctx):
        callers: list[str | None] = [None, *BAD_HEADERS, *PRINCIPALS]
        for who in callers:
            ctx.caller = who
            url, body = await prepare(ctx)
            if who is None:
                headers: dict[str, str] = {}
            elif who in PRINCIPALS:
                headers = ctx.auth(who)
            else:
                headers = {"Authorization": who}
            answer = await ctx.api.request(method, url, json=body, headers=headers)
            label = f"{method} {url} as {who or 'nobody'}: {answer.status_code} {answer.text[:300]}"
            if allowed == PUBLIC:
                assert answer.status_code == 200, label
            elif who not in PRINCIPALS:
                assert answer.status_code == 401, label
                challenge = answer.headers["www-authenticate"]
                assert challenge == "Bearer" if who is None else challenge.startswith("Bearer")
                assert answer.json()["type"] == "/problems/unauthorized", label
            elif who not in allowed:
                assert answer.status_code == 403, label
                problem = answer.json()
                assert problem["type"] == "/problems/forbidden", label
                assert answer.headers["content-type"].startswith("application/problem+json")
                expected = (
                    "only a human approver"
                    if allowed is HUMAN_APPROVER
                    else ROLE_NAMED[id(allowed)]
                )
                if allowed is HUMAN_APPROVER and PRINCIPALS[who][0] == "human":
                    expected = "needs the approver role"
                principal_kind, roles = PRINCIPALS[who]
                if (
                    allowed is HUMAN_OPERATOR
                    and principal_kind == "agent"
                    and {"operator", "admin"} & set(roles)
                ):
                    expected = "only a human operator"
                assert expected in problem["detail"], label
            elif route in NO_INDEX:
                assert answer.status_code == 503, label
                assert "no search index" in answer.json()["detail"], label
            elif kind == "embedded" and route in EMBEDDED_404:
                assert answer.status_code == 404, label
                assert "embedded stack" in answer.json()["detail"], label
            else:
                assert answer.is_success, label
