"""Fixtures for driving the installed `noetl-agent` console script in real subprocesses.

Every test gets its own ``NOETL_HOME`` (a fresh directory under ``tmp_path``), so the
SQLite store, catalog and locks of one test never leak into another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

NOETL_AGENT = Path(sys.executable).parent / "noetl-agent"
PLAYBOOKS = Path(__file__).parent / "playbooks"


class CliResult(subprocess.CompletedProcess[str]):
    """A finished `noetl-agent` call; ``json()`` parses the last line of stdout."""

    home: Path

    def json(self) -> Any:
        lines = self.stdout.strip().splitlines()
        assert lines, f"no output on stdout; stderr:\n{self.stderr}"
        return json.loads(lines[-1])

    def describe(self) -> str:
        return (
            f"exit {self.returncode} for {' '.join(map(str, self.args))}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["NOETL_HOME"] = str(home)
    env["COLUMNS"] = "200"  # rich wraps tables and messages at the terminal width
    return env


def _start(args: Sequence[object], home: Path, *, capture: bool) -> subprocess.Popen[str]:
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        [str(NOETL_AGENT), *map(str, args)],
        stdin=subprocess.PIPE if capture else subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        env=_env(home),
        text=True,
    )


def _finish(
    process: subprocess.Popen[str], home: Path, input: str | None, timeout: float
) -> CliResult:
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    result = CliResult(process.args, process.returncode, stdout, stderr)
    result.home = home
    return result


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh ``NOETL_HOME`` for this test."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def playbooks() -> Path:
    """The directory of the playbook fixtures."""
    return PLAYBOOKS


@pytest.fixture
def cli(home: Path) -> Callable[..., CliResult]:
    """``cli(*args, home=..., input=None, timeout=60)``: run `noetl-agent`, return the result."""

    def run(
        *args: object, home: Path = home, input: str | None = None, timeout: float = 60
    ) -> CliResult:
        return _finish(_start(args, home, capture=True), home, input, timeout)

    return run


@pytest.fixture
def cli_all(tmp_path: Path) -> Callable[..., list[CliResult]]:
    """``cli_all(args, args, ..., home=None)`` runs independent calls at the same time.

    Without ``home`` every call gets a fresh home of its own; a result's ``home`` says
    where it ran, for follow-up calls on the same state. With ``home`` they all share it.
    """
    used = 0

    def run_all(
        *calls: Sequence[object], home: Path | None = None, timeout: float = 60
    ) -> list[CliResult]:
        nonlocal used
        homes = []
        for _ in calls:
            if home is None:
                used += 1
                homes.append(tmp_path / f"home-{used}")
                homes[-1].mkdir()
            else:
                homes.append(home)
        processes = [
            _start(args, where, capture=True) for args, where in zip(calls, homes, strict=True)
        ]
        try:
            return [
                _finish(process, where, None, timeout)
                for process, where in zip(processes, homes, strict=True)
            ]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()

    return run_all


@pytest.fixture
def spawn(home: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``spawn(*args)`` starts `noetl-agent` in the background; it is killed after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: object, home: Path = home) -> subprocess.Popen[str]:
        process = _start(args, home, capture=False)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
