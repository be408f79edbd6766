"""Bad requests against a distributed server process: each is refused with a problem
document that says what is wrong, and what was stored before reads back unchanged."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from tests.distributed.cluster import ProcessCluster, postgres_dsn, require_nats
from tests.processes import NOETL_AGENT

pytestmark = pytest.mark.slow

GOOD = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: good, path: bad-input/good}
workload: {n: 2}
workflow:
  - step: start
    tool: {kind: python, code: "def main(n):\n    return {'double': n * 2}"}
    input: {n: "{{ n }}"}
"""
# `ping` and `pong` hand over to each other for ever; `start` can only lead there.
CYCLE = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: cycle, path: bad-input/cycle}
workflow:
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: ping}]}
  - step: ping
    tool: {kind: noop}
    next: {arcs: [{step: pong}]}
  - step: pong
    tool: {kind: noop}
    next: {arcs: [{step: ping}]}
"""
LIMIT = 1024 * 1024  # the server's default --max-body-bytes
UNKNOWN = "no-such-execution"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    """One server and one worker, with one playbook registered and run to completion."""
    require_nats()
    started = ProcessCluster(tmp_path_factory.mktemp("bad-input"), postgres_dsn())
    try:
        started.start(workers=1)
        with started.client() as api:
            api.register(GOOD)
            outcome = api.wait(api.execute("bad-input/good").execution_id)
        assert outcome.status == "completed" and outcome.result == {"double": 4}, outcome
        yield started
    finally:
        started.close()


@pytest.fixture
def http(cluster: ProcessCluster) -> Iterator[dict[str, httpx.Client]]:
    clients = {
        who: httpx.Client(
            base_url=cluster.url,
            headers={"Authorization": f"Bearer {cluster.tokens[who]}"},
            timeout=30,
        )
        for who in ("operator", "worker")
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            client.close()


def _stored(cluster: ProcessCluster) -> dict[str, Any]:
    """Everything a reader sees: catalog, its YAML, executions and their event logs."""
    with cluster.client() as api:
        executions = api.list_executions(limit=100)
        return {
            "catalog": api.list_playbooks(),
            "good": api.get_playbook("bad-input/good"),
            "executions": executions,
            "events": {
                e["execution_id"]: [event.to_dict() for event in api.events(e["execution_id"])]
                for e in executions
            },
        }


@pytest.fixture
def unchanged(cluster: ProcessCluster) -> Iterator[None]:
    """Asserts after the test that the stored state reads back exactly as before it."""
    before = _stored(cluster)
    assert before["catalog"] and before["events"]
    yield
    assert _stored(cluster) == before


def _problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    document: dict[str, Any] = response.json()
    assert document["type"] == f"/problems/{kind}" and document["status"] == status
    assert document["detail"] and unquote(document["instance"]) == unquote(
        response.request.url.path
    )
    return document


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("who", "path"),
    [
        ("operator", "/api/catalog/register"),
        ("operator", "/api/execute"),
        ("worker", "/api/events/batch"),
        ("worker", "/api/events"),
    ],
)
def test_malformed_json_is_refused(
    http: dict[str, httpx.Client], unchanged: None, who: str, path: str
) -> None:
    response = http[who].post(path, content=b'{"content": "oops', headers=JSON)
    document = _problem(response, 400, "malformed-json")
    assert "not valid JSON" in document["detail"]


def test_a_body_of_the_wrong_shape_is_refused_field_by_field(
    http: dict[str, httpx.Client], unchanged: None
) -> None:
    response = http["operator"].post("/api/execute", json={"path": "", "workload": [1]})
    document = _problem(response, 422, "invalid-request")
    assert {error["location"] for error in document["errors"]} == {"body.path", "body.workload"}
    batch = http["worker"].post("/api/events/batch", json={"events": [{"event_id": "x"}]})
    assert "event_type" in json.dumps(_problem(batch, 422, "invalid-request")["errors"])


def test_unknown_execution_ids_answer_404(
    http: dict[str, httpx.Client], cluster: ProcessCluster, unchanged: None
) -> None:
    operator, worker = http["operator"], http["worker"]
    for response in (
        operator.get(f"/api/executions/{UNKNOWN}"),
        operator.get(f"/api/executions/{UNKNOWN}/events"),
        operator.post(f"/api/executions/{UNKNOWN}/cancel", json={}),
        operator.post("/api/execute", json={"path": "bad-input/none"}),
        operator.get("/api/catalog/bad-input/none"),
        worker.post(f"/api/commands/{UNKNOWN}%3Astart%231/claim", json={"worker_id": "w"}),
    ):
        document = _problem(response, 404, "not-found")
        assert UNKNOWN in document["detail"] or "bad-input/none" in document["detail"]
    # A batch naming an unknown execution stores none of its events, the known one's neither.
    known = _stored(cluster)["executions"][0]["execution_id"]
    events = [
        {
            "event_id": f"{execution_id}:stray",
            "event_type": "tool.started",
            "execution_id": execution_id,
            "timestamp": "2026-01-01T00:00:00+00:00",
            "step_run_id": "start#1",
        }
        for execution_id in (known, UNKNOWN)
    ]
    _problem(worker.post("/api/events/batch", json={"events": events}), 404, "not-found")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_body_is_refused_naming_the_limit(
    http: dict[str, httpx.Client], unchanged: None, chunked: bool
) -> None:
    body = json.dumps({"content": GOOD + "#" * LIMIT}).encode()
    content: Any = (
        iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    )
    response = http["operator"].post("/api/catalog/register", content=content, headers=JSON)
    document = _problem(response, 413, "payload-too-large")
    assert document["limit_bytes"] == LIMIT
    assert f"limit of {LIMIT} bytes" in document["detail"]
    assert "--max-body-bytes" in document["detail"]


def test_a_playbook_with_a_cycle_and_no_exit_is_refused(
    http: dict[str, httpx.Client], unchanged: None
) -> None:
    response = http["operator"].post("/api/catalog/register", json={"content": CYCLE})
    document = _problem(response, 422, "playbook-invalid")
    messages = {issue["path"]: issue["message"] for issue in document["issues"]}
    assert messages == {
        "workflow[0]": "step `start` leads only into a cycle with no exit (steps `ping`, "
        "`pong`): no path from it ends",
        "workflow[1]": "step `ping` is in a cycle with no exit (steps `ping`, `pong`): "
        "no path from it ends",
        "workflow[2]": "step `pong` is in a cycle with no exit (steps `ping`, `pong`): "
        "no path from it ends",
    }
    assert all(issue["line"] and issue["hint"] for issue in document["issues"])
    refused = http["operator"].post("/api/execute", json={"path": "bad-input/cycle"})
    _problem(refused, 404, "not-found")


def test_validate_names_the_steps_of_a_cycle(tmp_path: Path) -> None:
    file = tmp_path / "cycle.yaml"
    file.write_text(CYCLE)
    checked = subprocess.run(
        [NOETL_AGENT, "validate", str(file)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 2
    assert "playbook is invalid (3 problems)" in checked.stderr
    assert (
        "workflow[1] (line 8): step `ping` is in a cycle with no exit (steps `ping`, `pong`)"
        in checked.stderr
    )
    assert "step `start` leads only into a cycle with no exit" in checked.stderr
    assert "add an arc out of the cycle" in checked.stderr
    as_json = subprocess.run(
        [NOETL_AGENT, "validate", "--json", str(file)], capture_output=True, text=True, timeout=60
    )
    assert as_json.returncode == 2
    report = json.loads(as_json.stdout)
    assert report["valid"] is False and [i["line"] for i in report["issues"]] == [5, 8, 11]
