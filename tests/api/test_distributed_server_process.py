"""`noetl-agent server --database URL --nats URL` as a real process, with `db migrate` and
`tokens create --database`, and a worker (in the test) that claims and reports over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from engine.adapters.nats.bus import NatsCommandBus
from engine.core.commands import RunTool
from engine.core.events import Event
from engine.runtime.tool_runner import ToolRunner
from engine.tools.registry import ToolRegistry
from tests.api.test_server_process import _free_port
from tests.conformance.conftest import drop_schema, require_postgres
from tests.conftest import require_service
from tests.distributed_stack import NATS_URL, nats_up

NOETL_AGENT = Path(sys.executable).parent / "noetl-agent"
PLAYBOOK = Path(__file__).resolve().parents[1] / "cli" / "playbooks" / "hello.yaml"


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[dict[str, str], str, str]]:
    """The environment naming a schema and a stream of this test's own; removed after."""
    require_service(nats_up(), "NATS with JetStream at 127.0.0.1:4222")
    dsn = await require_postgres()
    schema, stream = f"t_{uuid.uuid4().hex}", f"T_{uuid.uuid4().hex[:12]}"
    env = dict(
        os.environ,
        NOETL_HOME=str(tmp_path / "home"),
        NOETL_DATABASE_URL=dsn,
        NOETL_DATABASE_SCHEMA=schema,
        NOETL_NATS_URL=NATS_URL,
        NOETL_NATS_STREAM=stream,
        NOETL_NATS_SUBJECT_PREFIX=f"test.{stream}",
    )
    env.pop("NOETL_SERVER_URL", None)
    try:
        yield env, dsn, schema
    finally:
        await drop_schema(dsn, schema)
        bus = await NatsCommandBus.connect(NATS_URL, stream=stream, subject_prefix=f"test.{stream}")
        await bus.delete_stream()
        await bus.aclose()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NOETL_AGENT, *args], env=env, capture_output=True, text=True, timeout=60)


async def _work(url: str, token: str, env: dict[str, str]) -> None:
    """Claim, run and report every command announced on the test's stream."""
    bus = await NatsCommandBus.connect(
        NATS_URL,
        stream=env["NOETL_NATS_STREAM"],
        subject_prefix=env["NOETL_NATS_SUBJECT_PREFIX"],
    )
    registry = ToolRegistry()
    headers = {"Authorization": f"Bearer {token}"}
    try:
        subscription = await bus.subscribe("cpu")
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:

            async def report(events: list[Event]) -> None:
                batch = {"events": [event.to_dict() for event in events]}
                assert (await http.post("/api/events/batch", json=batch)).status_code == 200

            while True:
                delivery = await subscription.next(timeout=0.2)
                if delivery is None:
                    continue
                path = f"/api/commands/{quote(delivery.note.command_id, safe='')}/claim"
                claimed = await http.post(path, json={"worker_id": "test-worker"})
                await delivery.ack()
                if claimed.status_code == 200:
                    command = RunTool.from_dict(claimed.json()["command"])
                    await ToolRunner(registry).run(command, report)
    finally:
        await registry.aclose()
        await bus.aclose()


async def test_a_distributed_server_process_runs_playbooks_with_workers(setup, tmp_path):
    env, _, schema = setup
    migrated = _cli(env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert f"migrated schema '{schema}' from version 0 to" in migrated.stdout
    again = _cli(env, "db", "migrate")
    assert "is up to date" in again.stdout
    tokens = {}
    for name, role in (("ops", "operator"), ("w", "worker")):
        created = _cli(env, "tokens", "create", "--name", name, "--kind", "agent", "--role", role)
        assert created.returncode == 0, created.stderr
        tokens[name] = created.stdout.strip().splitlines()[-1]
    listed = _cli(env, "tokens", "list", "--json")
    assert '"name": "ops"' in listed.stdout and not (tmp_path / "home" / "noetl.db").exists()

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [NOETL_AGENT, "server", "--port", str(port), "--reap-interval", "0.5"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )
    worker: asyncio.Task[None] | None = None
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            async with asyncio.timeout(20):
                while True:
                    assert server.poll() is None, f"the server exited:\n{log.read_text()}"
                    try:
                        health = await http.get("/health")
                        if health.status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.05)
            assert set(health.json()["checks"]) >= {"database", "nats"}
            worker = asyncio.create_task(_work(url, tokens["w"], env))
            operator = {"Authorization": f"Bearer {tokens['ops']}"}
            registered = await http.post(
                "/api/catalog/register", json={"content": PLAYBOOK.read_text()}, headers=operator
            )
            assert registered.status_code == 200, registered.text
            started = await http.post(
                "/api/execute",
                json={"path": "tests/cli/hello", "workload": {"n": 4}},
                headers=operator,
            )
            execution_id = started.json()["execution_id"]
            async with asyncio.timeout(20):
                while True:
                    shown = await http.get(f"/api/executions/{execution_id}", headers=operator)
                    if shown.json()["status"] != "running":
                        break
                    await asyncio.sleep(0.1)
            assert shown.json()["status"] == "completed", shown.text
            assert shown.json()["result"]["double"] == 8
            metrics = (await http.get("/metrics")).text
            assert 'noetl_command_queue_depth{pool="cpu",status="queued"} 0' in metrics
    finally:
        if worker is not None:
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert server.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_the_distributed_mode_needs_both_addresses(setup):
    env, _, _ = setup
    only_database = dict(env)
    only_database.pop("NOETL_NATS_URL")
    refused = _cli(only_database, "server", "--port", str(_free_port()))
    assert refused.returncode == 2
    assert "needs --nats (NOETL_NATS_URL) too" in refused.stderr
