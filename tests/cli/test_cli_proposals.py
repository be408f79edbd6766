"""`noetl-agent proposals`: suggest from past runs, list, show, approve and reject, on the
local state and through `--server`, with the same output; refusals are one line and an
exit code."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from tests.flaky_service import alternating_service
from tests.policy.conftest import FLAKY_HTTP
from tests.processes import serve, stop

pytestmark = pytest.mark.slow

PLAYBOOK = "policy/flakyhttp"


def _history(home: Path, runs: int = 20) -> None:
    """``runs`` executions of a step whose service fails every other request (503)."""

    async def go() -> None:
        db = SqliteDatabase.open(home / "noetl.db")
        engine = Engine(db.events, db.catalog, lock_dir=home / "locks")
        try:
            await engine.register(FLAKY_HTTP)
            with alternating_service() as base:
                for _ in range(runs):
                    await engine.run(PLAYBOOK, workload={"base": base})
        finally:
            await engine.aclose()
            db.close()

    asyncio.run(go())


def test_suggest_show_and_decide_locally(cli, home):
    _history(home)
    assert cli("proposals", "list", "--json").json() == []

    suggested = cli("--as-agent", "proposals", "suggest", "--json")
    assert suggested.returncode == 0, suggested.describe()
    [proposal] = suggested.json()["proposed"]
    assert proposal["requested_by"] == {"name": "local-agent", "kind": "agent"}
    listed = cli("proposals", "list", "--json")
    assert listed.returncode == 0, listed.describe()
    [item] = listed.json()
    for key in ("id", "target", "kind", "patch", "evidence", "rationale", "status", "diff"):
        assert item[key] == proposal[key], key
    assert item["target"] == {"playbook": PLAYBOOK, "version": 1, "step": "fetch"}
    assert item["evidence"]["similar_failures"] == {
        "available": False,
        "reason": "the search index is off (NOETL_INDEXER=off)",
    }
    pid = item["id"]

    shown = cli("proposals", "show", pid)
    assert shown.returncode == 0, shown.describe()
    for text in (pid, "retry on policy/flakyhttp@1 fetch: pending", "learner:retry", "http_503"):
        assert text in shown.stdout, text
    assert "similar_failures" in shown.stdout and "NOETL_INDEXER=off" in shown.stdout
    assert "+        - when:" in shown.stdout or "+      policy:" in shown.stdout
    table = cli("proposals", "list")
    assert pid in table.stdout and "0/1" in table.stdout

    agent = cli("--as-agent", "proposals", "approve", pid)
    assert agent.returncode == 1, agent.describe()
    assert "only a human approver" in agent.stderr and "Traceback" not in agent.stderr
    no_comment = cli("proposals", "reject", pid)
    assert no_comment.returncode == 2, no_comment.describe()
    assert "--comment" in no_comment.stderr

    approved = cli("proposals", "approve", pid, "--comment", "go")
    assert approved.returncode == 0, approved.describe()
    assert f"approved {pid}: applied; {PLAYBOOK} version 2 is in use" in approved.stdout
    twice = cli("proposals", "reject", pid, "--comment", "late")
    assert twice.returncode == 1
    assert "already decided (applied)" in twice.stderr
    assert cli("proposals", "list", "--status", "applied", "--json").json()[0]["id"] == pid
    versions = cli("catalog", "list", "--json").json()
    assert [(v["path"], v["version"]) for v in versions] == [(PLAYBOOK, 2)]

    unknown = cli("proposals", "show", "p-nope-1")
    assert unknown.returncode == 1 and "no proposal 'p-nope-1'" in unknown.stderr
    bad_status = cli("proposals", "list", "--status", "maybe")
    assert bad_status.returncode == 2 and "use one of pending" in bad_status.stderr


def test_bad_policy_settings_are_one_clear_error(cli, monkeypatch):
    monkeypatch.setenv("NOETL_POLICY_QUORUM", "two")
    refused = cli("proposals", "list")
    assert refused.returncode == 2, refused.describe()
    assert "NOETL_POLICY_QUORUM='two' must be a whole number of at least 1" in refused.stderr
    monkeypatch.setenv("NOETL_POLICY_QUORUM", "2")
    monkeypatch.setenv("NOETL_POLICY_EXPIRY", "soon")
    expiry = cli("proposals", "list")
    assert expiry.returncode == 2 and "e.g. 7d, 12h, 30m or 90s" in expiry.stderr


@pytest.fixture
def server(home: Path, cli, tmp_path: Path):
    """`noetl-agent server` on ``home``; yields (url, {name: token})."""
    tokens = {}
    for name, kind, role in (("reviewer", "human", "approver"), ("bot", "agent", "operator")):
        created = cli("tokens", "create", "--name", name, "--kind", kind, "--role", role)
        assert created.returncode == 0, created.describe()
        tokens[name] = created.stdout.strip().splitlines()[-1]
    env = {**os.environ, "NOETL_HOME": str(home), "COLUMNS": "200"}
    process, url = serve(env, tmp_path / "server.log")
    try:
        yield url, tokens
    finally:
        stop(process)


def test_the_same_commands_through_the_server(cli, home, server):
    _history(home)
    url, tokens = server

    def remote(who: str, *args: str):
        return cli("--server", url, "--token", tokens[who], "proposals", *args)

    suggested = remote("bot", "suggest", "--json")
    assert suggested.returncode == 0, suggested.describe()
    [proposal] = suggested.json()["proposed"]
    assert proposal["requested_by"] == {"name": "bot", "kind": "agent"}
    assert proposal["evidence"]["similar_failures"]["available"] is False
    listed = remote("bot", "list", "--json").json()
    assert listed == cli("proposals", "list", "--json").json()  # the same queue, either way
    shown = remote("reviewer", "show", proposal["id"])
    assert shown.returncode == 0 and "http_503" in shown.stdout

    refused = remote("bot", "approve", proposal["id"])
    assert refused.returncode == 1 and "only a human approver" in refused.stderr
    rejected = remote("reviewer", "reject", proposal["id"], "--comment", "not yet", "--json")
    assert rejected.returncode == 0, rejected.describe()
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["decisions"][0] == {
        "decided_by": "reviewer",
        "kind": "human",
        "approved": False,
        "comment": "not yet",
        "at": rejected.json()["decisions"][0]["at"],
    }
    again = remote("bot", "suggest", "--json").json()
    assert again["proposed"] == [] and len(again["suppressed"]) == 1
    assert "was rejected with 10 observations" in again["suppressed"][0]["reason"]
    missing = remote("reviewer", "show", "p-nope-1")
    assert missing.returncode == 1 and "no proposal 'p-nope-1'" in missing.stderr
