"""Workflow approvals: pause, list, refuse agents, approve, reject, decide only once."""

from __future__ import annotations

import time


def _paused(cli, playbooks) -> str:
    done = cli("run", playbooks / "approval.yaml", "--json")
    assert done.returncode == 0, done.describe()
    outcome = done.json()
    assert outcome["status"] == "paused"
    assert outcome["result"] is None
    return str(outcome["execution_id"])


def test_approve_resumes_the_approved_branch(cli, cli_all, home, playbooks):
    execution_id = _paused(cli, playbooks)

    pending = cli("approvals", "list", "--json")
    assert pending.returncode == 0, pending.describe()
    items = pending.json()
    assert len(items) == 1
    item = items[0]
    approval_id = f"{execution_id}/review#1"
    assert item["approval_id"] == approval_id
    assert item["execution_id"] == execution_id
    assert item["step"] == "review"
    assert item["prompt"] == "Publish a total of 245?"

    as_agent = cli("--as-agent", "approvals", "approve", approval_id)
    assert as_agent.returncode == 1, as_agent.describe()
    assert "only a human approver can" in as_agent.stderr
    assert "Traceback" not in as_agent.stderr
    assert cli("approvals", "list", "--json").json() == items  # still pending

    approved = cli("approvals", "approve", approval_id, "--comment", "ok", "--json")
    assert approved.returncode == 0, approved.describe()
    outcome = approved.json()
    assert outcome["execution_id"] == execution_id
    assert outcome["status"] == "completed"
    assert outcome["result"] == {"published": 245, "comment": "ok"}

    twice, shown = cli_all(
        ("approvals", "approve", approval_id),
        ("executions", "show", execution_id, "--json"),
        home=home,
    )
    assert twice.returncode == 1, twice.describe()
    assert "already decided" in twice.stderr
    view = shown.json()
    assert view["status"] == "completed"
    assert view["result"] == outcome["result"]
    assert [s["step"] for s in view["steps"]] == ["start", "review", "publish"]


def test_reject_takes_the_other_branch(cli, playbooks):
    execution_id = _paused(cli, playbooks)

    rejected = cli("approvals", "reject", f"{execution_id}/review#1", "--comment", "not now")
    assert rejected.returncode == 0, rejected.describe()
    assert "completed" in rejected.stdout
    assert '"discarded": true' in rejected.stdout
    assert "✓ discard" in rejected.stderr
    assert "publish" not in rejected.stderr

    events = cli("executions", "events", execution_id, "--json").json()
    types = [e["event_type"] for e in events]
    assert types.count("approval.requested") == 1
    assert types.index("playbook.paused") < types.index("approval.decided")
    assert types.index("approval.decided") < types.index("playbook.resumed")
    decided = next(e for e in events if e["event_type"] == "approval.decided")
    assert decided["payload"]["approved"] is False
    assert decided["payload"]["comment"] == "not now"
    assert decided["payload"]["decided_by"] == "local-admin"
    started = [e["entity_id"] for e in events if e["event_type"] == "step.started"]
    assert started == ["start", "review", "discard"]


def test_deciding_an_unknown_approval_exits_1(cli):
    done = cli("approvals", "approve", "0000nope/review#1")
    assert done.returncode == 1, done.describe()
    assert "not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_resume_decides_an_expired_approval_by_its_on_timeout_rule(cli, playbooks):
    paused = cli("run", playbooks / "approval_timeout.yaml", "--json")
    assert paused.returncode == 0, paused.describe()
    execution_id = paused.json()["execution_id"]
    assert paused.json()["status"] == "paused"
    time.sleep(0.5)  # past the approval's 0.3 s timeout

    resumed = cli("resume", "--json")
    assert resumed.returncode == 0, resumed.describe()
    assert resumed.json() == [
        {
            "execution_id": execution_id,
            "status": "completed",
            "result": {"decided_by": "timeout"},
            "error": None,
        }
    ]


def test_approving_a_step_that_is_not_an_approval_says_so(cli, playbooks):
    execution_id = _paused(cli, playbooks)

    done = cli("approvals", "approve", f"{execution_id}/start#1")
    assert done.returncode == 1, done.describe()
    assert "already decided" not in done.stderr
    assert "no pending approval" in done.stderr
