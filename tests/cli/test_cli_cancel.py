"""`executions cancel`: a paused execution ends cancelled, and only once."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_cancel_a_paused_execution(cli):
    paused = cli("run", EXAMPLES / "approval_gate.yaml", "--json")
    execution_id = paused.json()["execution_id"]
    cancelled = cli("executions", "cancel", execution_id, "--reason", "not needed", "--json")
    assert cancelled.returncode == 0, cancelled.describe()
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"]["message"] == "not needed"
    assert cli("approvals", "list", "--json").json() == []
    again = cli("executions", "cancel", execution_id)
    assert again.returncode == 1 and "already finished" in again.stderr
    viewer = cli("--as-agent", "executions", "cancel", execution_id)
    assert viewer.returncode == 1
