"""`noetl-agent` as child processes, for the tests that run it as a user would.

``cli`` runs one command; ``serve`` starts `noetl-agent server` on a free port and waits
until ``/health`` answers; ``stop`` ends a process with a signal (SIGKILL when it does not
exit in time). The ``distributed_env`` fixture is the environment of a server on the
machine's PostgreSQL and NATS, naming a schema and a JetStream stream of the test's own
(both removed afterwards).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.adapters.nats.bus import NatsCommandBus
from tests.conformance.conftest import drop_schema, require_postgres
from tests.conftest import require_service

NOETL_AGENT = Path(sys.executable).parent / "noetl-agent"
NATS_URL = "nats://127.0.0.1:4222"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for(
    condition: Callable[[], object],
    timeout: float,
    what: str,
    logs: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``condition()`` every 0.05 s until true; fail naming ``what`` (and showing
    ``logs()``) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s\n{logs()}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> int:
    """Send ``sig`` and wait for the exit (SIGKILL after 15 s); return the exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `noetl-agent ARGS` to the end, its output captured."""
    return subprocess.run([NOETL_AGENT, *args], env=env, capture_output=True, text=True, timeout=60)


def wait_healthy(url: str, process: subprocess.Popen[Any], log: Path, timeout: float = 30) -> None:
    """Wait until ``url/health`` answers 200; fail with the server's log if it exits first."""

    def healthy() -> bool:
        assert process.poll() is None, f"the server exited:\n{log.read_text()}"
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout, f"{url}/health answering 200", log.read_text)


def serve(env: dict[str, str], log: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start `noetl-agent server --port FREE ARGS`, its output to ``log`` (a file, not a
    pipe: access logs must never block the server); return it and its URL once healthy."""
    port = free_port()
    with log.open("w") as sink:
        server = subprocess.Popen(
            [NOETL_AGENT, "server", "--port", str(port), *args],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, log)
    except BaseException:
        stop(server)
        raise
    return server, url


@pytest.fixture
async def distributed_env(tmp_path: Path) -> AsyncIterator[tuple[dict[str, str], str, str]]:
    """(environment, PostgreSQL DSN, schema): the environment names the DSN, NATS, and a
    schema and a stream of this test's own, removed afterwards."""
    require_service(port_open(4222), "NATS with JetStream at 127.0.0.1:4222")
    dsn = await require_postgres()
    schema, stream = f"t_{uuid.uuid4().hex}", f"T_{uuid.uuid4().hex[:12]}"
    env = dict(
        os.environ,
        NOETL_HOME=str(tmp_path / "home"),
        NOETL_DATABASE_URL=dsn,
        NOETL_DATABASE_SCHEMA=schema,
        NOETL_NATS_URL=NATS_URL,
        NOETL_NATS_STREAM=stream,
        NOETL_NATS_SUBJECT_PREFIX=f"test.{stream}",
    )
    env.pop("NOETL_SERVER_URL", None)
    try:
        yield env, dsn, schema
    finally:
        await drop_schema(dsn, schema)
        bus = await NatsCommandBus.connect(NATS_URL, stream=stream, subject_prefix=f"test.{stream}")
        await bus.delete_stream()
        await bus.aclose()
