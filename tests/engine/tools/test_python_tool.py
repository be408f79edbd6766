"""The python tool through its public API: code styles, isolation, timeouts, the pool."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.ports import ToolContext
from engine.tools.outcome import ToolOutcome
from engine.tools.python import PythonTool

CONFORMANCE = Path("/work/shared/conformance")


@pytest.fixture
async def tool() -> AsyncIterator[PythonTool]:
    python = PythonTool(pool_size=2)
    yield python
    await python.aclose()


def ctx(timeout: float | None = None, base_dir: str | None = None) -> ToolContext:
    return ToolContext(
        execution_id="e1", step="step1", step_run_id="r1", timeout=timeout, base_dir=base_dir
    )


async def run(
    tool: PythonTool, code: str, inputs: dict[str, Any] | None = None, **config: Any
) -> ToolOutcome:
    return await tool.run({"code": code, **config}, inputs or {}, ctx())


STYLES = [
    ("main with **input", "def main(**input):\n    return input['a'] + input['b']", 3),
    ("main without parameters", "def main():\n    return 'plain'", "plain"),
    ("main with named parameters", "def main(a, b):\n    return a * 10 + b", 12),
    ("main with a default", "def main(a, z=5):\n    return a + z", 6),
    ("main taking input_data", "def main(input_data):\n    return sorted(input_data)", ["a", "b"]),
    (
        "async main",
        "import asyncio\nasync def main(a):\n    await asyncio.sleep(0)\n    return a",
        1,
    ),
    ("top-level result", "result = {'sum': a + b}", {"sum": 3}),
    ("top-level return", "total = a + b\nreturn {'total': total}", {"total": 3}),
    ("return style rebinding an input", "a = a + 100\nreturn a", 101),
    (
        "return style falling back to result",
        "if a > 5:\n    return 'big'\nresult = 'small'",
        "small",
    ),
    ("top-level await", "import asyncio\nawait asyncio.sleep(0)\nresult = b", 2),
    ("result beats main", "def main():\n    return 'main'\nresult = main() + '!'", "main!"),
    ("no value", "x = 1", None),
]


@pytest.mark.parametrize(("style", "code", "expected"), STYLES, ids=[s[0] for s in STYLES])
async def test_code_styles(tool: PythonTool, style: str, code: str, expected: Any) -> None:
    outcome = await run(tool, code, {"a": 1, "b": 2})
    assert outcome.status == "ok", outcome.error
    assert outcome.data == expected


async def test_inputs_are_names_and_input_data(tool: PythonTool) -> None:
    outcome = await run(
        tool,
        "result = [name, input_data['count'], len(input_data)]",
        {
            "name": "x",
            "count": 3,
        },
    )
    assert outcome.data == ["x", 3, 2]


async def test_an_input_named_input_data_is_used_as_is(tool: PythonTool) -> None:
    outcome = await run(tool, "result = input_data.get('table')", {"input_data": {"table": "t"}})
    assert outcome.data == "t"


async def test_an_input_named_result_is_not_the_result_unless_assigned(tool: PythonTool) -> None:
    untouched = await run(tool, "x = result['n']", {"result": {"n": 1}})
    assigned = await run(tool, "result = {'checked': result['n']}", {"result": {"n": 1}})
    assert untouched.data is None
    assert assigned.data == {"checked": 1}


async def test_libs_are_imported_under_their_alias(tool: PythonTool) -> None:
    outcome = await run(tool, "result = m.sqrt(16) + j.loads('1')", libs={"m": "math", "j": "json"})
    assert outcome.data == 5.0


async def test_a_missing_lib_fails_with_its_import_error(tool: PythonTool) -> None:
    outcome = await run(tool, "result = 1", libs={"x": "no_such_module_here"})
    assert outcome.error is not None
    assert outcome.error.kind == "python"
    assert outcome.error.code == "ModuleNotFoundError"


async def test_script_file_is_found_by_a_shorter_suffix(tool: PythonTool, tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(CONFORMANCE / "script_execution/scripts/hello_world.py", tmp_path / "scripts")
    config = {
        "script": {
            "uri": "./fixtures/playbooks/script_execution/scripts/hello_world.py",
            "source": {"type": "file"},
        }
    }
    outcome = await tool.run(config, {"name": "NoETL", "count": 3}, ctx(base_dir=str(tmp_path)))
    assert outcome.status == "ok", outcome.error
    assert outcome.data["total_greetings"] == 3
    assert outcome.data["messages"][2] == "Hello, NoETL! (Greeting #3)"


async def test_a_missing_script_is_a_validation_error(tool: PythonTool, tmp_path: Path) -> None:
    config = {"script": {"uri": "scripts/absent.py", "source": {"type": "file"}}}
    outcome = await tool.run(config, {}, ctx(base_dir=str(tmp_path)))
    assert outcome.error is not None
    assert outcome.error.kind == "validation"
    assert "scripts/absent.py" in outcome.error.message


@pytest.mark.parametrize(
    "config",
    [{}, {"code": 3}, {"code": "result = 1", "libs": ["math"]}, {"code": "x", "timeout": "soon"}],
)
async def test_unusable_config_is_a_validation_error(
    tool: PythonTool, config: dict[str, Any]
) -> None:
    outcome = await tool.run(config, {}, ctx())
    assert outcome.error is not None
    assert outcome.error.kind == "validation"


async def test_exception_reports_class_message_and_user_traceback(tool: PythonTool) -> None:
    code = "def lookup(d):\n    return d['missing']\n\nresult = lookup({})"
    outcome = await run(tool, code)
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.code) == ("python", "KeyError")
    assert outcome.error.message == "KeyError: 'missing'"
    trace = outcome.meta["traceback"]
    assert 'File "<step1>", line 4' in trace
    assert "return d['missing']" in trace
    assert "pyworker" not in trace


async def test_syntax_error_is_reported(tool: PythonTool) -> None:
    outcome = await run(tool, "result = (")
    assert outcome.error is not None
    assert outcome.error.code == "SyntaxError"


async def test_sys_exit_fails_the_step_and_the_pool_goes_on(tool: PythonTool) -> None:
    outcome = await run(tool, "import sys\nsys.exit(3)")
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.code) == ("python", "SystemExit")
    assert "sys.exit(3)" in outcome.error.message
    assert (await run(tool, "result = 'after'")).data == "after"


async def test_a_dying_process_fails_the_step_and_is_replaced(tool: PythonTool) -> None:
    outcome = await run(tool, "import os\nos._exit(7)")
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.code) == ("python", "WorkerDied")
    assert "exit code 7" in outcome.error.message
    crashed = await run(tool, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert crashed.error is not None
    assert "SIGKILL" in crashed.error.message
    outcomes = await asyncio.gather(*(run(tool, "result = 1") for _ in range(4)))
    assert [o.data for o in outcomes] == [1, 1, 1, 1]


async def test_timeout_kills_the_run_and_the_pool_goes_on(tool: PythonTool) -> None:
    outcome = await tool.run({"code": "while True:\n    pass"}, {}, ctx(timeout=0.5))
    assert outcome.error is not None
    assert outcome.error.kind == "timeout"
    assert outcome.error.retryable
    assert "0.5s timeout" in outcome.error.message
    assert (await run(tool, "result = 'after'")).data == "after"


async def test_the_smaller_of_tool_and_step_timeout_applies(tool: PythonTool) -> None:
    config = {"code": "import time\ntime.sleep(5)", "timeout": 0.2}
    outcome = await tool.run(config, {}, ctx(timeout=30))
    assert outcome.error is not None
    assert outcome.error.kind == "timeout"
    assert "0.2s" in outcome.error.message
    assert "tool's `timeout`" in outcome.error.message


async def test_parallel_runs_share_the_pool(tool: PythonTool) -> None:
    await asyncio.gather(run(tool, "result = 0"), run(tool, "result = 0"))  # both started
    code = "import time, os\ntime.sleep(0.2)\nresult = [n, os.getpid()]"
    started = asyncio.get_running_loop().time()
    outcomes = await asyncio.gather(*(run(tool, code, {"n": n}) for n in range(4)))
    elapsed = asyncio.get_running_loop().time() - started
    assert [o.data[0] for o in outcomes] == [0, 1, 2, 3]
    assert len({o.data[1] for o in outcomes}) == 2  # pool_size processes, each reused
    assert elapsed < 0.75  # two at a time, not one after another


async def wait_for_file(path: Path) -> str:
    async with asyncio.timeout(5):
        while not path.exists() or not path.read_text():
            await asyncio.sleep(0.01)
    return path.read_text()


async def process_gone(pid: int) -> bool:
    async with asyncio.timeout(5):
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            await asyncio.sleep(0.01)


SLEEPER = "import os, time\nopen(marker, 'w').write(str(os.getpid()))\ntime.sleep(30)"


async def test_cancelled_run_kills_its_process(tool: PythonTool, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    task = asyncio.create_task(run(tool, SLEEPER, {"marker": str(marker)}))
    pid = int(await wait_for_file(marker))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await process_gone(pid)
    outcomes = await asyncio.gather(*(run(tool, "result = 2") for _ in range(3)))
    assert [o.data for o in outcomes] == [2, 2, 2]


async def test_aclose_ends_runs_in_flight(tmp_path: Path) -> None:
    tool = PythonTool(pool_size=1)
    marker = tmp_path / "started"
    task = asyncio.create_task(run(tool, SLEEPER, {"marker": str(marker)}))
    pid = int(await wait_for_file(marker))
    await tool.aclose()
    outcome = await task
    assert outcome.error is not None
    assert outcome.error.kind == "cancelled"
    assert await process_gone(pid)


async def test_non_json_results_are_converted(tool: PythonTool) -> None:
    code = """
import datetime, decimal
result = {
    "when": datetime.datetime(2024, 5, 6, 7, 8, 9),
    "day": datetime.date(2024, 5, 6),
    "price": decimal.Decimal("1.25"),
    "tags": {"a"},
    "pair": (1, 2),
    "text": b"hi",
    "blob": b"\\xff\\x00",
    "other": complex(1, 2),
}
"""
    outcome = await run(tool, code)
    assert outcome.data == {
        "when": "2024-05-06T07:08:09",
        "day": "2024-05-06",
        "price": 1.25,
        "tags": ["a"],
        "pair": [1, 2],
        "text": "hi",
        "blob": "/wA=",
        "other": "(1+2j)",
    }


async def test_prints_are_captured_in_meta(tool: PythonTool) -> None:
    code = "import sys, os\nprint('hello')\nprint('oops', file=sys.stderr)\nos.write(1, b'')\n"
    outcome = await run(tool, code + "result = 1")
    assert outcome.data == 1
    assert outcome.meta["stdout"] == "hello\n"
    assert outcome.meta["stderr"] == "oops\n"
    failed = await run(tool, "print('before')\nraise ValueError('bad')")
    assert failed.meta["stdout"] == "before\n"


async def test_long_output_keeps_its_end(tool: PythonTool) -> None:
    outcome = await run(tool, "for i in range(5000):\n    print(i)\nresult = 0")
    stdout = outcome.meta["stdout"]
    assert stdout.endswith("4999\n")
    assert len(stdout) < 8300


async def test_raw_writes_to_fd_1_do_not_corrupt_the_protocol(tool: PythonTool) -> None:
    outcome = await run(tool, "import os\nos.write(1, b'\\x00\\x00\\x00\\x05junk')\nresult = 'ok'")
    assert outcome.data == "ok"
    assert (await run(tool, "result = input()")).error is not None  # stdin is not the protocol


async def test_workers_are_recycled_after_their_run_limit() -> None:
    tool = PythonTool(pool_size=1, max_runs_per_worker=2)
    try:
        pids = [(await run(tool, "import os\nresult = os.getpid()")).data for _ in range(4)]
    finally:
        await tool.aclose()
    assert pids[0] == pids[1] != pids[2] == pids[3]


async def test_run_after_aclose_is_cancelled() -> None:
    tool = PythonTool(pool_size=1)
    assert (await run(tool, "result = 1")).data == 1
    await tool.aclose()
    outcome = await run(tool, "result = 1")
    assert outcome.error is not None
    assert outcome.error.kind == "cancelled"


async def test_large_values_travel_both_ways(tool: PythonTool) -> None:
    rows = [{"id": i, "name": f"row {i}", "tags": ["a", "b"]} for i in range(50_000)]
    outcome = await run(tool, "result = rows + [{'id': -1}]", {"rows": rows})
    assert outcome.status == "ok", outcome.error
    assert len(outcome.data) == 50_001
    assert outcome.data[-2] == rows[-1]


async def test_a_change_of_directory_does_not_leak_into_the_next_run(tool: PythonTool) -> None:
    async def cwd() -> str:
        return (await run(tool, "import os\nresult = os.getcwd()")).data

    before = await cwd()
    assert (await run(tool, "import os\nos.chdir('/')\nresult = os.getcwd()")).data == "/"
    assert await cwd() == before


async def test_a_worker_that_died_while_idle_is_replaced_unnoticed(tool: PythonTool) -> None:
    pid = (await run(tool, "import os\nresult = os.getpid()")).data
    os.kill(pid, signal.SIGKILL)
    await process_gone(pid)
    outcome = await run(tool, "import os\nresult = os.getpid()")
    assert outcome.status == "ok", outcome.error
    assert outcome.data != pid
