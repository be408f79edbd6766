"""The distributed stack as processes: `noetl-agent server --database --nats` on the real
PostgreSQL and NATS, two `noetl-agent worker` processes, and `noetl-agent run --server`.

Every run gets its own PostgreSQL schema and JetStream stream, both removed afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CONFORMANCE, require_service
from tests.engine.test_conformance_playbooks import EXPECTED

pytestmark = pytest.mark.slow

NOETL_AGENT = Path(sys.executable).parent / "noetl-agent"
DATABASE = "postgresql://postgres@127.0.0.1:5432/test"
NATS_URL = "nats://127.0.0.1:4222"
LEASE = 3.0  # seconds: how long a dead worker's claim holds its command
PLAYBOOKS = [
    "hello_world/hello_world.yaml",
    "loop_test.yaml",
    "fanout_reduce/fanout_reduce_phase6.yaml",
    "control_flow_workbook/control_flow_workbook.yaml",
    "test_loop_instance_isolation/playbook.yaml",
    "vars_test/test_vars_block.yaml",
    "duckdb_test.yaml",
]
# The slow step appends the pid of the worker running it ($PPID of its shell) to a file.
SLOW = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: slow, path: e2e/slow}
workload: {marker: ""}
workflow:
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: slow}]}
  - step: slow
    tool:
      kind: shell
      cmds: ["echo $PPID >> {{ marker }}; sleep 4; echo finished"]
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: noop}
"""


def _up(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    url: str
    env: dict[str, str]
    logs: Path
    operator: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, file: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [NOETL_AGENT, "run", str(file), "--server", self.url, "--json"],
            env=dict(self.env, NOETL_TOKEN=self.operator),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def events(self, execution_id: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.url}/api/executions/{execution_id}/events",
            headers={"Authorization": f"Bearer {self.operator}"},
            timeout=10,
        )
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def commands_run(self, n: int) -> int:
        """How many commands worker ``n`` started (its debug log says so)."""
        return (self.logs / f"worker{n}.log").read_text().count("engine.worker.service: running")

    def worker_logs(self) -> str:
        return "\n".join(
            f"--- worker {n}\n{(self.logs / f'worker{n}.log').read_text()[-4000:]}"
            for n in range(len(self.workers))
        )


def _outcome(run: subprocess.Popen[str], timeout: float, cluster: Cluster) -> dict[str, Any]:
    try:
        stdout, stderr = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.kill()
        run.communicate()
        raise AssertionError(
            f"the run did not finish in {timeout} s\n{cluster.worker_logs()}"
        ) from None
    assert stdout.strip(), f"no outcome printed: {stderr}"
    outcome: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return outcome


def _token(env: dict[str, str], schema: str, name: str, role: str) -> str:
    created = subprocess.run(
        [
            NOETL_AGENT,
            "tokens",
            "create",
            "--name",
            name,
            "--kind",
            "agent",
            "--role",
            role,
            "--database",
            DATABASE,
            "--schema",
            schema,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited:\n{log.read_text()}"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url}/health did not answer in time:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _drop(schema: str, stream: str) -> None:
    import asyncpg

    from engine.adapters.nats.bus import NatsCommandBus

    connection = await asyncpg.connect(DATABASE)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()
    bus = await NatsCommandBus.connect(NATS_URL, stream=stream)
    try:
        await bus.delete_stream()
    finally:
        await bus.aclose()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    require_service(_up(5432), "PostgreSQL at 127.0.0.1:5432")
    require_service(_up(4222), "NATS with JetStream at 127.0.0.1:4222")
    run_id = uuid.uuid4().hex[:10]
    schema, stream = f"t_e2e_{run_id}", f"T_E2E_{run_id}"
    env = dict(os.environ, NOETL_HOME=str(tmp_path / "home"), COLUMNS="200")
    for name in ("NOETL_SERVER_URL", "NOETL_TOKEN", "NOETL_DATABASE_URL", "NOETL_NATS_URL"):
        env.pop(name, None)
    env.update(
        NOETL_DATABASE_SCHEMA=schema,
        NOETL_NATS_STREAM=stream,
        NOETL_NATS_SUBJECT_PREFIX=f"test.e2e.{run_id}",
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        worker_token = _token(env, schema, "worker", "worker")
        operator = _token(env, schema, "operator", "operator")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with (tmp_path / "server.log").open("w") as sink:
            server = subprocess.Popen(
                [
                    NOETL_AGENT,
                    "server",
                    "--port",
                    str(port),
                    "--database",
                    DATABASE,
                    "--nats",
                    NATS_URL,
                    "--lease",
                    str(LEASE),
                    "--reap-interval",
                    "0.5",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        processes.append(server)
        _wait_healthy(url, server, tmp_path / "server.log")
        cluster = Cluster(url, env, tmp_path, operator)
        for n in range(2):
            with (tmp_path / f"worker{n}.log").open("w") as sink:
                worker = subprocess.Popen(
                    [
                        NOETL_AGENT,
                        "--debug",
                        "worker",
                        "--server",
                        url,
                        "--token",
                        worker_token,
                        "--nats",
                        NATS_URL,
                        "--worker-id",
                        f"w{n}",
                        "--concurrency",
                        "2",
                        "--lease",
                        str(LEASE),
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=sink,
                )
            processes.append(worker)
            cluster.workers.append(worker)
        yield cluster
    finally:
        for process in reversed(processes):
            _stop(process)
        asyncio.run(_drop(schema, stream))


def test_playbooks_run_on_two_workers_and_survive_a_killed_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs = {name: cluster.run(CONFORMANCE / name) for name in PLAYBOOKS}
    for name, run in runs.items():
        outcome = _outcome(run, 60, cluster)
        status, check = EXPECTED[name]
        assert outcome["status"] == status, (name, outcome, cluster.worker_logs())
        if check is not None:
            assert check(outcome["result"]), (name, outcome)
    assert cluster.commands_run(0) > 0 and cluster.commands_run(1) > 0  # both took work

    # kill -9 the worker in the middle of the slow step: the other one runs it again.
    marker = tmp_path / "slow.pids"
    playbook = tmp_path / "slow.yaml"
    playbook.write_text(SLOW.replace('marker: ""', f"marker: {marker}"))
    slow = cluster.run(playbook)
    deadline = time.monotonic() + 30
    while not (marker.exists() and marker.read_text().strip()):
        assert time.monotonic() < deadline, f"the slow step never started\n{cluster.worker_logs()}"
        time.sleep(0.05)
    victim = int(marker.read_text().split()[0])
    by_pid = {worker.pid: worker for worker in cluster.workers}
    assert victim in by_pid, (victim, list(by_pid))
    os.kill(victim, signal.SIGKILL)
    by_pid[victim].wait(timeout=10)

    outcome = _outcome(slow, 60, cluster)
    assert outcome["status"] == "completed", (outcome, cluster.worker_logs())
    runners = [int(pid) for pid in marker.read_text().split()]
    survivor = next(pid for pid in by_pid if pid != victim)
    assert runners == [victim, survivor]

    events = cluster.events(outcome["execution_id"])
    finals = [
        e
        for e in events
        if e["event_type"] == "tool.processed" and e["step_run_id"].startswith("slow#")
    ]
    assert len(finals) == 1, finals
    assert finals[0]["status"] == "success"
    assert finals[0]["payload"]["output"]["stdout"] == "finished\n"
    assert finals[0]["payload"]["meta"]["usage"]["wall_ms"] >= 4000
    types = [e["event_type"] for e in events]
    assert types[-1] == "playbook.processed" and types.count("playbook.processed") == 1
