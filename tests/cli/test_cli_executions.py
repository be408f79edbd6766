"""`noetl-agent executions list|show|events` and sub-playbooks, through real subprocesses."""

from __future__ import annotations

CANONICAL_TYPES = [
    "playbook.execution.requested",
    "playbook.started",
    "workflow.started",
    "step.started",
    "tool.started",
    "tool.processed",
    "step.finished",
    "next.evaluated",
    "workflow.finished",
    "playbook.processed",
]
STEP_LIFECYCLE = ["step.started", "tool.started", "tool.processed", "step.finished"]


def test_list_show_and_events_of_executions(cli, cli_all, home, playbooks):
    first = cli("run", playbooks / "hello.yaml", "--json")
    assert first.returncode == 0, first.describe()
    first_id = first.json()["execution_id"]
    # Two processes at once on the same home: both finish, neither disturbs the other.
    failed, second = cli_all(
        ("run", playbooks / "failing.yaml", "--json"),
        ("run", playbooks / "hello.yaml", "--json", "--set", "n=5"),
        home=home,
    )
    assert failed.returncode == 1, failed.describe()
    assert second.returncode == 0, second.describe()
    assert second.json()["result"]["double"] == 10
    failed_id = failed.json()["execution_id"]
    second_id = second.json()["execution_id"]

    listing, only_failed, shown, events_call, table = cli_all(
        ("executions", "list", "--json"),
        ("executions", "list", "--status", "failed", "--json"),
        ("executions", "show", failed_id, "--json"),
        ("executions", "events", first_id, "--json"),
        ("executions", "events", first_id),
        home=home,
    )

    assert listing.returncode == 0, listing.describe()
    rows = listing.json()
    assert len(rows) == 3
    assert rows[-1]["execution_id"] == first_id  # newest first
    assert [r["started_at"] for r in rows] == sorted((r["started_at"] for r in rows), reverse=True)
    statuses = {r["execution_id"]: r["status"] for r in rows}
    assert statuses == {first_id: "completed", second_id: "completed", failed_id: "failed"}
    oldest = rows[-1]
    assert oldest["playbook_path"] == "tests/cli/hello"
    assert oldest["playbook_version"] == 1
    assert oldest["parent_execution_id"] is None
    assert oldest["finished_at"] >= oldest["started_at"]

    assert [r["execution_id"] for r in only_failed.json()] == [failed_id]

    assert shown.returncode == 0, shown.describe()
    view = shown.json()
    assert view["status"] == "failed"
    assert [(s["step"], s["status"]) for s in view["steps"]] == [
        ("start", "success"),
        ("explode", "error"),
    ]
    assert "boom 42" in view["steps"][1]["error"]["message"]
    assert "boom 42" in view["error"]["message"]

    assert events_call.returncode == 0, events_call.describe()
    events = events_call.json()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["execution_id"] == first_id for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    types = [e["event_type"] for e in events]
    assert set(CANONICAL_TYPES) <= set(types)
    assert types[0] == "playbook.execution.requested"
    assert types[-2:] == ["workflow.finished", "playbook.processed"]
    assert events[-1]["status"] == "success"
    assert events[-1]["payload"]["result"]["double"] == 2
    assert events[0]["event_alias"] == "PlaybookExecutionRequested"
    for step in ("start", "double"):
        lifecycle = [
            e["event_type"]
            for e in events
            if e.get("step_run_id") == f"{step}#1" and e["event_type"] in STEP_LIFECYCLE
        ]
        assert lifecycle == STEP_LIFECYCLE, step
    routed = [e["entity_id"] for e in events if e["event_type"] == "next.evaluated"]
    assert routed == ["start", "double"]

    assert table.returncode == 0, table.describe()
    assert "playbook.processed" in table.stdout


def test_unknown_execution_exits_1_with_a_traceback_only_with_debug(cli_all):
    show, events, debug = cli_all(
        ("executions", "show", "0000nope", "--json"),
        ("executions", "events", "0000nope", "--json"),
        ("--debug", "executions", "show", "0000nope"),
    )
    for done in (show, events):
        assert done.returncode == 1, done.describe()
        assert "0000nope" in done.stderr
        assert "not found" in done.stderr
        assert "executions list" in done.stderr  # the hint
        assert "Traceback" not in done.stderr
        assert done.stdout.strip() == ""

    assert debug.returncode == 1, debug.describe()
    assert "not found" in debug.stderr
    assert "Traceback" in debug.stderr


def test_sub_playbook_result_and_parent_link(cli, playbooks):
    registered = cli("catalog", "register", playbooks / "child.yaml", "--json")
    assert registered.returncode == 0, registered.describe()
    assert registered.json()["path"] == "tests/cli/child"

    done = cli("run", playbooks / "parent.yaml", "--json")
    assert done.returncode == 0, done.describe()
    outcome = done.json()
    assert outcome["status"] == "completed"
    assert outcome["result"] == {"child_value": 70}

    rows = cli("executions", "list", "--json").json()
    by_path = {r["playbook_path"]: r for r in rows}
    assert set(by_path) == {"tests/cli/parent", "tests/cli/child"}
    parent, child = by_path["tests/cli/parent"], by_path["tests/cli/child"]
    assert parent["execution_id"] == outcome["execution_id"]
    assert parent["parent_execution_id"] is None
    assert child["parent_execution_id"] == outcome["execution_id"]
    assert child["status"] == "completed"
