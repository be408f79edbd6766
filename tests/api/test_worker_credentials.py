"""A worker reads the credentials of the command it holds from the distributed server, and
a command whose workers keep dying fails its step instead of being handed out for ever
(real PostgreSQL and NATS)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.distributed_stack import (
    DistributedStack,
    command_path,
    distributed_stack,
    started_note,
)

SECRET = f"pw-{uuid.uuid4().hex}"
PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: creds, path: api/creds}
keychain:
  - {name: warehouse, kind: postgres}
  - {name: declared, kind: postgres}
workload: {which: declared}
workflow:
  - step: start
    tool:
      - {kind: postgres, auth: warehouse, query: "SELECT 1 AS one"}
      - {kind: postgres, auth: "{{ which }}", query: "SELECT 2 AS two"}
"""
PLAIN = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: plain, path: api/plain}
workflow:
  - step: start
    tool: {kind: noop}
"""


@pytest.fixture
async def stack() -> AsyncIterator[DistributedStack]:
    async with distributed_stack() as started:
        yield started


@pytest.fixture
async def api(stack: DistributedStack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.client() as client:
        yield client


def _credential_path(command_id: str, name: str) -> str:
    return command_path(command_id, "credentials") + f"/{name}"


async def _store(api: httpx.AsyncClient, stack: DistributedStack, name: str) -> None:
    body = {"name": name, "kind": "postgres", "data": {"user": "svc", "password": SECRET}}
    stored = await api.post("/api/credentials", json=body, headers=stack.auth("admin"))
    assert stored.status_code == 201, stored.text
    assert SECRET not in stored.text


async def test_the_worker_holding_the_claim_gets_the_credentials_its_command_names(api, stack):
    for name in ("warehouse", "declared", "unrelated"):
        await _store(api, stack, name)
    note = await started_note(stack, PLAYBOOK)
    worker = stack.auth("worker")
    claim = await api.post(
        command_path(note.command_id, "claim"), json={"worker_id": "w1"}, headers=worker
    )
    assert claim.status_code == 200, claim.text

    got = await api.post(
        _credential_path(note.command_id, "warehouse"), json={"worker_id": "w1"}, headers=worker
    )
    assert got.status_code == 200, got.text
    assert got.json() == {
        "name": "warehouse",
        "kind": "postgres",
        "data": {"user": "svc", "password": SECRET},
    }
    # `auth` is a template in the second tool: any name the keychain declares is allowed.
    declared = await api.post(
        _credential_path(note.command_id, "declared"), json={"worker_id": "w1"}, headers=worker
    )
    assert declared.status_code == 200, declared.text

    unrelated = await api.post(
        _credential_path(note.command_id, "unrelated"), json={"worker_id": "w1"}, headers=worker
    )
    assert unrelated.status_code == 403
    assert "does not use credential 'unrelated'" in unrelated.json()["detail"]
    assert SECRET not in unrelated.text

    other = await api.post(
        _credential_path(note.command_id, "warehouse"), json={"worker_id": "w2"}, headers=worker
    )
    assert other.status_code == 409
    assert "claimed by worker 'w1 (token worker)'" in other.json()["detail"]
    assert SECRET not in other.text

    for who in ("admin", "agent-admin", "operator", "viewer"):
        refused = await api.post(
            _credential_path(note.command_id, "warehouse"),
            json={"worker_id": "w1"},
            headers=stack.auth(who),
        )
        assert refused.status_code == 403, who
        assert "needs the worker role" in refused.json()["detail"]


async def test_no_credential_without_an_active_claim(api, stack):
    await _store(api, stack, "warehouse")
    note = await started_note(stack, PLAYBOOK)
    worker = stack.auth("worker")
    path = _credential_path(note.command_id, "warehouse")
    unclaimed = await api.post(path, json={"worker_id": "w1"}, headers=worker)
    assert unclaimed.status_code == 409
    assert "is queued and not held by this worker" in unclaimed.json()["detail"]

    short = {"worker_id": "w1", "lease_seconds": 1}
    claimed = await api.post(command_path(note.command_id, "claim"), json=short, headers=worker)
    assert claimed.status_code == 200
    await asyncio.sleep(1.2)
    expired = await api.post(path, json={"worker_id": "w1"}, headers=worker)
    assert expired.status_code == 409
    assert "expired" in expired.json()["detail"]

    unknown = await api.post(
        _credential_path("nope:start#1", "warehouse"), json={"worker_id": "w1"}, headers=worker
    )
    assert unknown.status_code == 404


async def test_a_credential_the_server_does_not_store_is_404(api, stack):
    note = await started_note(stack, PLAYBOOK)
    worker = stack.auth("worker")
    await api.post(command_path(note.command_id, "claim"), json={"worker_id": "w1"}, headers=worker)
    missing = await api.post(
        _credential_path(note.command_id, "warehouse"), json={"worker_id": "w1"}, headers=worker
    )
    assert missing.status_code == 404
    assert "is not stored on this server" in missing.json()["detail"]


async def test_values_handed_out_are_masked_in_what_the_worker_reports(api, stack):
    await _store(api, stack, "warehouse")
    note = await started_note(stack, PLAYBOOK)
    worker = stack.auth("worker")
    claimed = await api.post(
        command_path(note.command_id, "claim"), json={"worker_id": "w1"}, headers=worker
    )
    command = claimed.json()["command"]
    got = await api.post(
        _credential_path(note.command_id, "warehouse"), json={"worker_id": "w1"}, headers=worker
    )
    assert got.status_code == 200
    # A careless worker reports the value itself: the server stores it masked.
    leaked = {
        "event_id": f"{note.command_id}:0:start",
        "event_type": "tool.started",
        "execution_id": note.execution_id,
        "timestamp": "2026-01-01T00:00:00Z",
        "entity_type": "tool",
        "entity_id": "start.postgres",
        "step_run_id": command["step_run_id"],
        "payload": {"echo": f"connected with {SECRET}"},
    }
    reported = await api.post("/api/events/batch", json={"events": [leaked]}, headers=worker)
    assert reported.status_code == 200, reported.text
    await asyncio.sleep(0.3)  # tool.started is buffered briefly before it is stored
    log = await api.get(f"/api/executions/{note.execution_id}/events", headers=stack.auth("viewer"))
    assert log.status_code == 200
    assert SECRET not in log.text
    assert "connected with ***" in json.dumps(log.json())


async def test_a_command_whose_workers_keep_dying_fails_its_step():
    stacked = distributed_stack(lease=30, reap_interval=0.1, max_claims=2)
    async with stacked as stack, stack.client() as api:
        note = await started_note(stack, PLAIN)
        path = command_path(note.command_id, "claim")
        attempts = []
        for worker_id in ("doomed-1", "doomed-2"):
            # Claim with a short lease and never report: the worker "dies".
            async with asyncio.timeout(10):
                while True:
                    body = {"worker_id": worker_id, "lease_seconds": 1}
                    claimed = await api.post(path, json=body, headers=stack.auth("worker"))
                    if claimed.status_code == 200:
                        break
                    await asyncio.sleep(0.1)
            attempts.append(claimed.json()["attempt"])
            await asyncio.sleep(1.1)
        assert attempts == [1, 2]
        outcome = await stack.engine.wait(note.execution_id, timeout=10)
        assert outcome.status == "failed"
        shown = await api.get(f"/api/executions/{note.execution_id}", headers=stack.auth("viewer"))
        message = shown.json()["error"]["message"]
        assert "the command was claimed 2 times and its worker never finished" in message
        assert "'doomed-2 (token worker)'" in message
        again = await api.post(
            path, json={"worker_id": "late", "lease_seconds": 5}, headers=stack.auth("worker")
        )
        assert again.status_code == 409
        assert "is failed" in again.json()["detail"]
        log = await api.get(
            f"/api/executions/{note.execution_id}/events", headers=stack.auth("viewer")
        )
        failures = [e for e in log.json() if e["event_type"] == "tool.processed"]
        assert len(failures) == 1
        assert failures[0]["payload"]["error"]["code"] == "claims_exhausted"


TWO_SOURCES = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: twosources, path: api/twosources}
workflow:
  - step: start
    tool: {kind: postgres, auth: on_server, query: "SELECT 1 AS one"}
    next: {arcs: [{step: local}]}
  - step: local
    tool: {kind: postgres, auth: on_worker, query: "SELECT 2 AS two"}
"""


async def test_a_worker_asks_the_server_first_then_its_own_sources():
    from engine.adapters.credentials import ChainCredentialProvider, MemoryCredentialProvider
    from engine.worker.credentials import ServerCredentialProvider
    from engine.worker.remote import HttpWorkerRemote
    from engine.worker.service import WorkerService
    from tests.conformance.conftest import require_postgres

    parts = urlsplit(await require_postgres())
    fields = {
        "host": parts.hostname,
        "port": parts.port or 5432,
        "user": parts.username or "postgres",
        "password": SECRET,
        "database": "postgres",
    }
    async with distributed_stack() as stack, stack.client() as api:
        body = {"name": "on_server", "kind": "postgres", "data": fields}
        stored = await api.post("/api/credentials", json=body, headers=stack.auth("admin"))
        assert stored.status_code == 201, stored.text
        remote = HttpWorkerRemote(
            "http://noetl.test",
            stack.secrets["worker"],
            worker_id="w-chain",
            transport=httpx.ASGITransport(app=stack.app),
        )
        local = MemoryCredentialProvider({"on_worker": {"kind": "postgres", "data": fields}})
        service = WorkerService(
            stack.bus,
            remote,
            "cpu",
            credentials=ChainCredentialProvider([ServerCredentialProvider(remote), local]),
            poll=0.1,
        )
        serving = asyncio.create_task(service.run())
        try:
            registered = await api.post(
                "/api/catalog/register",
                json={"content": TWO_SOURCES},
                headers=stack.auth("operator"),
            )
            assert registered.status_code == 200, registered.text
            started = await api.post(
                "/api/execute", json={"path": "api/twosources"}, headers=stack.auth("operator")
            )
            execution_id = started.json()["execution_id"]
            outcome = await stack.engine.wait(execution_id, timeout=20)
            assert outcome.status == "completed", outcome.error
            assert outcome.result == [{"two": 2}]
        finally:
            service.stop()
            await asyncio.wait_for(serving, 20)
            await remote.aclose()
