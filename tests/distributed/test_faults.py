"""Faults of the distributed mode, with real processes: the server stopped or killed while
steps run, NATS stopped and started again, the same event posted twice, and a worker
whose token lacks the worker role. (A worker killed mid-step is ``test_end_to_end``.)
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.core import events as ev
from engine.core.commands import RunTool
from engine.core.events import Event
from engine.core.replay import replay
from engine.dsl.loader import parse_playbook
from tests.distributed.cluster import PrivateNats, ProcessCluster, postgres_dsn, require_nats
from tests.processes import stop, wait_for

pytestmark = pytest.mark.slow

# Three steps; `slow` appends a line to the marker file when it starts, then sleeps.
CHAIN = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: chain, path: faults/chain}
workload: {marker: "", pause: 3}
workflow:
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: slow}]}
  - step: slow
    tool:
      kind: shell
      cmds: ["echo started >> {{ marker }}; sleep {{ pause }}; echo finished"]
    next: {arcs: [{step: after}]}
  - step: after
    tool: {kind: shell, cmds: ["echo after"]}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: noop}
"""
# One step on a pool no worker serves: the test claims and reports it itself.
MANUAL = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: manual, path: faults/manual}
workflow:
  - step: start
    tool: {kind: shell, cmds: ["echo by hand"]}
    spec: {runtime: {pool: manual}}
"""
RUNS = 3


def _started(marker: Path) -> int:
    return len(marker.read_text().split()) if marker.exists() else 0


def _start_chains(cluster: ProcessCluster, marker: Path, pause: float) -> list[str]:
    with cluster.client() as api:
        entry = api.register(CHAIN)
        return [
            api.execute(entry.path, workload={"marker": str(marker), "pause": pause}).execution_id
            for _ in range(RUNS)
        ]


def _assert_finished_once(cluster: ProcessCluster, execution_ids: list[str]) -> None:
    """Every execution completed, every step's tool ran to success exactly once, and the
    execution ended exactly once."""
    with cluster.client(timeout=60) as api:
        for execution_id in execution_ids:
            outcome = api.wait(execution_id)
            assert outcome.status == "completed", (outcome, cluster.logs)
            events = api.events(execution_id)
            finals = [e for e in events if e.event_type == ev.TOOL_PROCESSED]
            assert sorted(e.step_run_id.split("#")[0] for e in finals if e.step_run_id) == [
                "after",
                "end",
                "slow",
                "start",
            ], finals
            assert all(e.status == ev.STATUS_SUCCESS for e in finals), finals
            (slow,) = [e for e in finals if e.entity_id and e.entity_id.startswith("slow")]
            assert slow.payload["output"]["stdout"] == "finished\n"
            kinds = [e.event_type for e in events]
            assert kinds.count(ev.PLAYBOOK_PROCESSED) == 1 and kinds[-1] == ev.PLAYBOOK_PROCESSED


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    require_nats()
    # Claims must outlive a server restart on a loaded machine (the server starting again
    # can take several seconds): an expired claim is re-issued by design, and these tests
    # check that a restart alone never runs a step twice.
    started = ProcessCluster(tmp_path, postgres_dsn(), lease=30.0)
    try:
        started.start(workers=2)
        yield started
    finally:
        started.close()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_executions_complete_across_a_server_restart(
    cluster: ProcessCluster, tmp_path: Path, how: signal.Signals
) -> None:
    marker = tmp_path / "slow.started"
    execution_ids = _start_chains(cluster, marker, pause=3)
    wait_for(lambda: _started(marker) == RUNS, 30, "every slow step starting", cluster.logs)
    assert cluster.server is not None
    stop(cluster.server, how)
    time.sleep(1)  # workers finish their steps while the server is away
    cluster.start_server()
    _assert_finished_once(cluster, execution_ids)
    assert _started(marker) == RUNS  # no slow step ran twice


LOOP = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: loop, path: faults/loop}
workload: {marker: "", items: [0, 1, 2]}
workflow:
  - step: start
    loop: {in: "{{ items }}", iterator: item}
    tool:
      kind: shell
      cmds: ["echo {{ item }} >> {{ marker }}; sleep 2; echo done {{ item }}"]
"""


def test_a_loop_resumed_across_a_server_restart_finishes_each_iteration_once(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    marker = tmp_path / "loop.started"
    with cluster.client() as api:
        entry = api.register(LOOP)
        execution_id = api.execute(entry.path, workload={"marker": str(marker)}).execution_id
    wait_for(lambda: _started(marker) == 2, 30, "the second iteration starting", cluster.logs)
    assert cluster.server is not None
    stop(cluster.server, signal.SIGKILL)
    time.sleep(1)  # the worker finishes the iteration while the server is away
    cluster.start_server()
    with cluster.client(timeout=60) as api:
        outcome = api.wait(execution_id)
        assert outcome.status == "completed", (outcome, cluster.logs)
        events = api.events(execution_id)
    assert _started(marker) == 3  # no iteration ran twice
    finished = [e for e in events if e.event_type == ev.LOOP_ITERATION_FINISHED]
    assert [(e.iteration, e.status) for e in finished] == [
        (0, ev.STATUS_SUCCESS),
        (1, ev.STATUS_SUCCESS),
        (2, ev.STATUS_SUCCESS),
    ]
    assert [e.payload["output"]["stdout"] for e in finished] == [f"done {i}\n" for i in range(3)]
    replay(parse_playbook(LOOP), events)


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[tuple[ProcessCluster, PrivateNats]]:
    nats = PrivateNats(tmp_path / "jetstream")
    nats.start()
    started = ProcessCluster(tmp_path, postgres_dsn(), nats_url=nats.url, lease=3.0)
    try:
        started.start(workers=2)
        yield started, nats
    finally:
        try:
            started.close()
        finally:
            nats.stop()


def test_executions_complete_when_nats_stops_and_starts_again(
    nats_cluster: tuple[ProcessCluster, PrivateNats], tmp_path: Path
) -> None:
    cluster, nats = nats_cluster
    marker = tmp_path / "slow.started"
    execution_ids = _start_chains(cluster, marker, pause=2)
    wait_for(lambda: _started(marker) == RUNS, 30, "every slow step starting", cluster.logs)
    nats.stop()
    with cluster.client() as api:  # executions can start while NATS is away
        execution_ids.append(
            api.execute("faults/chain", workload={"marker": str(marker), "pause": 0}).execution_id
        )
    time.sleep(3)  # the slow steps end and report while NATS is down
    health = httpx.get(f"{cluster.url}/health", timeout=10)
    assert health.status_code == 503 and "nats" in health.text, health.text
    nats.start()
    _assert_finished_once(cluster, execution_ids)
    assert httpx.get(f"{cluster.url}/health", timeout=10).status_code == 200
    for n in range(len(cluster.workers)):  # the outage is logged once, not per attempt
        log = cluster.worker_log(n).read_text()
        assert "NATS: reconnected after" in log, cluster.logs()
        outage = [ln for ln in log.splitlines() if "WARNING engine.adapters.nats.bus: NATS" in ln]
        assert len(outage) <= 3, outage
    for process in (cluster.server, *cluster.workers):
        assert process is not None and process.poll() is None, cluster.logs()


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    """A server without workers: the tests play the worker themselves."""
    require_nats()
    started = ProcessCluster(tmp_path_factory.mktemp("bare"), postgres_dsn())
    try:
        started.start(workers=0)
        yield started
    finally:
        started.close()


def _http(cluster: ProcessCluster, who: str) -> httpx.Client:
    return httpx.Client(
        base_url=cluster.url,
        headers={"Authorization": f"Bearer {cluster.tokens[who]}"},
        timeout=30,
    )


def _manual_command(cluster: ProcessCluster) -> tuple[str, str]:
    """Start the manual playbook; (execution id, global id of its one command)."""
    with cluster.client() as api:
        api.register(MANUAL)
        execution_id = api.execute("faults/manual").execution_id

        def issued() -> list[Event]:
            return [e for e in api.events(execution_id) if e.event_type == ev.STEP_STARTED]

        wait_for(lambda: bool(issued()), 10, "the step starting", cluster.logs)
        (started,) = issued()
    return execution_id, f"{execution_id}:{started.step_run_id}"


def _command_path(command_id: str, action: str) -> str:
    return f"/api/commands/{command_id.replace(':', '%3A').replace('#', '%23')}/{action}"


def test_the_same_event_posted_twice_is_stored_once(bare: ProcessCluster) -> None:
    execution_id, command_id = _manual_command(bare)
    with _http(bare, "worker") as http:
        claimed = http.post(_command_path(command_id, "claim"), json={"worker_id": "by-hand"})
        assert claimed.status_code == 200, claimed.text
        command = RunTool.from_dict(claimed.json()["command"])
        started = Event(
            event_id=f"{execution_id}:{command.command_id}:by-hand:started",
            event_type=ev.TOOL_STARTED,
            execution_id=execution_id,
            timestamp="2026-01-01T00:00:00+00:00",
            entity_type="tool",
            entity_id=command.step,
            step_run_id=command.step_run_id,
            attempt=1,
            status=ev.STATUS_IN_PROGRESS,
        ).to_dict()
        for _ in range(2):  # the same event id twice, one at a time
            answer = http.post("/api/events", json=started)
            assert answer.status_code == 200, answer.text
        with bare.client() as api:  # a lone tool.started is stored a moment later

            def stored() -> int:
                return [e.event_id for e in api.events(execution_id)].count(started["event_id"])

            wait_for(lambda: stored() > 0, 10, "tool.started being stored", bare.logs)
            assert stored() == 1
        finished: dict[str, Any] = dict(
            started,
            event_id=f"{execution_id}:{command.command_id}:by-hand:processed",
            event_type=ev.TOOL_PROCESSED,
            status=ev.STATUS_SUCCESS,
            payload={"output": {"stdout": "by hand\n"}},
        )
        for _ in range(2):  # the final event twice, in a batch each time
            answer = http.post("/api/events/batch", json={"events": [started, finished]})
            assert answer.status_code == 200, answer.text
    with bare.client() as api:
        outcome = api.wait(execution_id)
        log = api.events(execution_id)
    assert outcome.status == "completed", outcome
    ids = [e.event_id for e in log]
    assert len(ids) == len(set(ids))
    assert ids.count(started["event_id"]) == 1 and ids.count(finished["event_id"]) == 1
    assert [e.event_type for e in log].count(ev.PLAYBOOK_PROCESSED) == 1
    seqs = [e.seq or 0 for e in log]
    assert seqs == list(range(1, len(log) + 1))


def test_a_worker_with_a_viewer_token_is_refused(bare: ProcessCluster) -> None:
    execution_id, command_id = _manual_command(bare)
    with _http(bare, "viewer") as http:
        claim = http.post(_command_path(command_id, "claim"), json={"worker_id": "viewer"})
        assert claim.status_code == 403, claim.text
        assert "worker" in claim.json()["detail"]
        event = Event(
            event_id=f"{execution_id}:viewer",
            event_type=ev.TOOL_STARTED,
            execution_id=execution_id,
            timestamp="2026-01-01T00:00:00+00:00",
            step_run_id=command_id.split(":", 1)[1],
        ).to_dict()
        report = http.post("/api/events/batch", json={"events": [event]})
        assert report.status_code == 403, report.text
    worker = bare.start_worker(token=bare.tokens["viewer"])
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stop(worker)
        raise AssertionError(f"the worker kept running\n{bare.logs()}") from None
    assert worker.returncode != 0
    log = bare.worker_log(len(bare.workers) - 1).read_text()
    assert "error: the worker token lacks the worker role (403" in log, log
    assert "--role worker" in log
    with bare.client() as api:  # nothing was claimed or stored on its behalf
        assert api.get_execution(execution_id).status == "running"
        assert all(e.event_id != event["event_id"] for e in api.events(execution_id))
