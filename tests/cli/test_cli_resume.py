"""`noetl-agent resume` after a `run` process was killed (SIGKILL) or interrupted (Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def _wait_for_line(log: Path, line: str, process: subprocess.Popen[str], limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if log.exists() and line in log.read_text().splitlines():
            return
        assert process.poll() is None, f"`run` ended early with exit {process.returncode}"
        time.sleep(0.02)
    raise AssertionError(f"'{line}' did not appear in {log} within {limit} s")


def test_resume_finishes_killed_and_interrupted_runs_without_rerunning_finished_steps(
    cli, cli_all, home, spawn, playbooks, tmp_path
):
    chain = playbooks / "crash_chain.yaml"
    logs = {name: tmp_path / f"{name}.log" for name in ("killed", "interrupted", "live")}
    processes = {name: spawn("run", chain, "--set", f"log={log}") for name, log in logs.items()}
    for name, log in logs.items():
        _wait_for_line(log, "one", processes[name], limit=30)
        # `two` starts only once `one` is recorded as finished: stop the run while `two` sleeps.
        _wait_for_line(log, "two started", processes[name], limit=30)
    os.kill(processes["killed"].pid, signal.SIGKILL)
    processes["interrupted"].send_signal(signal.SIGINT)
    assert processes["killed"].wait(timeout=10) == -signal.SIGKILL
    assert processes["interrupted"].wait(timeout=10) == 130

    before = cli("executions", "list", "--json").json()
    assert len(before) == 3
    running = {r["execution_id"] for r in before if r["status"] == "running"}

    # The live run still holds its execution: `resume` leaves it to that process.
    resumed = cli("resume", "--json")
    assert resumed.returncode == 0, resumed.describe()
    outcomes = {o["execution_id"]: o for o in resumed.json()}
    assert len(outcomes) == 2
    assert set(outcomes) <= running
    for outcome in outcomes.values():
        assert outcome["status"] == "completed"
        assert outcome["result"] == 3
        assert outcome["error"] is None
    assert processes["live"].wait(timeout=30) == 0

    for name, log in logs.items():
        lines = log.read_text().splitlines()
        assert lines.count("one") == 1, (name, lines)  # finished before the stop: never again
        if name == "live":
            assert lines == ["one", "two started", "two", "three"]
            continue
        assert lines.count("two started") in (1, 2), (name, lines)  # the stopped step may rerun
        assert 1 <= lines.count("two") <= lines.count("two started"), (name, lines)
        assert lines.count("three") == 1, (name, lines)
        assert lines[-1] == "three", (name, lines)

    nothing, after = cli_all(("resume",), ("executions", "list", "--json"), home=home)
    assert nothing.returncode == 0, nothing.describe()
    assert "nothing to resume" in nothing.stdout
    assert [r["status"] for r in after.json()] == ["completed"] * 3
