"""Resource use of each tool run, reported in ``tool.processed`` payload.meta.usage."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.core.commands import RunTool
from engine.core.events import Event
from engine.runtime.tool_runner import ToolRunner
from engine.tools.registry import ToolRegistry

ALLOCATE = "def main(mb):\n    block = bytearray(mb * 1024 * 1024)\n    return len(block)"


@pytest.fixture
async def runner() -> AsyncIterator[ToolRunner]:
    registry = ToolRegistry(python={"pool_size": 1})
    try:
        yield ToolRunner(registry)
    finally:
        await registry.aclose()


async def _usage(runner: ToolRunner, tool: dict[str, Any], **inputs: Any) -> dict[str, Any]:
    reported: list[Event] = []

    async def report(events: list[Event]) -> None:
        reported.extend(events)

    command = RunTool("e1", "s", "s#1", (tool,), dict(inputs), {})
    await runner.run(command, report)
    [final] = [event for event in reported if event.event_type == "tool.processed"]
    assert final.status == "success", final.payload
    usage: dict[str, Any] = final.payload["meta"]["usage"]
    return usage


async def test_a_python_run_reports_its_child_process_and_its_own_memory_peak(
    runner: ToolRunner,
) -> None:
    big = await _usage(runner, {"kind": "python", "code": ALLOCATE}, mb=80)
    assert big["scope"] == "tool"
    assert big["wall_ms"] > 0 and big["cpu_ms"] > 0
    assert big["peak_rss_kb"] > 80 * 1024
    small = await _usage(runner, {"kind": "python", "code": ALLOCATE}, mb=1)
    if sys.platform == "linux":  # the high-water mark is reset before each run there
        assert small["peak_rss_kb"] < big["peak_rss_kb"] - 40 * 1024


async def test_other_tools_report_this_process_and_its_reaped_subprocesses(
    runner: ToolRunner,
) -> None:
    spin = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"
    usage = await _usage(runner, {"kind": "shell", "cmds": [spin]})
    assert usage["scope"] == "process"
    assert usage["cpu_ms"] > 0 and usage["wall_ms"] > 0
    assert "peak_rss_kb" not in usage
