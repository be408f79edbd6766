"""End to end, as processes: `credentials set --server` stores a credential on the
distributed server, a `noetl-agent worker` on another NOETL_HOME runs a postgres step with
it, and the value appears in no event, API answer, CLI output or log."""

from __future__ import annotations

import json
import subprocess
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from tests.processes import NOETL_AGENT, cli, distributed_env, serve, stop

__all__ = ["distributed_env"]  # the fixture, used by name

QUERY = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {{name: {name}, path: tests/creds/{name}}}
keychain:
  - {{name: {credential}, kind: postgres}}
workflow:
  - step: start
    tool: {{kind: postgres, auth: {credential}, query: "SELECT current_user AS who"}}
"""


@pytest.mark.slow
async def test_a_worker_uses_a_credential_stored_on_the_distributed_server(
    distributed_env, tmp_path
):
    env, dsn, _ = distributed_env
    secret, leaky = f"pw-{uuid.uuid4().hex}", f"missing_{uuid.uuid4().hex}"
    parts = urlsplit(dsn)
    admin, operator, worker_token = (
        cli(env, "tokens", "create", "--name", name, "--kind", kind, "--role", role)
        for name, kind, role in (
            ("root", "human", "admin"),
            ("ci", "agent", "operator"),
            ("w", "agent", "worker"),
        )
    )
    tokens = [
        created.stdout.strip().splitlines()[-1] for created in (admin, operator, worker_token)
    ]
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    server, url = serve(env, server_log)
    worker: subprocess.Popen[str] | None = None
    stopped: list[int] = []
    try:
        as_admin = dict(env, NOETL_SERVER_URL=url, NOETL_TOKEN=tokens[0])
        fields = [
            f"host={parts.hostname}",
            f"port={parts.port or 5432}",
            f"user={parts.username or 'postgres'}",
            f"password={secret}",
        ]
        for name, database in (("warehouse", "postgres"), ("leaky", leaky)):
            stored = cli(
                as_admin, "credentials", "set", name, "--kind", "postgres",
                *(arg for field in fields for arg in ("-f", field)), "-f", f"database={database}",
            )  # fmt: skip
            assert stored.returncode == 0, stored.stderr
            assert f"stored credential {name} (postgres, 5 fields)" in stored.stdout
        listed = cli(as_admin, "credentials", "list", "--json")
        assert json.loads(listed.stdout) == [
            {"name": "leaky", "kind": "postgres"},
            {"name": "warehouse", "kind": "postgres"},
        ]
        # A viewer-free check of the role: the operator may not manage credentials.
        refused = cli(dict(as_admin, NOETL_TOKEN=tokens[1]), "credentials", "list")
        assert refused.returncode == 1
        assert "needs the admin role" in refused.stderr

        worker_env = dict(env, NOETL_HOME=str(tmp_path / "worker-home"))
        with worker_log.open("w") as sink:
            worker = subprocess.Popen(
                [NOETL_AGENT, "worker", "--server", url, "--token", tokens[2]],
                env=worker_env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                text=True,
            )
        as_operator = dict(env, NOETL_SERVER_URL=url, NOETL_TOKEN=tokens[1])
        outputs = []
        for name, credential, code in (("good", "warehouse", 0), ("bad", "leaky", 1)):
            playbook = tmp_path / f"{name}.yaml"
            playbook.write_text(QUERY.format(name=name, credential=credential))
            ran = subprocess.run(
                [NOETL_AGENT, "run", str(playbook), "--json"],
                env=as_operator,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert ran.returncode == code, (ran.stdout, ran.stderr, worker_log.read_text())
            outputs.append(ran.stdout + ran.stderr)
        good = json.loads(outputs[0].strip().splitlines()[-1])
        assert good["status"] == "completed"
        assert good["result"] == [{"who": "***"}], good  # the user is a credential field
        bad = json.loads(outputs[1].strip().splitlines()[-1])
        assert bad["status"] == "failed"
        assert "***" in bad["error"]["message"]  # the database name is part of the secret

        headers = {"Authorization": f"Bearer {tokens[0]}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
            answers = [await http.get("/api/credentials")]
            for outcome in (good, bad):
                execution = f"/api/executions/{outcome['execution_id']}"
                answers += [await http.get(execution), await http.get(f"{execution}/events")]
        assert all(answer.status_code == 200 for answer in answers)
        seen = "".join(answer.text for answer in answers) + "".join(outputs)
        assert secret not in seen and leaky not in seen
    finally:
        if worker is not None:
            stopped.append(stop(worker))
        stopped.append(stop(server))
    assert stopped == [0, 0], (server_log.read_text(), worker_log.read_text())
    for log in (server_log, worker_log):
        text = log.read_text()
        assert secret not in text and leaky not in text, log.name
        assert "Traceback" not in text, text
