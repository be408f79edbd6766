"""`noetl-agent server --database URL --nats URL` as a real process, with `db migrate` and
`tokens create --database`, and a worker (in the test) that claims and reports over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from engine.adapters.nats.bus import NatsCommandBus
from engine.core.commands import RunTool
from engine.core.events import Event
from engine.runtime.tool_runner import ToolRunner
from engine.tools.registry import ToolRegistry
from tests.processes import NATS_URL, cli, distributed_env, free_port, serve, stop

__all__ = ["distributed_env"]  # the fixture, used by name

PLAYBOOK = Path(__file__).resolve().parents[1] / "cli" / "playbooks" / "hello.yaml"


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


async def test_a_distributed_server_process_runs_playbooks_with_workers(distributed_env, tmp_path):
    env, _, schema = distributed_env
    migrated = cli(env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert f"migrated schema '{schema}' from version 0 to" in migrated.stdout
    again = cli(env, "db", "migrate")
    assert "is up to date" in again.stdout
    tokens = {}
    for name, role in (("ops", "operator"), ("w", "worker")):
        created = cli(env, "tokens", "create", "--name", name, "--kind", "agent", "--role", role)
        assert created.returncode == 0, created.stderr
        tokens[name] = created.stdout.strip().splitlines()[-1]
    listed = cli(env, "tokens", "list", "--json")
    assert '"name": "ops"' in listed.stdout and not (tmp_path / "home" / "noetl.db").exists()

    log = tmp_path / "server.log"
    server, url = serve(env, log, "--reap-interval", "0.5")
    worker: asyncio.Task[None] | None = None
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            health = await http.get("/health")
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
        code = stop(server)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_the_distributed_mode_needs_both_addresses(distributed_env):
    env, _, _ = distributed_env
    only_database = dict(env)
    only_database.pop("NOETL_NATS_URL")
    refused = cli(only_database, "server", "--port", str(free_port()))
    assert refused.returncode == 2
    assert "needs --nats (NOETL_NATS_URL) too" in refused.stderr
