"""Configuration through the environment, as processes: NOETL_SERVER_URL and NOETL_TOKEN
(and NOETL_DATABASE_URL / NOETL_NATS_URL for the server) are honoured and flags override
them; `tokens create` prints the token as its last line; `noetl-agent server` without
addresses serves the embedded stack, and `run FILE --server URL` prints what the
embedded run prints."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import cli, distributed_env, free_port, serve, stop

__all__ = ["distributed_env"]  # the fixture, used by name

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
UNUSED = "http://127.0.0.1:9"  # nothing listens on the discard port
ID = re.compile(r"\b[0-9a-f]{21}\b")
DURATION = re.compile(r"\b\d+(\.\d+)? (ms|s)\b")


def _normal(text: str, url: str) -> list[str]:
    """Output lines with ids, durations and the server's address taken out."""
    text = DURATION.sub("<t>", ID.sub("<id>", text)).replace(f" on {url}", "")
    return [line.rstrip() for line in text.splitlines() if line.strip()]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in ("NOETL_SERVER_URL", "NOETL_TOKEN", "NOETL_DATABASE_URL", "NOETL_NATS_URL")
    }
    yield dict(clean, NOETL_HOME=str(tmp_path / "home"), COLUMNS="200")


@pytest.mark.slow
def test_the_embedded_server_and_its_clients_configured_by_environment_and_flags(env, tmp_path):
    created = cli(env, "tokens", "create", "--name", "ci", "--kind", "agent", "--role", "operator")
    assert created.returncode == 0, created.stderr
    token = created.stdout.splitlines()[-1]
    assert re.fullmatch(r"\S{20,}", token), created.stdout
    assert "copy it now" in created.stderr

    server, url = serve(env, tmp_path / "server.log")
    try:
        health = httpx.get(f"{url}/health", timeout=5).json()
        assert set(health["checks"]) == {"event_store", "catalog", "tokens"}  # embedded

        playbook = str(PLAYBOOKS / "hello.yaml")
        local = cli(env, "run", playbook, "--set", "n=3")
        remote = cli(dict(env, NOETL_TOKEN=token), "run", playbook, "--set", "n=3", "--server", url)
        assert local.returncode == remote.returncode == 0, (local.stderr, remote.stderr)
        assert _normal(remote.stdout, url) == _normal(local.stdout, url)
        assert _normal(remote.stderr, url) == _normal(local.stderr, url)
        assert "completed execution <id>" in _normal(local.stdout, url)
        assert any(line.startswith("✓ double") for line in _normal(local.stderr, url))

        listing = ("catalog", "list", "--json")
        by_env = cli(dict(env, NOETL_SERVER_URL=url, NOETL_TOKEN=token), *listing)
        assert by_env.returncode == 0, by_env.stderr
        assert '"path": "tests/cli/hello"' in by_env.stdout
        bad_token = cli(dict(env, NOETL_SERVER_URL=url, NOETL_TOKEN="not-a-token"), *listing)
        assert bad_token.returncode == 1
        assert "NOETL_TOKEN" in bad_token.stderr
        token_flag = cli(
            dict(env, NOETL_SERVER_URL=url, NOETL_TOKEN="not-a-token"), "--token", token, *listing
        )
        assert token_flag.returncode == 0, token_flag.stderr
        assert token_flag.stdout == by_env.stdout
        dead_env = dict(env, NOETL_SERVER_URL=UNUSED, NOETL_TOKEN=token)
        unreachable = cli(dead_env, *listing)
        assert unreachable.returncode == 1
        assert UNUSED in unreachable.stderr
        server_flag = cli(dead_env, "--server", url, *listing)
        assert server_flag.returncode == 0, server_flag.stderr
        assert server_flag.stdout == by_env.stdout
        no_token = cli(dict(env, NOETL_SERVER_URL=url), *listing)
        assert no_token.returncode == 2
        assert "no API token for the server" in no_token.stderr
    finally:
        code = stop(server)
    assert code == 0


@pytest.mark.slow
def test_database_and_nats_flags_override_the_environment(distributed_env, tmp_path):
    env, dsn, _ = distributed_env
    wrong = dict(
        env,
        NOETL_DATABASE_URL="postgresql://nobody@127.0.0.1:9/none",
        NOETL_NATS_URL="nats://127.0.0.1:9",
    )
    refused = cli(wrong, "server", "--port", str(free_port()))
    assert refused.returncode == 1
    assert "127.0.0.1:9" in refused.stderr  # the environment's address was used
    server, url = serve(
        wrong, tmp_path / "server.log", "--database", dsn, "--nats", env["NOETL_NATS_URL"]
    )
    try:
        health = httpx.get(f"{url}/health", timeout=5).json()
        assert health["status"] == "ok"
        assert {"database", "nats"} <= set(health["checks"])
    finally:
        code = stop(server)
    assert code == 0
