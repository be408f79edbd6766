"""The conformance corpus in distributed mode: every playbook reaches the outcome it
reaches on the embedded engine (the table of ``tests/engine/test_conformance_playbooks``),
with a `noetl-agent server --database --nats` process and two `noetl-agent worker`
processes running the tools (in the corpus directory, where its relative script paths
resolve). One cluster serves the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.core import events as ev
from engine.core.replay import replay
from engine.dsl.loader import parse_playbook
from engine.errors import PlaybookInvalid
from tests.distributed.cluster import ProcessCluster, postgres_dsn, require_nats
from tests.engine.test_conformance_playbooks import CONFORMANCE, EXPECTED, REJECTED

pytestmark = pytest.mark.slow
RETRY = "retry_test/python_retry_exception.yaml"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    require_nats()
    # Relative script paths resolve on the worker, against its working directory.
    started = ProcessCluster(
        tmp_path_factory.mktemp("conformance"), postgres_dsn(), workdir=CONFORMANCE
    )
    try:
        started.start(workers=2)
        yield started
    finally:
        started.close()


def _run(cluster: ProcessCluster, name: str) -> tuple[str, str, object]:
    """Register and run one corpus playbook; (execution id, status, result or error)."""
    file = CONFORMANCE / name
    with cluster.client() as api:
        entry = api.register(file.read_text())
        started = api.execute(entry.path)
        outcome = api.wait(started.execution_id)
    payload = outcome.result if outcome.status == "completed" else outcome.error
    return outcome.execution_id, outcome.status, payload


def test_every_corpus_playbook_is_covered() -> None:
    listed = set((CONFORMANCE / "LIST.txt").read_text().split())
    assert listed == set(EXPECTED) | set(REJECTED) | {RETRY}
    assert len(listed) == 30


@pytest.mark.parametrize("name", list(EXPECTED))
def test_conformance_playbook_reaches_its_outcome_on_workers(
    cluster: ProcessCluster, name: str
) -> None:
    _, status, payload = _run(cluster, name)
    expected, check = EXPECTED[name]
    assert status == expected, (payload, cluster.logs())
    if check is not None:
        assert check(payload), payload


@pytest.mark.parametrize("name", list(REJECTED))
def test_invalid_conformance_playbook_is_refused_by_the_server(
    cluster: ProcessCluster, name: str
) -> None:
    with cluster.client() as api, pytest.raises(PlaybookInvalid) as caught:
        api.register((CONFORMANCE / name).read_text())
    assert REJECTED[name] in str(caught.value)
    assert "line" in str(caught.value)


def test_random_retry_playbook_retries_on_workers(cluster: ProcessCluster) -> None:
    execution_id, status, _ = _run(cluster, RETRY)
    with cluster.client() as api:
        events = api.events(execution_id)
    (start,) = [
        e for e in events if e.event_type == ev.TOOL_PROCESSED and e.entity_id == "start.python"
    ]
    attempts = start.attempt or 0
    assert len([e for e in events if e.event_type == ev.RETRY_STARTED]) == attempts - 1
    if status == "completed":
        assert start.status == "success"
    else:
        assert status == "failed" and attempts == 5


def test_loop_verdict_reads_like_upstream_on_workers(cluster: ProcessCluster) -> None:
    execution_id, status, _ = _run(cluster, "test_loop_instance_isolation/playbook.yaml")
    assert status == "completed"
    with cluster.client() as api:
        events = api.events(execution_id)
    (verify,) = [
        e
        for e in events
        if e.event_type == ev.TOOL_PROCESSED and e.entity_id == "verify_results.python"
    ]
    assert verify.payload["output"]["verification"] == "Both loops completed independently"
    started = [
        (e.step_run_id, e.iteration) for e in events if e.event_type == ev.LOOP_ITERATION_STARTED
    ]
    finished = {
        (e.step_run_id, e.iteration): e.status
        for e in events
        if e.event_type == ev.LOOP_ITERATION_FINISHED
    }
    assert started and sorted(finished) == sorted(started)
    assert len(finished) == len([e for e in events if e.event_type == ev.LOOP_ITERATION_FINISHED])
    assert set(finished.values()) == {ev.STATUS_SUCCESS}
    file = CONFORMANCE / "test_loop_instance_isolation/playbook.yaml"
    replay(parse_playbook(file.read_text()), events)


def test_both_workers_ran_commands(cluster: ProcessCluster) -> None:
    """Runs last in the module: by now the corpus has been spread over both workers."""
    for n in range(2):
        text = Path(cluster.worker_log(n)).read_text()
        assert "engine.worker.service: running" in text, cluster.logs()
