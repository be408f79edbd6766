"""ShellTool: commands run in order, output is kept, failures and timeouts are classified."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import time
from pathlib import Path

import pytest

from engine.ports import ToolContext
from engine.tools import shell
from engine.tools.shell import OUTPUT_CAP, ShellTool


def _ctx(*, timeout: float | None = None, base_dir: str | None = None) -> ToolContext:
    return ToolContext(
        execution_id="e1", step="shell_step", step_run_id="r1", timeout=timeout, base_dir=base_dir
    )


def _is_dead(pid: int) -> bool:
    """Gone, or a zombie waiting for an init that may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}


async def _wait_dead(pid: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while not _is_dead(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def _read_pid(path: Path, within: float = 5.0) -> int:
    deadline = time.monotonic() + within
    while not (path.exists() and path.read_text().endswith("\n")):
        assert time.monotonic() < deadline, f"{path} was never written"
        await asyncio.sleep(0.01)
    return int(path.read_text())


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_single_command_captures_stdout() -> None:
    outcome = await ShellTool().run({"cmds": ["echo hello"]}, {}, _ctx())
    assert outcome.status == "ok"
    assert outcome.data == {"stdout": "hello\n", "stderr": "", "exit_code": 0}


async def test_command_string_is_accepted() -> None:
    outcome = await ShellTool().run({"command": "printf 'a b'"}, {}, _ctx())
    assert outcome.status == "ok"
    assert outcome.data["stdout"] == "a b"


async def test_commands_run_in_order_and_accumulate_output() -> None:
    cmds = ["echo one", "echo two >&2", "echo three"]
    outcome = await ShellTool().run({"cmds": cmds}, {}, _ctx())
    assert outcome.status == "ok"
    assert outcome.data == {"stdout": "one\nthree\n", "stderr": "two\n", "exit_code": 0}


async def test_stops_at_first_failing_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cmds = ["echo before", "echo broken >&2; exit 3", f"touch {marker}"]
    outcome = await ShellTool().run({"cmds": cmds}, {}, _ctx())
    assert outcome.status == "error"
    assert outcome.error is not None
    assert outcome.error.kind == "validation"
    assert outcome.error.code == 3
    assert outcome.error.retryable is False
    assert "command 2 of 3" in outcome.error.message
    assert "exited with code 3" in outcome.error.message
    assert "broken" in outcome.error.message
    assert outcome.data == {"stdout": "before\n", "stderr": "broken\n", "exit_code": 3}
    assert not marker.exists()


async def test_env_is_merged_over_the_environment() -> None:
    config = {"cmds": ['echo "$GREETING $COUNT $HOME"'], "env": {"GREETING": "hi", "COUNT": 2}}
    outcome = await ShellTool().run(config, {}, _ctx())
    assert outcome.status == "ok"
    assert outcome.data["stdout"] == f"hi 2 {os.environ['HOME']}\n"


async def test_cwd_is_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    outcome = await ShellTool().run(
        {"cmds": ["pwd"], "cwd": "scripts"}, {}, _ctx(base_dir=str(tmp_path))
    )
    assert outcome.status == "ok"
    assert Path(outcome.data["stdout"].strip()).resolve() == (tmp_path / "scripts").resolve()


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # The background child would outlive a kill of the shell alone.
    cmd = f"sleep 30 & echo $! > {pid_file}; echo started; wait"
    started = time.monotonic()
    outcome = await ShellTool().run({"cmds": [cmd], "timeout": 0.3}, {}, _ctx())
    assert time.monotonic() - started < 3
    assert outcome.status == "error"
    assert outcome.error is not None
    assert outcome.error.kind == "timeout"
    assert outcome.error.retryable is True
    assert "0.3s" in outcome.error.message
    assert outcome.data["stdout"] == "started\n"
    # SIGKILL is delivered asynchronously: give the kernel a moment to finish the child.
    assert await _wait_dead(int(pid_file.read_text()))


async def test_step_timeout_applies_when_smaller() -> None:
    outcome = await ShellTool().run({"cmds": ["sleep 5"], "timeout": 60}, {}, _ctx(timeout=0.2))
    assert outcome.error is not None
    assert outcome.error.kind == "timeout"


async def test_output_keeps_the_last_64_kb() -> None:
    cmd = "head -c 200000 /dev/zero | tr '\\0' 'a'; printf END"
    outcome = await ShellTool().run({"cmds": [cmd]}, {}, _ctx())
    assert outcome.status == "ok"
    assert len(outcome.data["stdout"]) == OUTPUT_CAP
    assert outcome.data["stdout"].endswith("aEND")


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "cmds"),
        ({"cmds": "echo hi"}, "cmds"),
        ({"cmds": []}, "cmds"),
        ({"cmds": ["echo", 3]}, "cmds[1]"),
        ({"cmds": ["echo"], "env": ["A=1"]}, "env"),
        ({"cmds": ["echo"], "cwd": "/no/such/dir"}, "cwd"),
        ({"cmds": ["echo"], "timeout": "soon"}, "timeout"),
    ],
)
async def test_invalid_config_is_a_validation_error(config: dict[str, object], field: str) -> None:
    outcome = await ShellTool().run(config, {}, _ctx())
    assert outcome.error is not None
    assert outcome.error.kind == "validation"
    assert f"`{field}`" in outcome.error.message or field in outcome.error.message


async def test_a_signal_exit_names_the_signal() -> None:
    outcome = await ShellTool().run({"cmds": ["echo dying >&2; kill -9 $$"]}, {}, _ctx())
    assert outcome.error is not None
    assert outcome.error.kind == "validation"
    assert outcome.error.code == -9
    assert "was killed by signal 9" in outcome.error.message
    assert outcome.data == {"stdout": "", "stderr": "dying\n", "exit_code": -9}


async def test_stdin_is_empty() -> None:
    outcome = await ShellTool().run({"cmds": ["cat; echo after"], "timeout": 5}, {}, _ctx())
    assert outcome.status == "ok"
    assert outcome.data["stdout"] == "after\n"


async def test_a_shell_that_cannot_start_is_a_validation_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shell, "SHELL", "/no/such/shell")
    before = _open_fds()
    outcome = await ShellTool().run({"cmds": ["echo hi"]}, {}, _ctx())
    assert outcome.error is not None
    assert outcome.error.kind == "validation"
    assert "cannot start /no/such/shell" in outcome.error.message
    assert _open_fds() == before


async def test_cancellation_kills_the_whole_process_group(tmp_path: Path) -> None:
    shell_pid, child_pid = tmp_path / "shell.pid", tmp_path / "child.pid"
    cmd = f"echo $$ > {shell_pid}; sleep 30 & echo $! > {child_pid}; wait"
    task = asyncio.ensure_future(ShellTool().run({"cmds": [cmd]}, {}, _ctx()))
    pids = [await _read_pid(shell_pid), await _read_pid(child_pid)]
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2
    for pid in pids:
        assert await _wait_dead(pid)


async def test_background_children_holding_the_pipes_do_not_hang_the_step(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "child.pid"
    cmd = f"sleep 30 & echo $! > {pid_file}; (sleep 0.1; echo late) & echo early"
    started = time.monotonic()
    outcome = await ShellTool().run({"cmds": [cmd, "echo next"]}, {}, _ctx())
    took = time.monotonic() - started
    pid = int(pid_file.read_text())
    try:
        assert outcome.status == "ok"
        # Output written within the grace period after the shell exits is kept.
        assert outcome.data["stdout"] == "early\nlate\nnext\n"
        assert took < 2
        # A normal exit leaves background children running.
        assert not _is_dead(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
    assert await _wait_dead(pid)


async def test_many_concurrent_runs_keep_their_own_output() -> None:
    tool = ShellTool()
    before = _open_fds()
    outcomes = await asyncio.gather(
        *(
            tool.run({"cmds": [f"echo out{i}; echo err{i} >&2; exit {i % 2}"]}, {}, _ctx())
            for i in range(60)
        )
    )
    for i, outcome in enumerate(outcomes):
        assert outcome.data == {"stdout": f"out{i}\n", "stderr": f"err{i}\n", "exit_code": i % 2}
        assert outcome.status == ("ok" if i % 2 == 0 else "error")
    assert _open_fds() == before


async def test_no_descriptor_is_left_open(tmp_path: Path) -> None:
    tool = ShellTool()
    before = _open_fds()
    await tool.run({"cmds": ["echo hi", "echo oops >&2; exit 1"]}, {}, _ctx())
    await tool.run({"cmds": ["sleep 5 & wait"], "timeout": 0.1}, {}, _ctx())
    task = asyncio.ensure_future(tool.run({"cmds": ["sleep 5"]}, {}, _ctx()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _open_fds() == before


async def test_runs_where_pidfds_are_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, "pidfd_open is not available")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd, raising=False)
    outcome = await ShellTool().run({"cmds": ["echo one", "echo two; exit 4"]}, {}, _ctx())
    assert outcome.error is not None
    assert outcome.error.code == 4
    assert outcome.data["stdout"] == "one\ntwo\n"
    pid_file = tmp_path / "child.pid"
    cmd = f"sleep 30 & echo $! > {pid_file}; wait"
    outcome = await ShellTool().run({"cmds": [cmd], "timeout": 0.2}, {}, _ctx())
    assert outcome.error is not None
    assert outcome.error.kind == "timeout"
    assert await _wait_dead(int(pid_file.read_text()))
