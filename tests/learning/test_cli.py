"""`noetl-agent indexer`, `search` and `similar` as real processes, embedded and through a
real server process that indexes in the background."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import NOETL_AGENT, CliResult, cli, home  # noqa: F401
from tests.learning import corpus

pytestmark = pytest.mark.slow


def _playbooks(folder: Path) -> dict[str, Path]:
    files = {"db": corpus.DB_DOWN, "auth": corpus.AUTH, "divide": corpus.DIVIDE}
    folder.mkdir(exist_ok=True)
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(content)
    return paths


def _run_failing(cli: Callable[..., CliResult], path: Path) -> str:  # noqa: F811
    result = cli("run", path, "--json")
    assert result.returncode == 1, result.describe()
    return str(result.json()["execution_id"])


def test_index_search_and_similar_on_the_embedded_stack(
    cli: Callable[..., CliResult],  # noqa: F811
    tmp_path: Path,
) -> None:
    files = _playbooks(tmp_path / "playbooks")
    first = _run_failing(cli, files["db"])
    second = _run_failing(cli, files["db"])
    auth = _run_failing(cli, files["auth"])

    indexed = cli("indexer", "--once", timeout=120)
    assert indexed.returncode == 0, indexed.describe()
    # 2 playbooks; per run 2 steps, 1 failure, 1 execution
    assert "indexed 14 new document(s)" in indexed.stdout

    found = cli("search", "the database refused my connection", "--json", timeout=120)
    assert found.returncode == 0, found.describe()
    hits = found.json()
    assert hits[0]["kind"] == "failure"
    assert hits[0]["playbook_path"] == "etl/load_orders"
    assert hits[0]["execution_id"] in {first, second}
    assert hits[0]["step"] == "work"
    assert "Connection refused" in hits[0]["text"]
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)

    similar = cli("similar", second, "--json", timeout=120)
    assert similar.returncode == 0, similar.describe()
    assert [hit["execution_id"] for hit in similar.json()][:2] == [first, auth]

    table = cli("search", "401 unauthorized", "--kind", "failures", timeout=120)
    assert table.returncode == 0, table.describe()
    assert auth in table.stdout
    assert "api/fetch_invoices" in table.stdout

    unknown = cli("similar", "no-such-execution")
    assert unknown.returncode == 1
    assert "not found" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _until(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout} s")


def test_search_through_a_server_that_indexes_in_the_background(tmp_path: Path) -> None:
    env = dict(os.environ, NOETL_HOME=str(tmp_path / "home"), COLUMNS="200")
    env["NOETL_INDEXER"] = "on"
    env.pop("NOETL_SERVER_URL", None)
    created = subprocess.run(
        [NOETL_AGENT, "tokens", "create", "--name", "ops", "--kind", "human", "--role", "operator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    files = _playbooks(tmp_path / "playbooks")
    url = f"http://127.0.0.1:{_free_port()}"
    log = tmp_path / "server.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [NOETL_AGENT, "server", "--port", url.rsplit(":", 1)[1]],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )
    client = dict(env, NOETL_SERVER_URL=url, NOETL_TOKEN=token)

    def agent(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [NOETL_AGENT, *map(str, args)], env=client, capture_output=True, text=True, timeout=120
        )

    def search(text: str) -> list[dict[str, object]]:
        result = agent("search", text, "--kind", "failures", "--json")
        assert result.returncode == 0, result.stderr
        hits: list[dict[str, object]] = json.loads(result.stdout.strip().splitlines()[-1])
        return hits

    try:
        _until(lambda: _healthy(url, server, log), "the server did not answer")
        failed = json.loads(agent("run", files["divide"], "--json").stdout.splitlines()[-1])
        _until(lambda: bool(search("division by zero")), "the failure was not indexed")

        hits = search("division by zero")
        assert hits[0]["execution_id"] == failed["execution_id"]
        assert hits[0]["playbook_path"] == "reports/margins"
        similar = agent("similar", failed["execution_id"], "--json")
        assert similar.returncode == 0, similar.stderr
        assert json.loads(similar.stdout) == []  # nothing else has failed yet
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "Traceback" not in log.read_text()


def _healthy(url: str, server: subprocess.Popen[str], log: Path) -> bool:
    assert server.poll() is None, f"the server exited:\n{log.read_text()}"
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


async def test_the_indexer_reads_a_postgresql_event_log(tmp_path: Path) -> None:
    from engine.runtime.embedded import Engine
    from learning.vector_store import IndexLocation, VectorStore
    from tests.conformance.conftest import fresh_postgres, require_postgres

    dsn = await require_postgres()
    env = dict(os.environ, NOETL_HOME=str(tmp_path / "home"))

    async def indexer(schema: str) -> dict[str, object]:
        process = await asyncio.create_subprocess_exec(
            str(NOETL_AGENT),
            *("indexer", "--once", "--json", "--database", dsn, "--schema", schema),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 180)
        assert process.returncode == 0, err.decode()
        report: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
        return report

    async with fresh_postgres(dsn) as pg:
        engine = Engine(pg.events, pg.catalog, lock_dir=tmp_path / "locks")
        try:
            for content in (corpus.DB_DOWN, corpus.AUTH):
                entry = await engine.register(content)
                await engine.wait(await engine.execute(entry.path), timeout=30)
        finally:
            await engine.aclose()

        first = await indexer(pg.schema)
        again = await indexer(pg.schema)

    assert first["documents"] == 10  # 2 playbooks; per run 2 steps, 1 failure, 1 execution
    assert (again["documents"], again["skipped"]) == (0, 10)  # recent positions re-read
    store = VectorStore.open(IndexLocation.local(tmp_path / "home" / "qdrant"))
    assert store.count("failures") == 2
    assert store.cursor(f"postgres:{pg.schema}") == first["position"]
