"""`noetl-agent server` as a real process, and `noetl-agent run --server` against it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx

from tests.processes import NOETL_AGENT, cli, serve, stop

PLAYBOOKS = Path(__file__).resolve().parents[1] / "cli" / "playbooks"


def _create_token(env: dict[str, str], name: str, kind: str, role: str) -> str:
    created = cli(env, "tokens", "create", "--name", name, "--kind", kind, "--role", role)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def test_run_through_a_server_process(tmp_path):
    env = dict(os.environ, NOETL_HOME=str(tmp_path / "home"), COLUMNS="200")
    env.pop("NOETL_SERVER_URL", None)
    token, person = (
        _create_token(env, name, kind, role)
        for name, kind, role in (("ci", "agent", "operator"), ("ann", "human", "approver"))
    )

    log = tmp_path / "server.log"
    server, url = serve(env, log)
    try:
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
        approve: list[str | Path] = [
            NOETL_AGENT,
            "approvals",
            "approve",
            f"{waiting['execution_id']}/review#1",
        ]
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
        code = stop(server)
    assert code == 0, log.read_text()
    assert f"serving {url}" in log.read_text()
