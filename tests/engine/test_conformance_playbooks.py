"""The upstream NoETL conformance corpus runs here to the outcome its comments describe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.core import events as ev
from engine.core.replay import replay
from engine.dsl.loader import parse_playbook
from engine.errors import PlaybookInvalid
from engine.runtime.embedded import Engine

CONFORMANCE = Path(__file__).resolve().parents[3] / "shared" / "conformance"
Check = Callable[[Any], bool]

# file → (expected status, check on the result or error)
EXPECTED: dict[str, tuple[str, Check | None]] = {
    "hello_world/hello_world.yaml": ("completed", lambda r: r == {"status": "complete"}),
    "simple_python.yaml": ("completed", lambda r: r == {"status": "completed"}),
    "test_start_with_action.yaml": ("completed", lambda r: r == {"status": "complete"}),
    "test_end_with_action.yaml": ("completed", lambda r: r["data"]["cleaned_up"] is True),
    "test_args_passing.yaml": ("completed", None),
    "atomic_item_context.yaml": ("completed", None),
    "root_scripts/test_simple_loop.yaml": ("completed", None),
    "loop_test.yaml": ("completed", lambda r: r["test_passed"] is True),
    "test_loop_instance_isolation/playbook.yaml": ("completed", None),
    # (its verify step's own verdict is checked in test_loop_results_read_like_upstream)
    "fanout_reduce/fanout_reduce_phase6.yaml": ("completed", lambda r: r == {"reduced": True}),
    "control_flow_workbook/control_flow_workbook.yaml": ("completed", None),
    "duckdb_test.yaml": ("completed", lambda r: r["test_passed"] is True),
    "broken_sql.yaml": ("failed", lambda e: e["step"] == "verify_pg_data"),
    "actions_test.yaml": ("completed", lambda r: r["status"] == "completed"),
    "comprehensive_test.yaml": ("completed", None),
    "load_test/heavy_loop_aggregation/heavy_loop_aggregation.yaml": (
        "completed",
        lambda r: r["all_passed"] is True,
    ),
    "root_scripts/test_implicit_end_routing.yaml": (
        "completed",
        lambda r: r == {"status": "workflow_complete"},
    ),
    "root_scripts/test_script_loading.yaml": ("completed", lambda r: r == {"test": "passed"}),
    "test_large_tabular_result.yaml": ("completed", lambda r: r["test_passed"] is True),
    "test_oversize_command_context.yaml": ("completed", lambda r: r["status"] == "success"),
    "vars_test/test_transient.yaml": ("completed", None),
    "vars_test/test_vars_block.yaml": ("completed", None),
    "vars_test/test_vars_template_access.yaml": ("completed", None),
    "vars_test/test_vars_api.yaml": ("completed", None),
    "playbook_composition/user_profile_scorer.yaml": (
        "completed",
        lambda r: r["score_category"] == "Junior",
    ),
    "retry_test/duckdb_retry_query.yaml": ("completed", None),
    "script_execution/python_file_example.yaml": ("completed", None),
}
# Rejected on purpose, with the text the error must contain.
REJECTED: dict[str, str] = {
    "broken_playbooks/should_error_tool_is_required.yaml": "`tool` is required",
    "test_large_result_extraction.yaml": "did not expect `output`",
}
SLOW = {"vars_test/test_vars_api.yaml"}


def _listed() -> list[str]:
    return (CONFORMANCE / "LIST.txt").read_text().split()


def test_every_listed_playbook_has_an_expectation() -> None:
    listed = set(_listed())
    covered = set(EXPECTED) | set(REJECTED) | {"retry_test/python_retry_exception.yaml"}
    assert listed == covered


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in EXPECTED],
)
async def test_conformance_playbook_runs_to_its_described_outcome(
    engine: Engine, name: str
) -> None:
    file = CONFORMANCE / name
    entry = await engine.register(file.read_text(), source=str(file))
    outcome = await engine.run(entry.path)
    status, check = EXPECTED[name]
    assert outcome.status == status, outcome.error
    if check is not None:
        assert check(outcome.result if status == "completed" else outcome.error)
    events = await engine.events.read(outcome.execution_id)
    started = [
        (e.step_run_id, e.iteration) for e in events if e.event_type == ev.LOOP_ITERATION_STARTED
    ]
    finished = [
        (e.step_run_id, e.iteration) for e in events if e.event_type == ev.LOOP_ITERATION_FINISHED
    ]
    assert sorted(finished) == sorted(started), "each loop iteration is finished exactly once"
    replay(parse_playbook(file.read_text(), source=str(file)), events)


@pytest.mark.parametrize("name", list(REJECTED))
async def test_conformance_playbook_is_rejected_with_a_clear_error(
    engine: Engine, name: str
) -> None:
    file = CONFORMANCE / name
    with pytest.raises(PlaybookInvalid) as caught:
        await engine.register(file.read_text(), source=str(file))
    assert REJECTED[name] in str(caught.value)
    assert "line" in str(caught.value)


async def test_random_retry_playbook_retries_until_success_or_five_attempts(
    engine: Engine,
) -> None:
    file = CONFORMANCE / "retry_test/python_retry_exception.yaml"
    entry = await engine.register(file.read_text(), source=str(file))
    outcome = await engine.run(entry.path)
    events = await engine.events.read(outcome.execution_id)
    start = [
        e for e in events if e.event_type == ev.TOOL_PROCESSED and e.entity_id == "start.python"
    ]
    assert len(start) == 1
    attempts = start[0].attempt or 0
    retries = [e for e in events if e.event_type == ev.RETRY_STARTED]
    assert len(retries) == attempts - 1
    if outcome.status == "completed":
        assert start[0].status == "success"
    else:
        assert outcome.status == "failed" and attempts == 5


def test_conformance_dir_exists() -> None:
    assert Path(CONFORMANCE, "LIST.txt").exists(), f"missing corpus at {CONFORMANCE}"


async def test_loop_results_read_like_upstream(engine: Engine) -> None:
    file = CONFORMANCE / "test_loop_instance_isolation/playbook.yaml"
    entry = await engine.register(file.read_text(), source=str(file))
    outcome = await engine.run(entry.path)
    events = await engine.events.read(outcome.execution_id)
    (verify,) = [
        e
        for e in events
        if e.event_type == ev.TOOL_PROCESSED and e.entity_id == "verify_results.python"
    ]
    assert verify.payload["output"]["verification"] == "Both loops completed independently"
