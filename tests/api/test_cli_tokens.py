"""`noetl-agent tokens create|list|revoke`, and `--server` without a token, in process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from noetl_agent.cli.app import app
from noetl_agent.errors import Forbidden


@pytest.fixture
def invoke(tmp_path: Path):
    runner = CliRunner()
    env = {"NOETL_HOME": str(tmp_path), "NOETL_SERVER_URL": "", "NOETL_TOKEN": ""}

    def call(*args: str):
        return runner.invoke(app, list(args), env=env)

    return call


def test_create_list_and_revoke_tokens(invoke, tmp_path):
    created = invoke("tokens", "create", "--name", "ann", "--kind", "human", "--role", "approver")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("noetl_")
    assert "shown again" in created.stderr
    database = b"".join(path.read_bytes() for path in tmp_path.glob("noetl.db*"))
    assert token.encode() not in database
    assert hashlib.sha256(token.encode()).hexdigest().encode() in database

    invoke(
        "tokens",
        "create",
        "--name",
        "ci",
        "--kind",
        "agent",
        "--role",
        "operator",
        "--role",
        "viewer",
    )
    listed = invoke("tokens", "list", "--json")
    assert [(t["name"], t["kind"], t["roles"]) for t in json.loads(listed.stdout)] == [
        ("ann", "human", ["approver"]),
        ("ci", "agent", ["operator", "viewer"]),
    ]
    assert token not in listed.stdout

    assert invoke("tokens", "revoke", "ann").exit_code == 0
    again = invoke("tokens", "revoke", "ann")
    assert again.exit_code == 1
    assert "no token named 'ann'" in again.stderr
    assert [t["name"] for t in json.loads(invoke("tokens", "list", "--json").stdout)] == ["ci"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--kind", "human", "--role", "root"], 2, "unknown role 'root'"),
        (["--kind", "robot", "--role", "viewer"], 2, "kind 'robot'"),
        (["--kind", "human", "--role", "viewer"], 1, "already exists"),
    ],
)
def test_bad_token_requests(invoke, args, code, message):
    invoke("tokens", "create", "--name", "ann", "--kind", "human", "--role", "viewer")
    done = invoke("tokens", "create", "--name", "ann", *args)
    assert done.exit_code == code, done.output
    assert message in done.stderr
    assert "Traceback" not in done.output


def test_agents_cannot_manage_tokens_or_serve(invoke):
    for args in (("tokens", "list"), ("server", "--port", "0")):
        done = invoke("--as-agent", *args)
        assert isinstance(done.exception, Forbidden), done.output
        assert "needs the admin role" in str(done.exception)


def test_server_mode_needs_a_token(invoke, tmp_path):
    playbook = tmp_path / "p.yaml"
    playbook.write_text("apiVersion: noetl.io/v2\n")
    done = invoke("run", str(playbook), "--server", "http://127.0.0.1:9")
    assert done.exit_code == 2
    assert "no API token" in done.stderr
    assert "NOETL_TOKEN" in done.stderr
