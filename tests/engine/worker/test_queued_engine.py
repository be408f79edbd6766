"""The engine with a command queue and separate workers gives the same outcomes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.adapters.memory.queue import MemoryCommandQueue
from engine.adapters.sqlite.stores import SqliteDatabase
from engine.core.commands import RunTool
from engine.core.templates import StepResult, StepResultList
from engine.runtime.embedded import Engine
from engine.runtime.tool_runner import ToolRunner
from engine.tools.registry import ToolRegistry
from engine.worker.loop import WorkerLoop

CONFORMANCE = Path(__file__).resolve().parents[4] / "shared" / "conformance"
CORPUS = [
    "hello_world/hello_world.yaml",
    "loop_test.yaml",
    "fanout_reduce/fanout_reduce_phase6.yaml",
    "control_flow_workbook/control_flow_workbook.yaml",
    "test_loop_instance_isolation/playbook.yaml",
    "vars_test/test_vars_block.yaml",
    "playbook_composition/user_profile_scorer.yaml",
    "duckdb_test.yaml",
    "script_execution/python_file_example.yaml",
]


@pytest.fixture
async def queued(tmp_path: Path) -> AsyncIterator[Engine]:
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    queue = MemoryCommandQueue()
    engine = Engine(db.events, db.catalog, lock_dir=tmp_path / "locks", queue=queue)
    registries = [ToolRegistry(), ToolRegistry()]
    workers = []
    for registry in registries:
        # Commands cross the queue as JSON, as they would over the network.
        async def take(registry: ToolRegistry = registry) -> RunTool:
            command = await queue.take("cpu")
            return RunTool.from_dict(json.loads(json.dumps(command.to_dict())))

        runner = ToolRunner(registry)
        worker = WorkerLoop(take, runner, engine.report, concurrency=2)
        worker.start()
        workers.append(worker)
    try:
        yield engine
    finally:
        for worker in workers:
            await worker.aclose()
        for registry in registries:
            await registry.aclose()
        await engine.aclose()
        db.close()


@pytest.mark.parametrize("name", CORPUS)
async def test_corpus_runs_through_the_queue(queued: Engine, name: str) -> None:
    file = CONFORMANCE / name
    entry = await queued.register(file.read_text(), source=str(file))
    outcome = await queued.run(entry.path)
    assert outcome.status == "completed", outcome.error


async def test_cancel_drops_queued_work(queued: Engine) -> None:
    entry = await queued.register(
        "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: slow}\nworkflow:\n"
        "  - step: start\n    tool: {kind: shell, cmds: ['sleep 20']}\n"
    )
    execution_id = await queued.execute(entry.path)
    await queued.cancel(execution_id)
    assert (await queued.wait(execution_id, timeout=10)).status == "cancelled"


def test_commands_round_trip_through_json() -> None:
    command = RunTool(
        execution_id="e",
        step="s",
        step_run_id="s#1",
        tools=({"kind": "noop"},),
        step_input={"a": 1},
        context={"r": StepResult({"x": 1}), "l": StepResultList([1]), "w": 2},
        iteration=3,
        timeout=1.5,
        pool="gpu",
    )
    again = RunTool.from_dict(json.loads(json.dumps(command.to_dict())))
    assert again == command
    assert isinstance(again.context["r"], StepResult)
    assert isinstance(again.context["l"], StepResultList)
