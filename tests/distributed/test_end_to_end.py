"""A `noetl-agent worker` process killed with SIGKILL in the middle of a step: the other
worker runs the step again once the claim's lease runs out, and the execution, started
with `noetl-agent run --server`, completes with the step's result recorded once.

(The conformance corpus on two worker processes is ``test_conformance_distributed``; the
server or NATS going away is ``test_faults``.)
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.core import events as ev
from tests.distributed.cluster import ProcessCluster, postgres_dsn, require_nats
from tests.processes import NOETL_AGENT, stop, wait_for

pytestmark = pytest.mark.slow

# The slow step appends the pid of the worker running it ($PPID of its shell) to a file.
SLOW = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: slow, path: e2e/slow}
workload: {marker: ""}
workflow:
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: slow}]}
  - step: slow
    tool:
      kind: shell
      cmds: ["echo $PPID >> {{ marker }}; sleep 4; echo finished"]
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: noop}
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    require_nats()
    started = ProcessCluster(tmp_path, postgres_dsn(), lease=3.0)
    try:
        started.start(workers=2)
        yield started
    finally:
        started.close()


def test_a_step_whose_worker_is_killed_runs_again_on_the_other_worker(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    marker = tmp_path / "slow.pids"
    playbook = tmp_path / "slow.yaml"
    playbook.write_text(SLOW.replace('marker: ""', f"marker: {marker}"))
    run = subprocess.Popen(
        [NOETL_AGENT, "run", str(playbook), "--server", cluster.url, "--json"],
        env=dict(cluster.env, NOETL_TOKEN=cluster.tokens["operator"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(
        lambda: marker.exists() and marker.read_text().strip(),
        30,
        "the slow step starting",
        cluster.logs,
    )
    victim = int(marker.read_text().split()[0])
    by_pid = {worker.pid: worker for worker in cluster.workers}
    assert victim in by_pid, (victim, list(by_pid))
    stop(by_pid[victim], signal.SIGKILL)

    try:
        stdout, stderr = run.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        run.kill()
        run.communicate()
        raise AssertionError(f"the run did not finish in 60 s\n{cluster.logs()}") from None
    assert stdout.strip(), f"no outcome printed: {stderr}"
    outcome = json.loads(stdout.strip().splitlines()[-1])
    assert outcome["status"] == "completed", (outcome, cluster.logs())
    runners = [int(pid) for pid in marker.read_text().split()]
    survivor = next(pid for pid in by_pid if pid != victim)
    assert runners == [victim, survivor]

    with cluster.client() as api:
        events = api.events(outcome["execution_id"])
    finals = [
        e
        for e in events
        if e.event_type == ev.TOOL_PROCESSED and (e.step_run_id or "").startswith("slow#")
    ]
    assert len(finals) == 1, finals
    assert finals[0].status == ev.STATUS_SUCCESS
    assert finals[0].payload["output"]["stdout"] == "finished\n"
    assert finals[0].payload["meta"]["usage"]["wall_ms"] >= 4000
    types = [e.event_type for e in events]
    assert types[-1] == ev.PLAYBOOK_PROCESSED and types.count(ev.PLAYBOOK_PROCESSED) == 1
