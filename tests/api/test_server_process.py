"""`noetl-agent server` as a real process, and `noetl-agent run --server` against it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

NOETL_AGENT = Path(sys.executable).parent / "noetl-agent"
PLAYBOOKS = Path(__file__).resolve().parents[1] / "cli" / "playbooks"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _create_token(env: dict[str, str], name: str, kind: str, role: str) -> str:
    created = subprocess.run(
        [NOETL_AGENT, "tokens", "create", "--name", name, "--kind", kind, "--role", role],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def _wait_healthy(url: str, server: subprocess.Popen[str], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server exited:\n{log.read_text()}"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url}/health did not answer within {timeout} s")


def test_run_through_a_server_process(tmp_path):
    env = dict(os.environ, NOETL_HOME=str(tmp_path / "home"), COLUMNS="200")
    env.pop("NOETL_SERVER_URL", None)
    token, person = (
        _create_token(env, name, kind, role)
        for name, kind, role in (("ci", "agent", "operator"), ("ann", "human", "approver"))
    )

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("w") as sink:  # a file, not a pipe: access logs must never block the server
        server = subprocess.Popen(
            [NOETL_AGENT, "server", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )
    try:
        _wait_healthy(url, server, log)
        client_env = dict(env, NOETL_TOKEN=token)
        runs = [
            subprocess.Popen(
                [NOETL_AGENT, "run", PLAYBOOKS / name, "--server", url, *extra],
                env=client_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, extra in (
                ("hello.yaml", ["--json", "--set", "n=3"]),
                ("failing.yaml", ["--json"]),
                ("invalid.yaml", ["--json"]),
                ("approval.yaml", ["--json"]),
            )
        ]
        (hello, hello_err), (failing, _), (_, invalid_err), (paused, _) = [
            run.communicate(timeout=60) for run in runs
        ]
        codes = [run.returncode for run in runs]

        assert codes == [0, 1, 2, 0], (hello_err, invalid_err)
        outcome = json.loads(hello.strip().splitlines()[-1])
        assert outcome["status"] == "completed"
        assert outcome["error"] is None
        assert outcome["result"] == {
            "n": 3,
            "n_type": "int",
            "greeting": "hello world",
            "b": "default",
            "double": 6,
        }
        failed = json.loads(failing.strip().splitlines()[-1])
        assert failed["status"] == "failed"
        assert "boom 42" in failed["error"]["message"]
        assert "did you mean `next`?" in invalid_err
        assert "Traceback" not in hello_err + invalid_err

        waiting = json.loads(paused.strip().splitlines()[-1])
        assert waiting["status"] == "paused"
        approve = [NOETL_AGENT, "approvals", "approve", f"{waiting['execution_id']}/review#1"]
        as_agent, as_person = (
            subprocess.run(
                [*approve, "--comment", "ok", "--json"],
                env=dict(env, NOETL_SERVER_URL=url, NOETL_TOKEN=secret),
                capture_output=True,
                text=True,
                timeout=60,
            )
            for secret in (token, person)
        )
        assert as_agent.returncode == 1
        assert "only a human approver" in as_agent.stderr
        assert as_person.returncode == 0, as_person.stderr
        assert json.loads(as_person.stdout.splitlines()[-1])["result"] == {
            "published": 245,
            "comment": "ok",
        }

        shown = httpx.get(
            f"{url}/api/executions/{outcome['execution_id']}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert shown.json()["status"] == "completed"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
    assert server.returncode == 0, log.read_text()
    assert f"serving {url}" in log.read_text()
