"""Search on the distributed stack: events in PostgreSQL, tools run by workers that report
over HTTP, the server's background indexer following the engine, search through the API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from learning.embedder import SentenceEmbedder
from learning.vector_store import IndexLocation
from noetl_agent.history import POSTGRES_OVERLAP, History, start_indexing
from tests.distributed_stack import FakeWorker, distributed_stack
from tests.learning import corpus


async def test_failures_reported_by_workers_are_indexed_and_searchable(
    tmp_path: Path, embedder: SentenceEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOETL_INDEXER", "on")
    async with distributed_stack() as stack:
        history = History(
            stack.db.events,
            stack.db.catalog,
            IndexLocation.local(tmp_path / "qdrant"),
            source=f"postgres:{stack.db.schema}",
            overlap=POSTGRES_OVERLAP,
        )
        stack.app.state.history = history  # as serve_distributed wires it
        background = start_indexing(stack.engine, history, delay=0.05)
        assert background is not None
        worker = FakeWorker(stack, "worker-1")
        worker.start()
        try:
            runs = {}
            for name, content in (("db", corpus.DB_DOWN), ("file", corpus.NO_FILE)):
                entry = await stack.engine.register(content)
                runs[name] = await stack.engine.execute(entry.path)
                outcome = await stack.engine.wait(runs[name], timeout=30)
                assert outcome.status == "failed", outcome
            last = (await stack.db.events.read_all(0, 100_000))[-1][0]
            async with asyncio.timeout(60):
                while background.last is None or background.last.position < last:
                    await asyncio.sleep(0.05)

            async with stack.client("viewer") as http:
                response = await http.post(
                    "/api/search", json={"text": "the csv input file is missing", "k": 1}
                )
        finally:
            await worker.stop()
            await background.aclose()

    assert response.status_code == 200, response.text
    hit = response.json()[0]
    assert (hit["kind"], hit["execution_id"]) == ("failure", runs["file"])
    assert hit["playbook_path"] == "files/import_sales"
    assert worker.claims  # the failing steps ran on the worker
