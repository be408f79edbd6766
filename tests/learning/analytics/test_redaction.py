"""A secret value in an event never reaches analytics (tables or Parquet files)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.core import events as ev
from engine.core.events import Event
from engine.runtime.redaction import MASK, Redactor
from learning.analytics.service import Analytics
from learning.analytics.store import ClickHouseStore
from tests.echo_server import echo_server
from tests.learning.analytics.history import History

TOKEN = "tok-9f3a7c1e-analytics-secret"
NOETL_AGENT = Path(sys.executable).parent / "noetl-agent"


def _leaky(execution_id: str) -> list[Event]:
    """A history whose events still hold the secret (written by something that never
    learned it): in an error message, a retry reason and the tool output."""
    history = History(execution_id, playbook="tests/leaky")
    history.add(
        ev.RETRY_STARTED,
        entity_type="retry",
        entity_id="call.http",
        step_run_id="call#1",
        attempt=2,
        payload={"reason": f"http_401 for {TOKEN}", "delay_ms": 0},
    )
    history.add(
        ev.TOOL_PROCESSED,
        entity_type="tool",
        entity_id="call.http",
        step_run_id="call#1",
        status="error",
        attempt=2,
        payload={
            "error": {"kind": "http", "code": 401, "message": f"refused: Bearer {TOKEN}"},
            "output": {"echo": TOKEN},
            "attempts": 2,
            "meta": {"usage": {"wall_ms": 5.0, "scope": "process"}, "pool": "cpu"},
        },
    )
    return history.events


async def test_the_exporter_masks_what_its_redactor_knows(
    events_db: SqliteDatabase, store: ClickHouseStore, tmp_path: Path
) -> None:
    await events_db.events.append(_leaky("exec-1"))
    redactor = Redactor()
    redactor.add(TOKEN)
    analytics = Analytics(events_db.events, store, redactor=redactor)
    await analytics.export()

    everything = await analytics.query("SELECT * FROM events", refresh=False)
    assert TOKEN not in json.dumps(everything.to_dict())
    messages = await analytics.query(
        "SELECT error_message, reason FROM events WHERE step = 'call' ORDER BY seq",
        refresh=False,
    )
    assert messages.rows == [[None, f"http_401 for {MASK}"], [f"refused: Bearer {MASK}", None]]
    path, rows = await analytics.write_parquet(tmp_path / "parquet")
    assert rows == len(everything.rows)
    assert TOKEN.encode() not in path.read_bytes()
    assert b"refused: Bearer" in path.read_bytes()


def _cli(home: Path, *args: object, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NOETL_HOME": str(home), "COLUMNS": "200"}
    env.pop("NOETL_CLICKHOUSE_URL", None)
    return subprocess.run(
        [str(NOETL_AGENT), *map(str, args)],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


DENIED = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: denied, path: tests/analytics/denied}
workload: {base: ""}
workflow:
  - step: call
    tool: {kind: http, url: "{{ base }}/deny", auth: api}
"""


@pytest.mark.slow  # four `noetl-agent` processes
def test_a_secret_in_an_error_message_never_reaches_analytics(tmp_path: Path) -> None:
    home = tmp_path / "home"
    stored = _cli(home, "credentials", "set", "api", "--kind", "http", "-f", f"token={TOKEN}")
    assert stored.returncode == 0, stored.stderr
    playbook = tmp_path / "denied.yaml"
    playbook.write_text(DENIED)
    with echo_server() as base:
        # The server's refusal quotes the bearer token back in the error message.
        ran = _cli(home, "run", playbook, "--set", f"base={base}", "--json")
    assert ran.returncode == 1, ran.stderr
    # And an event that still holds the secret, as if an older version had stored it.
    db = SqliteDatabase.open(home / "noetl.db")
    try:
        asyncio.run(db.events.append(_leaky("exec-leaky")))
    finally:
        db.close()

    exported = _cli(home, "export", "--parquet", tmp_path / "parquet", "--json")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.count(TOKEN) == 0
    report: dict[str, Any] = json.loads(exported.stdout)
    assert report["exported"] > 0 and report["rows"] == report["exported"]

    queried = _cli(home, "analytics", "query", "SELECT * FROM events", "--json")
    assert queried.returncode == 0, queried.stderr
    assert TOKEN not in queried.stdout
    result = json.loads(queried.stdout)
    messages = [
        dict(zip(result["columns"], row, strict=True))["error_message"] for row in result["rows"]
    ]
    assert f"refused: Bearer {MASK} is not valid here" in " ".join(m or "" for m in messages)
    assert f"refused: Bearer {MASK}" in messages
    assert TOKEN.encode() not in (tmp_path / "parquet" / "events.parquet").read_bytes()


async def test_a_credential_from_the_environment_is_masked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Analytics masks what every local credential source holds, as the search index does,
    not only the encrypted store."""
    from noetl_agent.analytics import open_analytics

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("NOETL_CREDENTIAL_API", json.dumps({"token": TOKEN}))
    monkeypatch.delenv("NOETL_CLICKHOUSE_URL", raising=False)
    db = SqliteDatabase.open(home / "noetl.db")
    try:
        await db.events.append(_leaky("exec-env"))
        analytics = await open_analytics(db.events, home, redactor=Redactor())
        try:
            await analytics.export()
            everything = await analytics.query("SELECT * FROM events", refresh=False)
        finally:
            analytics.close()
    finally:
        db.close()
    dumped = json.dumps(everything.to_dict())
    assert TOKEN not in dumped
    assert f"refused: Bearer {MASK}" in dumped
