"""`noetl-agent run`, `validate` and `schema` through the installed console script."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml


def test_run_reports_the_result_as_json_or_with_progress(cli_all, playbooks):
    hello = playbooks / "hello.yaml"
    as_json, human = cli_all(
        ("run", hello, "--json", "--set", "n=3", "--set", "a.b=x", "--set", "name=Ann Lee"),
        ("run", hello),
    )

    assert as_json.returncode == 0, as_json.describe()
    outcome = as_json.json()
    assert set(outcome) == {"execution_id", "status", "result", "error"}
    assert outcome["status"] == "completed"
    assert outcome["error"] is None
    assert outcome["result"] == {
        "n": 3,
        "n_type": "int",
        "greeting": "hello Ann Lee",
        "b": "x",
        "double": 6,
    }
    assert "✓" not in as_json.stderr  # --json keeps progress off

    assert human.returncode == 0, human.describe()
    assert "✓ start" in human.stderr
    assert "✓ double" in human.stderr
    assert "Traceback" not in human.stderr
    assert "completed" in human.stdout
    body = human.stdout[human.stdout.index("{") :]
    assert json.loads(body) == {
        "n": 1,
        "n_type": "int",
        "greeting": "hello world",
        "b": "default",
        "double": 2,
    }


def test_failed_execution_exits_1_with_the_exception_and_no_traceback(cli_all, playbooks):
    failing = playbooks / "failing.yaml"
    as_json, human = cli_all(("run", failing, "--json"), ("run", failing))

    assert as_json.returncode == 1, as_json.describe()
    outcome = as_json.json()
    assert outcome["status"] == "failed"
    assert outcome["result"] is None
    assert "ValueError" in outcome["error"]["message"]
    assert "boom 42" in outcome["error"]["message"]
    assert outcome["error"]["step"] == "explode"
    assert "Traceback" not in as_json.stderr

    assert human.returncode == 1, human.describe()
    assert "✓ start" in human.stderr
    assert "✗ explode" in human.stderr
    assert "boom 42" in human.stderr
    assert "failed" in human.stdout
    assert "Traceback" not in human.stderr


def test_bad_input_exits_2_with_a_clear_message(cli_all, playbooks, tmp_path):
    invalid, missing, bad_set = cli_all(
        ("run", playbooks / "invalid.yaml", "--json"),
        ("run", tmp_path / "absent.yaml", "--json"),
        ("run", playbooks / "hello.yaml", "--set", "no-equals-sign"),
    )

    assert invalid.returncode == 2, invalid.describe()
    assert "nxet" in invalid.stderr
    assert "did you mean `next`?" in invalid.stderr
    assert "line 8" in invalid.stderr
    assert invalid.stdout.strip() == ""

    assert missing.returncode == 2, missing.describe()
    assert "absent.yaml" in missing.stderr

    assert bad_set.returncode == 2, bad_set.describe()
    assert "KEY=VALUE" in bad_set.stderr
    assert "hint:" in bad_set.stderr

    for done in (invalid, missing, bad_set):
        assert "Traceback" not in done.stderr


def test_missing_file_message_does_not_claim_zero_problems(cli, tmp_path):
    done = cli("run", tmp_path / "absent.yaml")

    assert done.returncode == 2
    assert "0 problems" not in done.stderr
    assert "does not exist" in done.stderr or "No such file" in done.stderr


def test_retry_policy_recovers_after_two_failures(cli, playbooks, tmp_path):
    counter = tmp_path / "attempts.txt"
    done = cli("run", playbooks / "retry.yaml", "--json", "--set", f"counter={counter}")

    assert done.returncode == 0, done.describe()
    outcome = done.json()
    assert outcome["status"] == "completed"
    assert outcome["result"] == {"attempt": 3}
    assert counter.read_text() == "3"

    events = cli("executions", "events", outcome["execution_id"], "--json").json()
    retries = [e for e in events if e["event_type"] == "retry.started"]
    assert [e["attempt"] for e in retries] == [2, 3]
    assert all(e["step_run_id"] == "flaky#1" for e in retries)
    processed = [e for e in events if e["event_type"] == "tool.processed"]
    assert len(processed) == 1
    assert processed[0]["status"] == "success"
    assert processed[0]["step_run_id"] == "flaky#1"
    assert processed[0]["attempt"] == 3


def test_failure_arc_routes_to_a_handler(cli, playbooks):
    done = cli("run", playbooks / "failure_route.yaml", "--json")

    assert done.returncode == 0, done.describe()
    outcome = done.json()
    assert outcome["status"] == "completed"
    assert outcome["result"] == {"handled": True}


def test_parallel_loop_keeps_input_order_and_bounds_concurrency(cli, playbooks):
    done = cli("run", playbooks / "loop.yaml", "--json")

    assert done.returncode == 0, done.describe()
    outcome = done.json()
    assert outcome["result"] == [1, 4, 9, 16, 25]

    events = cli("executions", "events", outcome["execution_id"], "--json").json()
    in_flight: set[int] = set()
    peak = 0
    finished_order = []
    for event in events:
        if event["event_type"] == "loop.iteration.started":
            in_flight.add(event["iteration"])
            peak = max(peak, len(in_flight))
        elif event["event_type"] == "tool.processed":
            in_flight.discard(event["iteration"])
            finished_order.append(event["iteration"])
    assert peak == 2
    assert sorted(finished_order) == [0, 1, 2, 3, 4]
    assert finished_order[-1] == 0  # the slow first item ends last; the result keeps its place
    closed = [e for e in events if e["event_type"] == "loop.iteration.finished"]
    assert [e["iteration"] for e in closed] == finished_order
    assert {e["status"] for e in closed} == {"success"}
    outputs = {e["iteration"]: e["payload"]["output"] for e in closed}
    assert [outputs[i] for i in range(5)] == [1, 4, 9, 16, 25]


def test_inclusive_fan_out_joins_once(cli, playbooks):
    done = cli("run", playbooks / "fanout.yaml", "--json")

    assert done.returncode == 0, done.describe()
    outcome = done.json()
    assert outcome["status"] == "completed"
    assert outcome["result"] == ["a", "b", "c"]

    events = cli("executions", "events", outcome["execution_id"], "--json").json()
    started = Counter(e["entity_id"] for e in events if e["event_type"] == "step.started")
    assert started == {"start": 1, "a": 1, "b": 1, "c": 1, "join": 1}
    fan_out = next(
        e for e in events if e["event_type"] == "next.evaluated" and e["entity_id"] == "start"
    )
    assert [arc["step"] for arc in fan_out["payload"]["selected"]] == ["a", "b", "c"]
    join_start = next(
        e["seq"] for e in events if e["event_type"] == "step.started" and e["entity_id"] == "join"
    )
    branch_ends = [
        e["seq"]
        for e in events
        if e["event_type"] == "step.finished" and e["entity_id"] in ("a", "b", "c")
    ]
    assert len(branch_ends) == 3
    assert max(branch_ends) < join_start


def test_validate_reports_every_problem_as_text_or_json(cli_all, playbooks):
    valid, invalid, as_json = cli_all(
        ("validate", playbooks / "hello.yaml"),
        ("validate", playbooks / "invalid.yaml"),
        ("validate", playbooks / "invalid.yaml", "--json"),
    )

    assert valid.returncode == 0, valid.describe()
    assert "valid" in valid.stdout
    assert "tests/cli/hello" in valid.stdout

    assert invalid.returncode == 2, invalid.describe()
    assert "2 problems" in invalid.stderr
    assert "nxet" in invalid.stderr
    assert "`next`" in invalid.stderr
    assert "pythn" in invalid.stderr
    assert "`python`" in invalid.stderr
    assert "Traceback" not in invalid.stderr

    assert as_json.returncode == 2, as_json.describe()
    report = as_json.json()
    assert report["valid"] is False
    issues = {issue["path"]: issue for issue in report["issues"]}
    assert set(issues) == {"workflow[0].nxet", "workflow[1].tool.kind"}
    assert issues["workflow[0].nxet"]["line"] == 8
    assert "nxet" in issues["workflow[0].nxet"]["message"]
    assert "next" in issues["workflow[0].nxet"]["hint"]
    assert issues["workflow[1].tool.kind"]["line"] == 10
    assert "pythn" in issues["workflow[1].tool.kind"]["message"]
    assert "python" in issues["workflow[1].tool.kind"]["hint"]
    for issue in report["issues"]:
        assert set(issue) == {"path", "line", "message", "hint"}


def test_schema_is_a_json_schema_that_accepts_the_fixtures(cli, playbooks):
    done = cli("schema")

    assert done.returncode == 0, done.describe()
    schema = json.loads(done.stdout)
    assert "workflow" in schema["properties"]
    assert "workflow" in schema["required"]
    jsonschema = pytest.importorskip("jsonschema")
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    for name in ("hello.yaml", "fanout.yaml", "approval.yaml", "loop.yaml"):
        data = yaml.safe_load((playbooks / name).read_text())
        assert list(validator.iter_errors(data)) == [], name
    bad = yaml.safe_load((playbooks / "invalid.yaml").read_text())
    assert list(validator.iter_errors(bad))
